"""A center's actions with an Idempotency-Key, over real Kafka and PostgreSQL (issue 23): the
same request again (a retry after a lost answer) answers the referral as it is, marked
`Idempotent-Replayed`, and changes nothing (no second event, no second request for
information); the key with a different request is a 422 like intake's (`key_reused`), and
changes nothing either; a refused request leaves its key free for the retry; two concurrent
twins act once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from referrals_common.contracts import ReferralOffered
from referrals_common.messaging.schema import outbox_table

from .conftest import Inbox, api_client, key_for, partners_running
from .test_routing_over_kafka import BERLIN, open_case

pytestmark = pytest.mark.integration

REFERRAL = "/v1/partner/referrals/{}"


async def events_of(rt: Any, case_id: uuid.UUID) -> list[str]:
    """The event types partners' outbox holds for the case, oldest first."""
    async with rt.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(outbox_table.c.event_type)
            .where(outbox_table.c.aggregate_id == str(case_id))
            .order_by(outbox_table.c.seq)
        )
        return list(rows.scalars())


async def offered(rt: Any, berlin: Inbox) -> tuple[uuid.UUID, uuid.UUID, dict[str, str]]:
    case_id, _ = await open_case(rt)
    offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
    return case_id, offer.referral_id, {"X-Api-Key": await key_for(rt, "center", BERLIN)}


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def assert_key_reused(response: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["code"] == "key_reused"
    assert error["location"] == "header"


async def test_a_retried_acceptance_and_information_request_change_nothing(make_runtime):
    rt = await make_runtime()
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(rt.settings.kafka.bootstrap_servers, BERLIN) as berlin,
    ):
        case_id, referral_id, key = await offered(rt, berlin)
        url = REFERRAL.format(referral_id)

        # A refused request does not use its key up: the retry with the key can succeed.
        accept_key = {**key, "Idempotency-Key": f"accept-{uuid.uuid4()}"}
        refused = await api.post(
            f"{url}/accept", json={"expected_opinion_at": in_days(-1)}, headers=accept_key
        )
        assert refused.status_code == 422, refused.text
        body = {"expected_opinion_at": in_days(7)}
        first = await api.post(f"{url}/accept", json=body, headers=accept_key)
        assert first.status_code == 200, first.text
        assert "Idempotent-Replayed" not in first.headers
        events = await events_of(rt, case_id)

        again = await api.post(f"{url}/accept", json=body, headers=accept_key)
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert await events_of(rt, case_id) == events

        # The same key with another date: refused, and the acceptance stands as it was.
        other = await api.post(
            f"{url}/accept", json={"expected_opinion_at": in_days(9)}, headers=accept_key
        )
        assert_key_reused(other)
        # Without a key, accepting again is the 409 it always was.
        assert (await api.post(f"{url}/accept", json=body, headers=key)).status_code == 409
        assert (await api.get(url, headers=key)).json() == first.json()
        assert await events_of(rt, case_id) == events

        ask = {
            "reason": "We need the full pathology report.",
            "items": [{"kind": "pathology_report", "detail": "The full report of the biopsy"}],
            "due_at": in_days(14),
        }
        ask_key = {**key, "Idempotency-Key": f"ask-{uuid.uuid4()}"}
        asked = await api.post(f"{url}/information-requests", json=ask, headers=ask_key)
        assert asked.status_code == 200, asked.text
        events = await events_of(rt, case_id)
        # Two retries at once, as a client whose connection broke might send them: one request.
        twins = await asyncio.gather(
            *(api.post(f"{url}/information-requests", json=ask, headers=ask_key) for _ in "ab")
        )
        assert [t.status_code for t in twins] == [200, 200], [t.text for t in twins]
        assert all(t.headers["Idempotent-Replayed"] == "true" for t in twins)
        assert len(twins[0].json()["information_requests"]) == 1
        assert await events_of(rt, case_id) == events
        assert_key_reused(
            await api.post(
                f"{url}/information-requests", json={**ask, "reason": "Other"}, headers=ask_key
            )
        )


async def test_a_retried_decline_declines_once_and_routes_once(make_runtime):
    rt = await make_runtime()
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(rt.settings.kafka.bootstrap_servers, BERLIN) as berlin,
    ):
        case_id, referral_id, key = await offered(rt, berlin)
        url = f"{REFERRAL.format(referral_id)}/decline"
        idem = {**key, "Idempotency-Key": f"decline-{uuid.uuid4()}"}
        body = {"reason": "no_capacity", "detail": "Our board is full."}
        # A key is the center's own per action: used first to ask for information, it is a new
        # request on the decline.
        asked = await api.post(
            f"{REFERRAL.format(referral_id)}/information-requests",
            json={
                "reason": "We need the imaging report.",
                "items": [{"kind": "imaging", "detail": "The report of the last CT"}],
                "due_at": in_days(14),
            },
            headers=idem,
        )
        assert asked.status_code == 200, asked.text

        declined = await api.post(url, json=body, headers=idem)
        assert declined.status_code == 200, declined.text
        assert declined.json()["status"] == "declined"
        events = await events_of(rt, case_id)
        assert events.count("referrals.referral.declined.v1") == 1

        again = await api.post(url, json=body, headers=idem)
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["status"] == "declined"
        assert_key_reused(await api.post(url, json={"reason": "outside_expertise"}, headers=idem))
        # Nothing more: no second decline, no second routing of the case.
        assert await events_of(rt, case_id) == events
