"""The operators' timeline and dead letters, over real Kafka and PostgreSQL (issue 24).

A dead letter is made as a consumer makes one (`DeadLetterPublisher`, with the original record's
trace context); operators list the topics' counts and the topic's letters, and replay one with an
Idempotency-Key: the original record is back on its topic with its key, value and headers (and
no `dlq.*` header), once, however often the same request is sent; the key with another letter is
a 422, a letter that does not exist a 404, a topic that is not the platform's a 404, a replay
without a key a 422. Every call is audited with the operator's key. Only an operator's key opens
these routes: a center's is a 401.

The case timeline of a routed case holds partners' rows (the offer, the center's decline and the
next offer) and the case's dead letter, says that no trace viewer is configured, or that the one
configured does not answer, and is a 404 for a case nobody knows. An accepted referral whose
opinion is late is listed as overdue.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.trace import format_trace_id
from sqlalchemy import select, update

from referrals_common.contracts import CaseWithdrawn, new_event, topics
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_partners.models import AccessAudit, Referral
from referrals_partners.operations import TraceViewer

from .conftest import Inbox, api_client, key_for, partners_running
from .test_routing_over_kafka import BERLIN, open_case

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
TRACEPARENT = f"00-{format_trace_id(TRACE_ID)}-eee19b7ec3c1b174-01"


async def dead_letter_of(bootstrap: str, case_id: uuid.UUID) -> dict[str, Any]:
    """A `case.withdrawn` of `case_id` that a consumer gave up on, in referrals.cases.v1.dlq."""
    event = new_event(CaseWithdrawn(case_id=case_id, reason="patient_request"))
    body = event.to_json()
    record = SimpleNamespace(
        topic=topics.CASES,
        partition=2,
        offset=4711,
        key=str(case_id).encode(),
        headers=[("traceparent", TRACEPARENT.encode())],
    )
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    try:
        await dead.publish(
            record, body, consumer="intake", error=ValueError("the test's poison: not applied")
        )
    finally:
        await dead.stop()
    return json.loads(body)


async def ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def published_since(
    bootstrap: str, since: dict[TopicPartition, int], key: bytes
) -> list[Any]:
    """The records with `key` written to the topic after `since` (its end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        found = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            found += [r for records in batch.values() for r in records if r.key == key]
        return found
    finally:
        await consumer.stop()


async def audited(rt: Any, action_part: str) -> list[AccessAudit]:
    async with rt.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(AccessAudit).where(AccessAudit.action.contains(action_part))  # type: ignore[attr-defined]
        )
        return list(rows.scalars())


