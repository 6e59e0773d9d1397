"""`OffsetCommits`: a consumer's settled batches are committed together, later, and only for
the partitions it still owns."""

from __future__ import annotations

import asyncio
from typing import Any

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


async def test_a_failed_commit_is_dropped_and_the_records_come_again() -> None:
    class Failing(FakeAiokafkaConsumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            raise RuntimeError("coordinator away")

    commits = commits_of(Failing(TopicPartition("t", 0)), 60)
    commits.settled([record(0, 1)])
    await commits.flush()  # logged, not raised
    assert commits.commits == 0


def test_a_subscribed_consumer_commits_through_offset_commits() -> None:
    events = EventConsumer("test.offsets", db=None, dead_letters=None, commit_interval=0.25)  # type: ignore[arg-type]  # not reached
    events.subscribe(KafkaBroker("localhost:9092"), "t")
    [subscriber] = events.subscribers
    assert isinstance(subscriber.offset_commits, OffsetCommits)
    assert subscriber.offset_commits.interval == 0.25
    assert subscriber.offset_commits.subscriber is subscriber
