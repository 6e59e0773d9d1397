"""A consumer commits its offsets after the effects, off the critical path: settled batches
together, at once after a dead letter, and at the latest when it stops."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.messaging.kafka import ensure_topics

from .conftest import running_consumer, wait_for

pytestmark = pytest.mark.integration


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """The sum over `topic`'s partitions of the offsets `group` has committed."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = reader.partitions_for_topic(topic) or set()
        if not partitions:
            await reader._client.force_metadata_update()  # a fresh client knows no topic yet
            partitions = reader.partitions_for_topic(topic) or set()
        offsets = [await reader.committed(TopicPartition(topic, p)) for p in partitions]
        return sum(offset or 0 for offset in offsets)
    finally:
        await reader.stop()


async def send_one_at_a_time(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=uuid.uuid4().bytes)
            await asyncio.sleep(0.05)  # a batch of its own
    finally:
        await producer.stop()


async def test_settled_batches_are_committed_later_in_one_request_and_at_the_latest_on_stop(
    db, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    events = [new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(8)]
    async with running_consumer(db, kafka_bootstrap, topic, commit_interval=60.0) as consumer:
        [subscriber] = consumer.subscribers
        await send_one_at_a_time(kafka_bootstrap, topic, [e.to_json() for e in events])
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["applied"] == 8 or None))
        # Every effect is committed; none of the batches waited for an offset commit.
        assert subscriber.offset_commits.commits == 0
        assert await committed_total(kafka_bootstrap, consumer.name, topic) == 0
    assert subscriber.offset_commits.commits == 1  # all eight, when the subscriber stopped
    assert await committed_total(kafka_bootstrap, consumer.name, topic) == 8


async def test_offsets_are_committed_within_the_interval_without_stopping(
    db, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    events = [new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(5)]
    async with running_consumer(db, kafka_bootstrap, topic, commit_interval=0.2) as consumer:
        [subscriber] = consumer.subscribers
        await send_one_at_a_time(kafka_bootstrap, topic, [e.to_json() for e in events])
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["applied"] == 5 or None))

        async def all_committed() -> bool:
            return await committed_total(kafka_bootstrap, consumer.name, topic) == 5

        await wait_for(all_committed, timeout=10)
        assert 1 <= subscriber.offset_commits.commits <= 5


async def test_a_batch_that_dead_lettered_a_record_is_committed_at_once(
    db, kafka_bootstrap, new_topic
):
    topic = await new_topic("cases")
    await ensure_topics(kafka_bootstrap, [topic + ".dlq"], partitions=1, with_dead_letters=False)
    good = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    async with running_consumer(db, kafka_bootstrap, topic, commit_interval=60.0) as consumer:
        await send_one_at_a_time(kafka_bootstrap, topic, [good.to_json(), b"not an event"])
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["dead_lettered"] == 1 or None))

        async def both_committed() -> bool:
            return await committed_total(kafka_bootstrap, consumer.name, topic) == 2

        # Not after 60 s: its redelivery would be dead-lettered again (no inbox row for it).
        await wait_for(both_committed, timeout=10)