async def test_an_operator_lists_dead_letters_and_replays_one_once_per_key(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    case_id = uuid.uuid4()
    event = await dead_letter_of(bootstrap, case_id)
    ops = {"X-Api-Key": await key_for(rt, "ops")}
    center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
    async with api_client(rt) as api:
        counts = await api.get("/v1/ops/dead-letters", headers=ops)
        assert counts.status_code == 200, counts.text
        by_topic = {c["topic"]: c for c in counts.json()}
        assert set(by_topic) == set(topics.PLATFORM_TOPICS)
        assert by_topic[topics.CASES]["count"] >= 1
        assert by_topic[topics.CASES]["dead_letter_topic"] == "referrals.cases.v1.dlq"

        listed = await api.get(f"/v1/ops/dead-letters/{topics.CASES}", headers=ops)
        assert listed.status_code == 200, listed.text
        (letter,) = [d for d in listed.json() if d["case_id"] == str(case_id)]
        assert letter["event_id"] == event["id"]
        assert letter["event_type"] == "referrals.case.withdrawn.v1"
        assert letter["topic"] == topics.CASES
        assert (letter["consumer"], letter["error_type"]) == ("intake", "ValueError")
        assert letter["error"] == "the test's poison: not applied"
        assert letter["replays"] == []
        assert "patient_request" not in listed.text  # the payload is not shown

        replay = f"/v1/ops/dead-letters/{topics.CASES}/{letter['partition']}/{letter['offset']}"
        replay += "/replay"
        before = await ends(bootstrap, topics.CASES)
        without_key = await api.post(replay, headers=ops)
        assert without_key.status_code == 422, without_key.text
        assert without_key.headers["content-type"] == "application/problem+json"
        by_center = await api.post(replay, headers={**center, "Idempotency-Key": "k" * 12})
        assert by_center.status_code == 401, by_center.text

        key = {**ops, "Idempotency-Key": f"replay-{uuid.uuid4()}"}
        first = await api.post(replay, headers=key)
        assert first.status_code == 200, first.text
        assert "Idempotent-Replayed" not in first.headers
        assert [r["operator"] for r in first.json()["replays"]] == [
            f"ops:{ops['X-Api-Key'].split('_')[1]}"
        ]
        again = await api.post(replay, headers=key)
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(again.json()["replays"]) == 1

        back = await published_since(bootstrap, before, str(case_id).encode())
        assert len(back) == 1, "the same key published more than once"
        (record,) = back
        assert json.loads(record.value)["id"] == event["id"]
        headers = dict(record.headers)
        assert headers["traceparent"] == TRACEPARENT.encode()
        assert not [k for k in headers if k.startswith("dlq.")]

        # The key is the operator's for that replay only.
        other = f"/v1/ops/dead-letters/{topics.CASES}/{letter['partition']}/999999999/replay"
        missing = await api.post(other, headers={**ops, "Idempotency-Key": f"x-{uuid.uuid4()}"})
        assert missing.status_code == 404, missing.text
        reused = await api.post(other, headers=key)
        assert reused.status_code in (404, 422), reused.text
        unknown = await api.get("/v1/ops/dead-letters/secrets.v1", headers=ops)
        assert unknown.status_code == 404, unknown.text
        assert (await api.get("/v1/ops/dead-letters", headers=center)).status_code == 401

        relisted = await api.get(f"/v1/ops/dead-letters/{topics.CASES}", headers=ops)
        (letter,) = [d for d in relisted.json() if d["case_id"] == str(case_id)]
        assert len(letter["replays"]) == 1

    outcomes = [a.outcome for a in await audited(rt, "/replay")]
    assert outcomes.count("replayed") == 1 and outcomes.count("replayed_again") == 1
    assert "denied" in [a.outcome for a in await audited(rt, "dead-letters")]


async def test_a_case_timeline_holds_partners_rows_and_its_dead_letters(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    ops = {"X-Api-Key": await key_for(rt, "ops")}
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id, _ = await open_case(rt)
        offer = (await berlin.offer_for(case_id))["data"]
        center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        declined = await api.post(
            f"/v1/partner/referrals/{offer['referral_id']}/decline",
            json={"reason": "no_capacity"},
            headers={**center, "Idempotency-Key": f"decline-{uuid.uuid4()}"},
        )
        assert declined.status_code == 200, declined.text
        await dead_letter_of(bootstrap, case_id)

        url = f"/v1/ops/cases/{case_id}/timeline"
        answer = await api.get(url, headers=ops)
        assert answer.status_code == 200, answer.text
        timeline = answer.json()
        assert timeline["trace_viewer"] == "not_configured"
        assert timeline["dead_letters"] == "ok"
        assert timeline["root_trace_url"] is None
        names = [e["name"] for e in timeline["entries"]]
        assert f"offered to {BERLIN} (attempt 1)" in names
        assert f"declined by {BERLIN}" in names
        assert any(n.endswith("(attempt 2)") for n in names), names
        assert names.index(f"declined by {BERLIN}") > names.index(
            f"offered to {BERLIN} (attempt 1)"
        )
        (letter,) = [e for e in timeline["entries"] if e["source"] == "dead_letter"]
        assert letter["error"] is True
        assert letter["event_type"] == "referrals.case.withdrawn.v1"
        assert letter["trace_id"] == format_trace_id(TRACE_ID)
        assert timeline["routing_status"] == "offered"

        # A trace viewer that does not answer: the rest of the timeline, and why not the spans.
        rt.trace_viewer = TraceViewer(
            url=f"http://127.0.0.1:{closed_port()}", public_url="http://viewer.test", timeout=2
        )
        answer = await api.get(url, headers=ops)
        assert answer.status_code == 200, answer.text
        assert answer.json()["trace_viewer"] == "unavailable"
        assert answer.json()["root_trace_url"] == (
            f"http://viewer.test/zipkin/traces/{case_id.hex}"
        )
        assert len(answer.json()["entries"]) == len(timeline["entries"])
        assert answer.json()["entries"][0]["trace_url"] is None or answer.json()["entries"][0][
            "trace_url"
        ].startswith("http://viewer.test/")

        nobody = await api.get(f"/v1/ops/cases/{uuid.uuid4()}/timeline", headers=ops)
        assert nobody.status_code == 404, nobody.text
        assert nobody.headers["content-type"] == "application/problem+json"
        assert (await api.get(url, headers=center)).status_code == 401
    assert [a.case_id for a in await audited(rt, "/timeline")].count(case_id) >= 2


async def test_an_opinion_past_its_expected_date_is_listed_as_overdue(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    ops = {"X-Api-Key": await key_for(rt, "ops")}
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id, _ = await open_case(rt)
        offer = (await berlin.offer_for(case_id))["data"]
        center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        in_a_week = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        accepted = await api.post(
            f"/v1/partner/referrals/{offer['referral_id']}/accept",
            json={"expected_opinion_at": in_a_week},
            headers=center,
        )
        assert accepted.status_code == 200, accepted.text
        listed = await api.get("/v1/ops/overdue", headers=ops)
        assert listed.status_code == 200, listed.text
        assert str(case_id) not in listed.text

        # Eight days later (the row's date moved back, as the clock would move forward).
        async with rt.db.unit_of_work() as uow:
            await uow.session.execute(
                update(Referral)
                .where(Referral.id == uuid.UUID(offer["referral_id"]))
                .values(expected_opinion_at=datetime.now(UTC) - timedelta(days=1))
            )
            await uow.commit()
        listed = await api.get("/v1/ops/overdue", headers=ops)
        (late,) = [o for o in listed.json() if o["case_id"] == str(case_id)]
        assert (late["what"], late["center_code"]) == ("opinion", BERLIN)
        assert late["referral_id"] == offer["referral_id"]
        assert late["overdue_seconds"] >= 86_000
        assert (await api.get("/v1/ops/overdue", headers=center)).status_code == 401
