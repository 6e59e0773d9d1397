"""`OffsetCommits`: a consumer's settled batches are committed together, later, and only for
the partitions it still owns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from referrals_common.messaging.consumer import EventConsumer, OffsetCommits


class FakeAiokafkaConsumer:
    def __init__(self, *assigned: TopicPartition) -> None:
        self.assigned = set(assigned)
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class FakeSubscriber:
    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def commits_of(consumer: FakeAiokafkaConsumer, interval: float) -> OffsetCommits:
    commits = OffsetCommits(interval)
    commits.subscriber = FakeSubscriber(consumer)
    return commits


async def test_batches_settled_within_the_interval_are_committed_in_one_request() -> None:
    kafka = FakeAiokafkaConsumer(TopicPartition("t", 0), TopicPartition("t", 1))
    commits = commits_of(kafka, 0.05)
    commits.settled([record(0, 10), record(0, 11)])
    commits.settled([record(1, 3)])
    commits.settled([record(0, 12)])
    assert kafka.commits == []  # nothing on the critical path
    await asyncio.sleep(0.15)
    assert kafka.commits == [{TopicPartition("t", 0): 13, TopicPartition("t", 1): 4}]
    assert commits.commits == 1


async def test_a_partition_no_longer_assigned_is_not_committed() -> None:
    kafka = FakeAiokafkaConsumer(TopicPartition("t", 1))
    commits = commits_of(kafka, 60)
    commits.settled([record(0, 5), record(1, 7)])
    await commits.flush()
    assert kafka.commits == [{TopicPartition("t", 1): 8}]


async def test_a_rebalance_and_a_stop_commit_what_is_noted_at_once() -> None:
    kafka = FakeAiokafkaConsumer(TopicPartition("t", 0))
    commits = commits_of(kafka, 60)
    commits.settled([record(0, 1)])
    await commits.on_partitions_revoked({TopicPartition("t", 0)})
    commits.settled([record(0, 2)])
    await commits.close()
    assert kafka.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 3}]


async def test_a_failed_commit_is_tried_again_in_the_next_round() -> None:
    class FailingOnce(FakeAiokafkaConsumer):
        failed = False

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("coordinator away")
            await super().commit(offsets)

    kafka = FailingOnce(TopicPartition("t", 0))
    commits = commits_of(kafka, 0.02)
    commits.settled([record(0, 1)])
    await asyncio.sleep(0.2)
    assert kafka.commits == [{TopicPartition("t", 0): 2}]


async def test_a_batch_settled_while_a_commit_is_under_way_is_committed_after_it() -> None:
    class Slow(FakeAiokafkaConsumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            await asyncio.sleep(0.1)
            await super().commit(offsets)

    kafka = Slow(TopicPartition("t", 0))
    commits = commits_of(kafka, 0.01)
    commits.settled([record(0, 1)])
    await asyncio.sleep(0.05)  # the first commit is under way
    commits.settled([record(0, 2)])
    await asyncio.sleep(0.4)
    assert kafka.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 3}]


def test_a_subscribed_consumer_commits_through_offset_commits() -> None:
    events = EventConsumer("test.offsets", db=None, dead_letters=None, commit_interval=0.25)  # type: ignore[arg-type]  # not reached
    events.subscribe(KafkaBroker("localhost:9092"), "t")
    [subscriber] = events.subscribers
    assert isinstance(subscriber.offset_commits, OffsetCommits)
    assert subscriber.offset_commits.interval == 0.25
    assert subscriber.offset_commits.subscriber is subscriber


async def test_a_commit_that_hangs_is_given_up_so_a_rebalance_never_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Hanging(FakeAiokafkaConsumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            await asyncio.Event().wait()  # the coordinator never answers

    monkeypatch.setattr(OffsetCommits, "COMMIT_TIMEOUT", 0.05)
    commits = commits_of(Hanging(TopicPartition("t", 0)), 60)
    commits.settled([record(0, 1)])
    async with asyncio.timeout(1):
        await commits.on_partitions_revoked({TopicPartition("t", 0)})
    assert commits.commits == 0


def test_by_default_offsets_are_committed_off_the_critical_path_every_half_second() -> None:
    events = EventConsumer("test.offsets", db=None, dead_letters=None)  # type: ignore[arg-type]  # not reached
    events.subscribe(KafkaBroker("localhost:9092"), "t")
    [subscriber] = events.subscribers
    assert isinstance(subscriber.offset_commits, OffsetCommits)
    assert subscriber.offset_commits.interval == 0.5


def test_without_a_commit_interval_fast_stream_commits_each_batch_itself() -> None:
    events = EventConsumer("test.offsets", db=None, dead_letters=None, commit_interval=None)  # type: ignore[arg-type]  # not reached
    events.subscribe(KafkaBroker("localhost:9092"), "t")
    [subscriber] = events.subscribers
    assert subscriber.offset_commits is None
