"""A consumer's subscriber waits in aiokafka for records instead of polling and sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from faststream.kafka import KafkaBroker, KafkaRouter

from referrals_common.messaging.consumer import (
    EventConsumer,
    WaitingBatchSubscriber,
    waiting,
)


class FakeAiokafkaConsumer:
    """`getmany` as aiokafka's: waits up to `timeout_ms` for records, returns early with them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.records: asyncio.Queue[dict[str, list[str]]] = asyncio.Queue()

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        try:
            return await asyncio.wait_for(self.records.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}


def consumer() -> EventConsumer:
    return EventConsumer("test.waiting", db=None, dead_letters=None)  # type: ignore[arg-type]  # not reached


@pytest.mark.parametrize("owner", [KafkaBroker, KafkaRouter])
def test_an_event_consumer_subscribes_with_the_waiting_subscriber(owner: Any) -> None:
    events = consumer()
    events.subscribe(owner("localhost:9092") if owner is KafkaBroker else owner(), "t")
    [subscriber] = events.subscribers
    assert type(subscriber) is WaitingBatchSubscriber
    assert subscriber.max_records == 200


async def test_records_arriving_during_a_wait_are_returned_at_once_and_in_order() -> None:
    events = consumer()
    events.subscribe(KafkaBroker("localhost:9092"), "t", max_records=50)
    [subscriber] = events.subscribers
    fake = FakeAiokafkaConsumer()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, fake.records.put_nowait, {"t-0": ["a", "b"], "t-1": ["c"]})
    began = loop.time()
    batch = await subscriber.get_msg(fake)
    assert batch == ("a", "b", "c")
    assert loop.time() - began < 0.5  # not the whole wait
    assert fake.calls == [(WaitingBatchSubscriber.IDLE_WAIT_MS, 50)]


async def test_an_empty_wait_returns_nothing_without_sleeping_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_sleep(*_: object) -> None:
        raise AssertionError("the subscriber slept after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    monkeypatch.setattr(WaitingBatchSubscriber, "IDLE_WAIT_MS", 20)
    events = consumer()
    events.subscribe(KafkaBroker("localhost:9092"), "t")
    [subscriber] = events.subscribers
    fake = FakeAiokafkaConsumer()
    assert await subscriber.get_msg(fake) == ()
    assert fake.calls == [(20, 200)]


def test_only_a_batch_subscriber_is_turned_into_a_waiting_one() -> None:
    broker = KafkaBroker("localhost:9092")
    single = broker.subscriber("t", group_id="g")
    with pytest.raises(TypeError):
        waiting(single)
