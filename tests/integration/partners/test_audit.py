"""Every call to partners' API leaves a row in `access_audit`: who, what, and how it ended, for
reads as well as changes (ops listing the registry or the cases that need them, a center
reading or removing its webhook), on real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from referrals_partners.models import AccessAudit

from .conftest import api_client, key_for

pytestmark = pytest.mark.integration

BERLIN = "test-breast-berlin"


async def test_reads_and_removals_are_audited_like_changes(make_runtime):
    rt = await make_runtime()
    ops = {"X-Api-Key": await key_for(rt, "ops")}
    center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
    async with api_client(rt) as api:
        assert (await api.get("/v1/ops/centers", headers=ops)).status_code == 200
        assert (await api.get("/v1/ops/cases", headers=ops)).status_code == 200
        assert (await api.get("/v1/partner/webhook", headers=center)).status_code == 404
        url = {"url": "https://hooks.example.org/referrals"}
        assert (await api.put("/v1/partner/webhook", json=url, headers=center)).status_code < 300
        assert (await api.get("/v1/partner/webhook", headers=center)).status_code == 200
        assert (await api.delete("/v1/partner/webhook", headers=center)).status_code == 204

    async with rt.db.unit_of_work() as uow:
        rows = (await uow.session.execute(select(AccessAudit).order_by(AccessAudit.id))).scalars()
        trail = [(r.actor.split(":")[0], r.action, r.outcome) for r in rows]
    operator = trail[0][0]
    assert trail == [
        (operator, "GET /v1/ops/centers", "ok"),
        (operator, "GET /v1/ops/cases", "ok"),
        ("center", "GET /v1/partner/webhook", "not_found"),
        ("center", "PUT /v1/partner/webhook", "ok"),
        ("center", "GET /v1/partner/webhook", "ok"),
        ("center", "DELETE /v1/partner/webhook", "ok"),
    ]


async def test_an_audit_row_is_written_while_the_route_holds_the_only_connection_of_its_pool(
    make_runtime,
):
    """A route writes its audit row while it holds its own unit of work's connection. From the
    same pool, as many concurrent requests as the pool has connections each held one and waited
    for a second until the pool's timeout (records' API with a pool of 8 stalled 30 s under 8
    concurrent center downloads); audit rows now go through the side pool."""
    import asyncio

    from sqlalchemy import text

    from referrals_common.db import Database
    from referrals_common.edge.principals import AccessLog

    rt = await make_runtime()
    db = Database(rt.db.settings.model_copy(update={"pool_size": 1, "max_overflow": 0}))
    log = AccessLog(db, AccessAudit)
    try:
        async with db.unit_of_work() as uow:
            await uow.session.execute(text("select 1"))  # the pool's one connection, held
            async with asyncio.timeout(10):  # the main pool would give one back after 30 s
                await log.record("center:held", "GET /v1/partner/me")
        async with db.unit_of_work() as uow:
            actors = (
                await uow.session.execute(
                    select(AccessAudit.actor).where(AccessAudit.actor == "center:held")
                )
            ).scalars()
            assert list(actors) == ["center:held"]
    finally:
        await db.dispose()
