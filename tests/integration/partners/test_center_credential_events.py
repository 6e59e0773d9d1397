"""Partners tells records every center key it issues and revokes, in the same transaction as
the change (its outbox): key id and digest, never the key; an operator's key is not told; a
second revocation tells nothing. Real PostgreSQL; the ops API in-process."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from referrals_common.auth.api_keys import key_digest, parse_api_key
from referrals_common.contracts import credential_key, topics
from referrals_common.messaging.schema import outbox_table

from .conftest import api_client, key_for

pytestmark = pytest.mark.integration

BERLIN = "test-breast-berlin"
ISSUED = "referrals.center.credential_issued.v1"
REVOKED = "referrals.center.credential_revoked.v1"


async def credential_events(rt: Any) -> list[dict[str, Any]]:
    async with rt.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(outbox_table.c.topic, outbox_table.c.aggregate_id, outbox_table.c.payload)
            .where(outbox_table.c.event_type.in_((ISSUED, REVOKED)))
            .order_by(outbox_table.c.seq)
        )
        return [{"topic": topic, "key": key, **payload} for topic, key, payload in rows.all()]


async def test_issue_and_revocation_of_a_center_key_are_told_to_records(make_runtime) -> None:
    rt = await make_runtime()
    ops = {"X-Api-Key": await key_for(rt, "ops")}
    assert await credential_events(rt) == []  # an operator's key is nobody else's business

    async with api_client(rt) as api:
        issued = await api.post(
            f"/v1/ops/centers/{BERLIN}/keys",
            headers={**ops, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert issued.status_code == 201, issued.text
        key = issued.json()["key"]
        _, key_id, secret = parse_api_key(key)

        [told] = await credential_events(rt)
        assert told["type"] == ISSUED
        assert told["topic"] == topics.CREDENTIALS
        assert told["key"] == str(credential_key(key_id)) == told["subject"]
        assert told["data"]["center_code"] == BERLIN
        assert told["data"]["key_id"] == key_id
        assert told["data"]["key_sha256"] == key_digest(secret)
        assert secret not in str(told) and key not in str(told)

        for _ in range(2):  # the second revocation changes nothing and tells nothing
            gone = await api.delete(f"/v1/ops/keys/{key_id}", headers=ops)
            assert gone.status_code == 204, gone.text
        events = await credential_events(rt)
        assert [e["type"] for e in events] == [ISSUED, REVOKED]
        assert events[1]["data"]["key_id"] == key_id
        assert events[1]["key"] == told["key"]  # one key, one stream: in order, compacted

        # An unknown key: 404, nothing told.
        unknown = await api.delete("/v1/ops/keys/AAAAAAAAAAAA", headers=ops)
        assert unknown.status_code == 404
        assert len(await credential_events(rt)) == 2
