"""Outbox, relay, idempotent consumer and dead letters over real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.messaging.consumer import PoisonEvent
from referrals_common.messaging.dlq_cli import read_dead_letters, replay
from referrals_common.messaging.outbox import slot_of
from referrals_common.messaging.relay import ADVISORY_NAMESPACE as ADVISORY
from referrals_common.messaging.relay import OutboxRelay
from tests.running import relaying

from .conftest import count_effects, effects, running_consumer, wait_for, write_withdrawals

pytestmark = pytest.mark.integration


async def unsent(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("select count(*) from outbox where sent_at is null")
    finally:
        await conn.close()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0):
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += batch
        # Anything more than expected would be a duplicate: give it a moment to show up.
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records += batch
    finally:
        await consumer.stop()
    return records


async def test_an_event_written_through_the_outbox_reaches_a_consumer_and_is_applied_once(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases", partitions=3)
    written = await write_withdrawals(db, [uuid.uuid4() for _ in range(20)], 3, topic)

    async with (
        running_consumer(db, kafka_bootstrap, topic) as consumer,
        relaying(messaging_dsn, kafka_bootstrap),
    ):
        rows = await wait_for(lambda: count_effects(messaging_dsn, len(written)))
        await asyncio.sleep(1.0)  # time for any duplicate to be (wrongly) applied

    rows = await effects(messaging_dsn)
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in written)
    assert consumer.stats["applied"] == len(written)
    assert await unsent(messaging_dsn) == 0


async def test_the_same_event_delivered_twice_has_one_effect(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    event = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(3):  # a redelivery, and a replay from the DLQ tool or an ops script
            await producer.send_and_wait(topic, event.to_json(), key=str(event.case_id).encode())
    finally:
        await producer.stop()

    async with running_consumer(db, kafka_bootstrap, topic) as consumer:
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["duplicates"] == 2 or None))

    rows = await effects(messaging_dsn)
    assert [r["event_id"] for r in rows] == [event.id]
    assert consumer.stats == {"applied": 1, "duplicates": 2, "skipped": 0, "dead_lettered": 0}


def start_relay_process(dsn: str, bootstrap: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "referrals_common.messaging.relay",
            "--dsn",
            dsn,
            "--bootstrap",
            bootstrap,
            "--batch-size",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


async def test_a_relay_killed_mid_stream_publishes_what_was_left_after_restart(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases", partitions=3)
    written = await write_withdrawals(db, [uuid.uuid4() for _ in range(200)], 10, topic)
    total = len(written)

    # The test holds half of the work slots, as another relay replica would: the relay publishes
    # the other half, and is SIGKILLed with the held half committed but not published (a race
    # against the relay's speed would miss its window on a fast or a loaded machine).
    holder = await asyncpg.connect(messaging_dsn)
    try:
        slots = [
            r["slot"]
            for r in await holder.fetch(
                "select distinct slot from outbox where sent_at is null order by slot"
            )
        ]
        held = slots[: len(slots) // 2]
        for slot in held:
            await holder.execute("select pg_advisory_lock($1::int, $2::int)", ADVISORY, slot)
        held_rows = await holder.fetchval(
            "select count(*) from outbox where sent_at is null and slot = any($1::int[])", held
        )
        relay = start_relay_process(messaging_dsn, kafka_bootstrap)
        try:
            await wait_for(lambda: _only_left(messaging_dsn, held_rows), timeout=60)
        finally:
            relay.send_signal(signal.SIGKILL)
            relay.wait()
    finally:
        await holder.close()  # the advisory locks go with the session
    left = await unsent(messaging_dsn)
    assert 0 < left == held_rows < total, "the relay must die with work left"

    restarted = start_relay_process(messaging_dsn, kafka_bootstrap)
    try:
        async with running_consumer(db, kafka_bootstrap, topic) as consumer:
            await wait_for(lambda: count_effects(messaging_dsn, total), timeout=60)
            await asyncio.sleep(1.0)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=20) == 0, restarted.stderr.read().decode()

    rows = await effects(messaging_dsn)
    assert len(rows) == total, "every event applied exactly once"
    assert {r["event_id"] for r in rows} == {e.id for e in written}
    assert await unsent(messaging_dsn) == 0
    assert consumer.stats["applied"] == total


async def _only_left(dsn: str, held_rows: int):
    return await unsent(dsn) == held_rows or None


async def test_a_poison_event_goes_to_the_dlq_and_the_next_event_is_still_processed(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    await new_topic_named(kafka_bootstrap, topic + ".dlq")
    doomed, good = uuid.uuid4(), uuid.uuid4()
    calls: dict[uuid.UUID, int] = defaultdict(int)

    async def handler(event, uow):
        calls[event.case_id] += 1
        if event.case_id == doomed:
            raise RuntimeError("the handler cannot apply this case")
        from .conftest import record_effect

        await record_effect(event, uow)

    unknown = {
        **json.loads(new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()),
        "type": "referrals.case.teleported.v9",
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            b"{not json",
            key=b"k1",
            headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
        )
        await producer.send_and_wait(topic, json.dumps(unknown).encode(), key=b"k2")
        await producer.send_and_wait(
            topic, new_event(CaseWithdrawn(case_id=doomed)).to_json(), key=str(doomed).encode()
        )
        await producer.send_and_wait(
            topic, new_event(CaseWithdrawn(case_id=good)).to_json(), key=str(good).encode()
        )
    finally:
        await producer.stop()

    async with running_consumer(
        db,
        kafka_bootstrap,
        topic,
        handler=handler,
        attempts=3,
        backoff_initial=0.01,
        backoff_max=0.05,
    ) as consumer:
        await wait_for(lambda: count_effects(messaging_dsn, 1))
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["dead_lettered"] == 3 or None))

    assert [r["case_id"] for r in await effects(messaging_dsn)] == [good]
    assert calls[doomed] == 3, "bounded retries before dead-lettering"
    letters = await read_dead_letters(kafka_bootstrap, topic)
    assert len(letters) == 3
    by_type = {d.header("dlq.error_type"): d for d in letters}
    assert set(by_type) == {"InvalidEvent", "UnknownEventType", "RuntimeError"}
    assert "not JSON" in by_type["InvalidEvent"].header("dlq.error")
    assert "referrals.case.teleported.v9" in by_type["UnknownEventType"].header("dlq.error")
    failed = by_type["RuntimeError"]
    assert failed.header("dlq.error") == "the handler cannot apply this case"
    assert failed.header("dlq.original_topic") == topic
    assert failed.header("dlq.consumer") == consumer.name
    assert failed.header("dlq.original_offset") == "2"
    assert by_type["InvalidEvent"].header("traceparent").startswith("00-111")

    # Once the cause is fixed, a replay applies the event, and only once.
    calls.clear()
    await replay(kafka_bootstrap, [failed, failed])
    async with running_consumer(db, kafka_bootstrap, topic, name=consumer.name) as fixed:
        await wait_for(lambda: count_effects(messaging_dsn, 2))
        await wait_for(lambda: asyncio.sleep(0, fixed.stats["duplicates"] == 1 or None))
    assert sorted(r["case_id"] for r in await effects(messaging_dsn)) == sorted([good, doomed])


async def new_topic_named(bootstrap: str, name: str) -> None:
    from referrals_common.messaging.kafka import ensure_topics

    await ensure_topics(bootstrap, [name], partitions=1, with_dead_letters=False)


async def test_a_poison_event_raised_as_such_is_dead_lettered_without_retries(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    await new_topic_named(kafka_bootstrap, topic + ".dlq")
    attempts = 0

    async def handler(event, uow):
        nonlocal attempts
        attempts += 1
        raise PoisonEvent("a referral for a case this service never saw")

    await write_withdrawals(db, [uuid.uuid4()], 1, topic)
    async with (
        relaying(messaging_dsn, kafka_bootstrap),
        running_consumer(db, kafka_bootstrap, topic, handler=handler, attempts=5) as consumer,
    ):
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["dead_lettered"] == 1 or None))
    assert attempts == 1


async def test_the_consumer_span_continues_the_trace_of_the_span_that_wrote_the_outbox_row(
    db, messaging_dsn, kafka_bootstrap, new_topic, spans
):
    topic = await new_topic("cases")
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /v1/cases/{id}/withdraw", kind=SpanKind.SERVER) as root:
        [event] = await write_withdrawals(db, [uuid.uuid4()], 1, topic)
    trace_id = root.get_span_context().trace_id

    async with (
        running_consumer(db, kafka_bootstrap, topic),
        relaying(messaging_dsn, kafka_bootstrap),
    ):
        await wait_for(lambda: count_effects(messaging_dsn, 1))

    finished = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in finished}
    publish, process = by_name[f"send {topic}"], by_name[f"process {topic}"]
    assert publish.parent.span_id == root.get_span_context().span_id
    assert process.parent.span_id == publish.context.span_id
    assert process.kind is SpanKind.CONSUMER
    assert process.attributes["messaging.message.id"] == str(event.id)
    # The case id rides along: on the publish (from the row's key) and the process (from the
    # envelope, and the record's `baggage` header).
    assert publish.attributes["referrals.case_id"] == str(event.case_id)
    assert process.attributes["referrals.case_id"] == str(event.case_id)


async def test_two_relay_replicas_never_publish_a_row_twice_and_keep_each_cases_order(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases", partitions=3)
    cases = [uuid.uuid4() for _ in range(100)]
    async with (
        relaying(messaging_dsn, kafka_bootstrap, batch_size=20) as one,
        relaying(messaging_dsn, kafka_bootstrap, batch_size=20) as two,
    ):
        # Written while both relays run, in rounds, so each case's events interleave over time.
        written = []
        for _ in range(5):
            written += await write_withdrawals(db, cases, 2, topic)
        await wait_for(
            lambda: asyncio.sleep(0, one.published + two.published == len(written) or None)
        )
    assert one.published > 0 and two.published > 0, "both replicas took part"

    records = await read_topic(kafka_bootstrap, topic, len(written))
    ids = [json.loads(r.value)["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(written), "no row published twice"
    published_order: dict[str, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        published_order[r.key.decode()].append(json.loads(r.value)["id"])
    written_order: dict[str, list[str]] = defaultdict(list)
    for e in written:
        written_order[str(e.case_id)].append(str(e.id))
    assert published_order == written_order


async def test_a_batch_with_repeated_and_already_applied_events_applies_each_once_in_order(
    db, messaging_dsn
):
    """A partition's batch goes through one transaction and one inbox statement: an event
    applied by an earlier batch, and a second copy of one in the same batch (the relay's
    at-least-once), are duplicates; the rest are applied in the batch's order."""
    from aiokafka import ConsumerRecord

    from referrals_common.messaging.consumer import EventConsumer

    from .conftest import record_effect

    consumer = EventConsumer(f"test-{uuid.uuid4().hex[:8]}", db, None)  # no dead letters here
    consumer.handles(CaseWithdrawn)(record_effect)
    offsets = iter(range(100))

    def record(event) -> ConsumerRecord:
        return ConsumerRecord("t", 0, next(offsets), 0, 0, b"k", event.to_json(), None, 0, 0, ())

    before, first, second = (new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(3))
    await consumer.process_batch((record(before),))
    await consumer.process_batch(
        (record(first), record(before), record(first), record(second), record(second))
    )
    applied = [r["event_id"] for r in await effects(messaging_dsn)]
    assert applied == [before.id, first.id, second.id]
    assert consumer.stats["applied"] == 3
    assert consumer.stats["duplicates"] == 3


