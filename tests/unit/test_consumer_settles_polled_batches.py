"""A batch the subscriber's consume loop polls goes straight to the consumer, not through
FastStream's per-message pipeline, with what that pipeline did for us kept: the records reach
`process_batch`, a batch that fails is rewound and not committed, a settled batch is committed
(by `OffsetCommits`, or at once without one), a stopping subscriber applies nothing; a broker
with middlewares of its own still runs them. And a batch of one partition's events is applied
in the batch's task, not one made for it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faststream import BaseMiddleware
from faststream._internal.endpoint.subscriber.usecase import SubscriberUsecase
from faststream._internal.endpoint.subscriber.utils import MultiLock
from faststream.kafka import KafkaBroker

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.messaging.consumer import EventConsumer, _CommitsElsewhere


class FakeAiokafkaConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[Any] = []

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def commit(self, offsets: Any = None) -> None:
        self.commits.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return set()


class RecordingConsumer(EventConsumer):
    def __init__(self, *, fail: bool = False, **options: Any) -> None:
        super().__init__("test.settle", db=None, dead_letters=None, **options)  # type: ignore[arg-type]  # not reached
        self.batches: list[tuple[Any, ...]] = []
        self.fail = fail

    async def process_batch(self, records: tuple[Any, ...]) -> None:
        self.batches.append(records)
        if self.fail:
            raise ConnectionError("the database is away")


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def polling(events: EventConsumer, broker: KafkaBroker | None = None) -> Any:
    """`events`' subscriber as its start leaves it, on a fake aiokafka consumer."""
    broker = broker or KafkaBroker("localhost:9092")
    broker._setup_logger()  # as its start does
    events.subscribe(broker, "t")
    [subscriber] = events.subscribers
    subscriber.consumer = FakeAiokafkaConsumer()
    # What its start does, but for subscribing in Kafka.
    subscriber._build_fastdepends_model()
    commits_elsewhere = subscriber.offset_commits is not None
    kafka = subscriber.consumer
    subscriber.parser._setup(_CommitsElsewhere(kafka) if commits_elsewhere else kafka)
    subscriber.lock = MultiLock()
    subscriber.running = True
    return subscriber


BATCH = (record(0, 7), record(1, 3), record(0, 8))


async def test_a_polled_batch_reaches_the_consumer_without_faststreams_pipeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def pipeline(self: Any, msg: Any) -> None:
        raise AssertionError("went through FastStream's process_message")

    monkeypatch.setattr(SubscriberUsecase, "process_message", pipeline)
    events = RecordingConsumer()
    subscriber = polling(events)
    await subscriber.consume_one(BATCH)
    assert events.batches == [BATCH]
    assert subscriber.consumer.seeks == []


async def test_a_failed_batch_is_rewound_to_each_partitions_first_record_and_not_committed() -> (
    None
):
    events = RecordingConsumer(fail=True, commit_interval=None)
    subscriber = polling(events)
    await subscriber.consume_one(BATCH)
    assert sorted(subscriber.consumer.seeks) == [
        (TopicPartition("t", 0), 7),
        (TopicPartition("t", 1), 3),
    ]
    assert subscriber.consumer.commits == []


async def test_a_settled_batch_is_committed_at_once_without_offset_commits() -> None:
    events = RecordingConsumer(commit_interval=None)
    subscriber = polling(events)
    await subscriber.consume_one(BATCH)
    assert subscriber.consumer.commits == [None]  # the consumer's positions, as FastStream's ack


async def test_a_settled_batch_is_noted_for_offset_commits_and_not_committed_on_the_spot() -> None:
    events = RecordingConsumer(commit_interval=60)
    subscriber = polling(events)
    await subscriber.consume_one(BATCH)
    assert subscriber.consumer.commits == []
    assert subscriber.offset_commits._noted == {
        TopicPartition("t", 0): 9,
        TopicPartition("t", 1): 4,
    }
    subscriber.offset_commits._task.cancel()


async def test_a_stopping_subscriber_applies_nothing() -> None:
    events = RecordingConsumer()
    subscriber = polling(events)
    subscriber.running = False
    await subscriber.consume_one(BATCH)
    assert events.batches == []


async def test_a_broker_with_middlewares_still_runs_them() -> None:
    seen: list[object] = []

    class Seeing(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            seen.append(msg.raw_message)
            return await call_next(msg)

    events = RecordingConsumer()
    subscriber = polling(events, KafkaBroker("localhost:9092", middlewares=[Seeing]))
    await subscriber.consume_one(BATCH)
    assert seen == [BATCH]
    assert events.batches == [BATCH]


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.inbox = self

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def record(self, consumer: str, event_id: uuid.UUID, event_type: str) -> bool:
        return True

    async def commit(self) -> None:
        self.db.commits += 1


class FakeDatabase:
    def __init__(self) -> None:
        self.commits = 0

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


def event_record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", value, None, 1, len(value), ())


async def test_one_partitions_events_are_applied_in_the_batchs_own_task() -> None:
    events = EventConsumer("test.settle", FakeDatabase(), None)  # type: ignore[arg-type]  # fakes
    tasks: list[asyncio.Task[Any] | None] = []

    @events.handles(CaseWithdrawn)
    async def note(event: Any, uow: Any) -> None:
        tasks.append(asyncio.current_task())

    await events.process_batch((event_record(0, 1),))
    assert tasks == [asyncio.current_task()]  # no task made (and scheduled) for one partition


async def test_several_partitions_are_applied_concurrently_and_a_failure_is_raised() -> None:
    events = EventConsumer("test.settle", FakeDatabase(), None, attempts=1)  # type: ignore[arg-type]  # fakes
    started: list[int] = []
    both = asyncio.Event()

    @events.handles(CaseWithdrawn)
    async def wait_for_the_other(event: Any, uow: Any) -> None:
        started.append(1)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 1.0)  # the other partition's runs meanwhile
        raise ConnectionRefusedError("the database is away")  # an infrastructure fault

    events.backoff_max = 0
    with pytest.raises(ConnectionRefusedError):
        await events.process_batch((event_record(0, 1), event_record(1, 1)))
    assert len(started) == 2


async def test_a_partition_revoked_during_a_failed_batch_does_not_stop_the_others_rewind() -> None:
    class Revoked(FakeAiokafkaConsumer):
        def seek(self, partition: TopicPartition, offset: int) -> None:
            if partition.partition == 0:
                raise IllegalStateError(f"No current assignment for partition {partition}")
            super().seek(partition, offset)

    events = RecordingConsumer(fail=True)
    subscriber = polling(events)
    subscriber.consumer = Revoked()
    await subscriber.consume_one((record(0, 7), record(1, 3)))  # raises nothing
    assert subscriber.consumer.seeks == [(TopicPartition("t", 1), 3)]
