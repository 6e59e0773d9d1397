"""A consumer's batch reaches it without a detour through a worker thread."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from referrals_common.messaging.consumer import KafkaMessage


async def test_a_delivered_batch_is_resolved_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio.to_thread

    hops: list[object] = []
    original = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(func)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    broker = KafkaBroker("localhost:9092")
    batches: list[int] = []

    @broker.subscriber("cases", batch=True, group_id="g")
    async def on_batch(message: KafkaMessage) -> None:
        batches.append(len(message.raw_message))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b"a", b"b", topic="cases")
        await test_broker.publish(b"c", "cases")
    assert batches == [2, 1]
    assert hops == []
