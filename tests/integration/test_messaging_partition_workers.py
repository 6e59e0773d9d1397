"""A consumer settles each partition's records on its own: a record on an idle partition never
waits for another partition's batch, one partition's records keep their order, and a partition
whose batch cannot be settled is consumed again from there, alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from referrals_common.contracts import CaseWithdrawn, new_event

from .conftest import count_effects, effects, record_effect, running_consumer, wait_for

pytestmark = pytest.mark.integration


async def send(producer: AIOKafkaProducer, topic: str, partition: int, case_id: uuid.UUID):
    event = new_event(CaseWithdrawn(case_id=case_id))
    await producer.send_and_wait(topic, event.to_json(), key=b"k", partition=partition)
    return event


async def test_a_record_on_an_idle_partition_never_waits_for_another_partitions_batch(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    """A case's routing takes a while on partition 0; an event of another case arriving on
    partition 1 meanwhile is applied at once, not after partition 0's batch."""
    topic = await new_topic("cases", partitions=2)
    slow, quick = uuid.uuid4(), uuid.uuid4()
    started, finished = asyncio.Event(), {}

    async def handler(event, uow):
        if event.case_id == slow:
            started.set()
            await asyncio.sleep(2.5)
        await record_effect(event, uow)
        finished[event.case_id] = asyncio.get_running_loop().time()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with running_consumer(db, kafka_bootstrap, topic, handler=handler):
            await send(producer, topic, 0, slow)
            await asyncio.wait_for(started.wait(), 30)
            await send(producer, topic, 1, quick)
            await wait_for(lambda: count_effects(messaging_dsn, 2), timeout=30)
    finally:
        await producer.stop()

    assert finished[quick] < finished[slow], "partition 1's event waited for partition 0's batch"


async def test_an_unsettled_partition_is_consumed_again_alone_and_in_order(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    """The database fails under partition 0's first event (alone, and again when tried with the
    events after it): partition 1 goes on meanwhile, and partition 0's events are applied once
    each, in their order, when they come again."""
    topic = await new_topic("cases", partitions=2)
    first, second, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    failures = 0
    other_applied = asyncio.Event()

    async def handler(event, uow):
        nonlocal failures
        if event.case_id == first and failures < 2:
            failures += 1
            await asyncio.wait_for(other_applied.wait(), 10)
            raise ConnectionResetError("the database went away")
        await record_effect(event, uow)
        if event.case_id == other:
            uow.after_commit(other_applied.set)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with running_consumer(
            db, kafka_bootstrap, topic, handler=handler, attempts=1, backoff_max=0.1
        ) as consumer:
            e1 = await send(producer, topic, 0, first)
            e2 = await send(producer, topic, 0, second)
            await send(producer, topic, 1, other)
            await wait_for(lambda: count_effects(messaging_dsn, 3), timeout=60)
            await asyncio.sleep(1.0)  # nothing more comes
    finally:
        await producer.stop()

    rows = await effects(messaging_dsn)
    assert failures == 2
    assert len(rows) == 3
    applied = [row["event_id"] for row in rows]
    assert applied.index(e1.id) < applied.index(e2.id)
    assert consumer.stats["dead_lettered"] == 0