async def test_a_claims_rows_leave_in_one_produce_request_without_lingering(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    """The relay's producer does not linger (a lone event is not held back), yet a claim's rows
    of one partition still go to Kafka together: they are all appended before the sender runs."""
    topic = await new_topic("cases", partitions=1)
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap)
    await relay.start()
    try:
        assert relay._producer is not None
        client = relay._producer.client
        produce_requests = 0
        send = client.send

        async def counting(node_id, request, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal produce_requests
            produce_requests += type(request).__name__.startswith("ProduceRequest")
            return await send(node_id, request, *args, **kwargs)

        client.send = counting
        await write_in_one_transaction(db, [uuid.uuid4()], 50, topic)
        assert await relay.publish_batch() == 50
        assert produce_requests == 1
    finally:
        await relay.stop()


class CountingRelay(OutboxRelay):
    """A relay that counts its claims (`publish_batch` calls)."""

    claims = 0

    async def publish_batch(self) -> int:
        self.claims += 1
        return await super().publish_batch()


async def write_in_one_transaction(db, cases: list[uuid.UUID], per_case: int, topic: str) -> None:
    async with db.unit_of_work() as uow:
        events = [new_event(CaseWithdrawn(case_id=c)) for c in cases for _ in range(per_case)]
        await uow.outbox.add_all(events, topic=topic)
        await uow.commit()


def cases_in_distinct_slots(n: int) -> list[uuid.UUID]:
    cases: dict[int, uuid.UUID] = {}
    while len(cases) < n:
        case = uuid.uuid4()
        cases.setdefault(slot_of(str(case)), case)
    return list(cases.values())


async def test_a_relay_that_took_everything_claims_again_only_when_notified(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    relay = CountingRelay(messaging_dsn, kafka_bootstrap, poll_interval=60.0)
    await relay.start()
    task = asyncio.create_task(relay.run())
    try:
        await wait_for(lambda: asyncio.sleep(0, relay.claims == 1 or None))  # found nothing
        await write_in_one_transaction(db, [uuid.uuid4()], 3, topic)  # one notification
        await wait_for(lambda: asyncio.sleep(0, relay.published == 3 or None))
        await asyncio.sleep(0.5)
        assert relay.claims == 2, "no claim after the one that took all three rows"
        await write_in_one_transaction(db, [uuid.uuid4()], 1, topic)
        await wait_for(lambda: asyncio.sleep(0, relay.published == 4 or None), timeout=10)
    finally:
        await relay.stop()
        await task


@pytest.mark.parametrize(
    ("options", "cases", "per_case"),
    [({"batch_size": 2}, 1, 5), ({"slots_per_claim": 1}, 3, 1)],
    ids=["batch-size", "slots-per-claim"],
)
async def test_a_relay_whose_claim_was_cut_short_claims_again_without_a_notification(
    db, messaging_dsn, kafka_bootstrap, new_topic, options, cases, per_case
):
    topic = await new_topic("cases")
    async with relaying(messaging_dsn, kafka_bootstrap, poll_interval=60.0, **options) as relay:
        await write_in_one_transaction(db, cases_in_distinct_slots(cases), per_case, topic)
        await wait_for(lambda: asyncio.sleep(0, relay.published == cases * per_case or None))
    assert await unsent(messaging_dsn) == 0


async def test_sent_rows_are_pruned_after_the_retention_period_and_unsent_rows_never(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    await write_withdrawals(db, [uuid.uuid4() for _ in range(10)], 1, topic)
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap, retention=timedelta(minutes=10))
    await relay.start()
    try:
        assert await relay.publish_batch() == 10
        await write_withdrawals(db, [uuid.uuid4() for _ in range(3)], 1, topic)  # still unsent
        conn = await asyncpg.connect(messaging_dsn)
        try:
            assert await relay.prune() == 0, "sent a moment ago: kept for the retention period"
            await conn.execute(
                "update outbox set sent_at = now() - interval '11 minutes' "
                "where sent_at is not null"
            )
            assert await relay.prune() == 10
            assert await conn.fetchval("select count(*) from outbox") == 3
            assert await relay.pending() == 3
        finally:
            await conn.close()
    finally:
        await relay.stop()


def test_the_dlq_command_lists_dead_letters_with_their_error(kafka_bootstrap):
    from typer.testing import CliRunner

    from referrals_common.messaging.dlq_cli import app

    async def poison() -> str:
        from referrals_common.messaging.kafka import ensure_topics

        topic = f"cli.{uuid.uuid4().hex[:8]}"
        await ensure_topics(kafka_bootstrap, [topic], partitions=1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic + ".dlq",
                b"{}",
                key=b"k",
                headers=[
                    ("dlq.error", b"payload.case_id: Field required"),
                    ("dlq.error_type", b"InvalidEvent"),
                    ("dlq.consumer", b"records"),
                    ("dlq.original_topic", topic.encode()),
                ],
            )
        finally:
            await producer.stop()
        return topic

    topic = asyncio.run(poison())
    result = CliRunner().invoke(
        app, ["list", topic, "--bootstrap", kafka_bootstrap], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "1 dead letter(s)" in result.output
    assert "InvalidEvent" in result.output
    assert "payload.case_id: Field required" in result.output


async def test_an_offer_is_published_to_its_centers_own_inbox_topic(
    db, messaging_dsn, kafka_bootstrap
):
    from referrals_common.contracts import ReferralOffered, parse_event
    from referrals_common.messaging.kafka import ensure_topics

    from ..unit.test_contracts import SAMPLES

    offer = SAMPLES[ReferralOffered]()
    await ensure_topics(kafka_bootstrap, [offer.inbox_topic], partitions=1)
    async with db.unit_of_work() as uow:
        await uow.outbox.add(new_event(offer))
        await uow.commit()
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap)
    await relay.start()
    try:
        assert await relay.publish_batch() == 1
    finally:
        await relay.stop()

    [record] = await read_topic(kafka_bootstrap, offer.inbox_topic, 1)
    assert parse_event(record.value).data == offer
    assert record.key == str(offer.case_id).encode()


async def test_a_lane_of_quick_events_never_waits_behind_a_slow_topic(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    """Two topics of one consumer group: events of the slow one take seconds each (translation
    reading documents). With the quick topic in a lane of its own, its event is applied while the
    slow topic's batch is still being worked through."""
    from faststream.kafka import KafkaBroker

    from referrals_common.messaging.consumer import EventConsumer, subscribe_lanes
    from referrals_common.messaging.dlq import DeadLetterPublisher

    from .conftest import record_effect

    slow_topic, quick_topic = await new_topic("documents"), await new_topic("cases")
    slow_cases = [uuid.uuid4() for _ in range(4)]
    quick_case = uuid.uuid4()
    finished: dict[uuid.UUID, float] = {}

    started = asyncio.Event()

    async def handler(event, uow):
        if event.case_id in slow_cases:
            started.set()
            await asyncio.sleep(2.5)  # reading a document
        await record_effect(event, uow)
        finished[event.case_id] = asyncio.get_running_loop().time()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    for case_id in slow_cases:  # one key: one partition, applied in order
        await producer.send_and_wait(
            slow_topic, new_event(CaseWithdrawn(case_id=case_id)).to_json(), key=b"one-case"
        )

    dead = DeadLetterPublisher(kafka_bootstrap)
    await dead.start()
    consumer = EventConsumer(f"test-lanes-{uuid.uuid4().hex[:8]}", db, dead)
    consumer.handles(CaseWithdrawn)(handler)
    broker = KafkaBroker(kafka_bootstrap, logger=None)
    subscribers = subscribe_lanes(
        consumer,
        broker,
        (slow_topic, quick_topic),
        [
            ((slow_topic,), {"max_records": 4}),
            ((quick_topic,), {"group_id": f"{consumer.name}.quick"}),
        ],
    )
    assert len(subscribers) == 2
    await broker.start()
    try:
        # The quick event arrives while the slow topic's batch is being worked through.
        await asyncio.wait_for(started.wait(), 30)
        await producer.send_and_wait(
            quick_topic, new_event(CaseWithdrawn(case_id=quick_case)).to_json(), key=b"other"
        )
        await wait_for(lambda: count_effects(messaging_dsn, 5), timeout=60)
    finally:
        await producer.stop()
        await broker.stop()
        await dead.stop()

    assert finished[quick_case] < min(finished[c] for c in slow_cases[1:]), (
        "the quick event waited for the slow topic's batch"
    )
    assert len(await effects(messaging_dsn)) == 5


def test_a_lane_must_name_a_topic_the_consumer_reads():
    from faststream.kafka import KafkaBroker

    from referrals_common.messaging.consumer import EventConsumer, subscribe_lanes

    consumer = EventConsumer("test-lanes", db=None, dead_letters=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="elsewhere"):
        subscribe_lanes(consumer, KafkaBroker(), ("a",), [(("elsewhere",), {})])


def test_each_topic_is_traced_with_the_group_that_reads_it():
    from faststream.kafka import KafkaBroker

    from referrals_common.messaging.consumer import EventConsumer, subscribe_lanes

    consumer = EventConsumer("test-lanes", db=None, dead_letters=None)  # type: ignore[arg-type]
    subscribe_lanes(
        consumer, KafkaBroker(), ("docs", "cases"), [(("cases",), {"group_id": "test-lanes.cases"})]
    )
    assert consumer.group("cases") == "test-lanes.cases"
    assert consumer.group("docs") == "test-lanes"
