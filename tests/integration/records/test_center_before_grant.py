"""A center that asks for its referral's documents before records has heard of the referral.

Partners publishes the offer on the center's inbox topic and `referral.requested` on the routing
topic in one transaction; records learns of the grant only when its consumer reads the second.
A center that reacts at once may ask first: records then answers 409 `referral-not-known-yet`
with `Retry-After`, and the documents once its consumer has read the grant. What records knows
but is not the caller's (another center's referral, a declined, expired or withdrawn one) stays
a 404 with no data, as if it did not exist.

Real PostgreSQL, MinIO and Kafka; records' own consumer (`consumers.build_consumer`) reads the
events, published as partners and intake publish them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from referrals_common.contracts import (
    CaseWithdrawn,
    DeclineReason,
    ReferralDeclined,
    ReferralExpired,
    ReferralRequested,
    new_event,
    topics,
)
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_records import consumers
from referrals_records.models import CenterReferral
from tests.running import consuming

from ..conftest import publish, wait_for
from .conftest import center_key, pdf_bytes, upload

pytestmark = pytest.mark.integration

CHARITE, WARSAW = "charite-berlin", "nio-warsaw"
NOT_KNOWN_YET = "https://referrals.example/problems/referral-not-known-yet"


@contextlib.asynccontextmanager
async def records_consumer(runtime) -> AsyncIterator[None]:
    """Records' consumer process, in this event loop, in a consumer group of its own (so no
    other test's records consumer on the session's stack shares its partitions)."""
    bootstrap = runtime.settings.kafka.bootstrap_servers
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)

    def build(dead: DeadLetterPublisher) -> EventConsumer:
        consumer = consumers.build_consumer(
            runtime.records, runtime.db, dead, pepper=runtime.pepper
        )
        consumer.name = f"{consumers.CONSUMER_NAME}.test-{uuid.uuid4().hex[:8]}"
        return consumer

    async with consuming(bootstrap, build, *consumers.SUBSCRIBED_TOPICS):
        yield


def requested(case_id: uuid.UUID, referral_id: uuid.UUID, center: str):
    return new_event(
        ReferralRequested(
            case_id=case_id,
            referral_id=referral_id,
            center_code=center,
            center_country="DE" if center == CHARITE else "PL",
            attempt=1,
            answer_due_at=datetime.now(UTC) + timedelta(days=2),
            rationale="Breast cancer expertise, reads English and German.",
        )
    )


async def referral_row(runtime, referral_id: uuid.UUID) -> CenterReferral | None:
    async with runtime.db.unit_of_work() as uow:
        return await uow.session.get(CenterReferral, referral_id)


async def records_knows(runtime, referral_id: uuid.UUID, *, closed: bool = False) -> None:
    async def known() -> bool:
        row = await referral_row(runtime, referral_id)
        return row is not None and (row.closed_at is not None) == closed

    await wait_for(known, timeout=60, interval=0.2)


def assert_retry_later(response: httpx.Response, referral_id: uuid.UUID) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["Retry-After"] == "2"
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == NOT_KNOWN_YET
    assert problem["status"] == 409
    assert str(referral_id) in problem["detail"] and "retry" in problem["detail"]
    return problem  # type: ignore[no-any-return]


def assert_hidden(response: httpx.Response, *secrets: str) -> None:
    """404, no Retry-After, and none of the case's data (but what the caller put in the path,
    which the problem echoes as its `instance`)."""
    assert response.status_code == 404, response.text
    assert "Retry-After" not in response.headers
    assert response.json()["type"].endswith("/not-found")
    for secret in secrets:
        assert secret not in response.text or secret in response.request.url.path, secret


async def as_a_center_would(api, path: str, headers: dict[str, str], *, budget: float = 60.0):
    """Ask like a polite center: on a 409 with Retry-After, wait that long and ask again.
    Returns every status seen and the last response."""
    statuses: list[int] = []
    deadline = asyncio.get_running_loop().time() + budget
    while True:
        response = await api.get(path, headers=headers)
        statuses.append(response.status_code)
        retry_after = response.headers.get("Retry-After")
        if response.status_code != 409 or retry_after is None:
            return statuses, response
        assert asyncio.get_running_loop().time() < deadline, statuses
        await asyncio.sleep(float(retry_after))


async def audit_outcomes(runtime, actor: str) -> list[tuple[str, str, Any]]:
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        rows = await conn.fetch(
            "select action, outcome, case_id from access_audit where actor = $1 order by id",
            actor,
        )
    finally:
        await conn.close()
    return [(r["action"], r["outcome"], r["case_id"]) for r in rows]


async def test_a_center_early_for_its_referral_is_told_to_retry_then_reads_the_documents(
    api, runtime
):
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    charite = {"X-Api-Key": await center_key(runtime, CHARITE)}
    listing = f"/v1/referrals/{referral_id}/documents"
    link = f"/v1/referrals/{referral_id}/documents/{doc['id']}"

    # The offer reached the center; `referral.requested` has not reached records yet.
    for path in (listing, link):
        response = await api.get(path, headers=charite)
        assert_retry_later(response, referral_id)
        for secret in (str(case_id), doc["id"], doc["file_name"], doc["sha256"]):
            assert secret not in response.text or secret in path, secret
    assert await referral_row(runtime, referral_id) is None  # a 409 grants nothing

    async with records_consumer(runtime):
        await publish(
            runtime.settings.kafka.bootstrap_servers, requested(case_id, referral_id, CHARITE)
        )
        statuses, listed = await as_a_center_would(api, listing, charite)
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}, statuses
        assert [d["id"] for d in listed.json()] == [doc["id"]]
        statuses, linked = await as_a_center_would(api, link, charite)
        assert statuses == [200]
        # A neutral name: the patient's file name may carry the patient's name.
        assert linked.json()["file_name"] == "discharge-summary-1.pdf"
        assert listed.json()[0]["file_name"] == "discharge-summary-1.pdf"
        assert doc["file_name"] not in linked.text and doc["file_name"] not in listed.text
        assert (await api.get(linked.json()["url"])).status_code == 200

    audit = await audit_outcomes(runtime, f"center:{CHARITE}")
    early = [a for a in audit if a[1] == "not_known_yet"]
    assert len(early) >= 2 and all(case is None for _, _, case in early), audit
    assert ("list", "ok", case_id) in audit and ("download_link", "ok", case_id) in audit


async def test_an_unknown_referral_id_tells_another_center_nothing_and_a_known_one_is_a_404(
    api, runtime
):
    """Before records knows a referral, any center asking for it gets the same 409 as for an id
    nobody ever issued (the answer depends on nothing but records' own ignorance); once records
    knows it, another center gets the 404 it always got."""
    case_id, referral_id, made_up = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    await center_key(runtime, CHARITE)
    warsaw = {"X-Api-Key": await center_key(runtime, WARSAW)}

    in_flight = assert_retry_later(
        await api.get(f"/v1/referrals/{referral_id}/documents", headers=warsaw), referral_id
    )
    invented = assert_retry_later(
        await api.get(f"/v1/referrals/{made_up}/documents", headers=warsaw), made_up
    )
    assert {k: v for k, v in in_flight.items() if k not in {"detail", "instance"}} == {
        k: v for k, v in invented.items() if k not in {"detail", "instance"}
    }
    assert in_flight["detail"].replace(str(referral_id), "") == invented["detail"].replace(
        str(made_up), ""
    )

    async with records_consumer(runtime):
        await publish(
            runtime.settings.kafka.bootstrap_servers, requested(case_id, referral_id, CHARITE)
        )
        await records_knows(runtime, referral_id)
    secrets = (str(case_id), doc["id"], doc["file_name"], doc["sha256"])
    for path in (
        f"/v1/referrals/{referral_id}/documents",
        f"/v1/referrals/{referral_id}/documents/{doc['id']}",
    ):
        assert_hidden(await api.get(path, headers=warsaw), *secrets)
    opinion = await api.post(
        f"/v1/referrals/{referral_id}/opinion",
        files={"file": ("opinion.pdf", pdf_bytes(note="o"), "application/pdf")},
        headers=warsaw,
    )
    assert_hidden(opinion, *secrets)


def closing_events(case_id: uuid.UUID, referral_id: uuid.UUID) -> dict[str, list[Any]]:
    return {
        "declined": [
            new_event(
                ReferralDeclined(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CHARITE,
                    reason=DeclineReason.NO_CAPACITY,
                )
            )
        ],
        "expired": [
            new_event(
                ReferralExpired(case_id=case_id, referral_id=referral_id, center_code=CHARITE)
            )
        ],
        "withdrawn": [new_event(CaseWithdrawn(case_id=case_id))],
    }


@pytest.mark.parametrize("how", ["declined", "expired", "withdrawn"])
async def test_closed_access_stays_a_404_not_a_retry(api, runtime, how):
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    charite = {"X-Api-Key": await center_key(runtime, CHARITE)}
    paths = (
        f"/v1/referrals/{referral_id}/documents",
        f"/v1/referrals/{referral_id}/documents/{doc['id']}",
    )
    secrets = (str(case_id), doc["file_name"], doc["sha256"])

    async with records_consumer(runtime):
        await publish(
            runtime.settings.kafka.bootstrap_servers, requested(case_id, referral_id, CHARITE)
        )
        await records_knows(runtime, referral_id)
        for path in paths:
            assert (await api.get(path, headers=charite)).status_code == 200
        await publish(
            runtime.settings.kafka.bootstrap_servers, *closing_events(case_id, referral_id)[how]
        )
        await records_knows(runtime, referral_id, closed=True)
    assert (await referral_row(runtime, referral_id)).closed_reason == how  # type: ignore[union-attr]
    for path in paths:
        assert_hidden(await api.get(path, headers=charite), *secrets)


@pytest.mark.parametrize("how", ["declined", "expired"])
async def test_an_answer_seen_before_the_offer_is_a_404_not_a_retry(api, runtime, how):
    """The routing events may reach records out of order with the center's calls: a decline or
    expiry records has heard of closes the referral even though its offer never arrived."""
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    charite = {"X-Api-Key": await center_key(runtime, CHARITE)}
    async with records_consumer(runtime):
        await publish(
            runtime.settings.kafka.bootstrap_servers, *closing_events(case_id, referral_id)[how]
        )
        await records_knows(runtime, referral_id, closed=True)
    for path in (
        f"/v1/referrals/{referral_id}/documents",
        f"/v1/referrals/{referral_id}/documents/{doc['id']}",
    ):
        assert_hidden(await api.get(path, headers=charite), str(case_id), doc["file_name"])
