"""A platform process's loop inside a test's event loop: an event consumer (with its dead-letter
publisher and FastStream broker) or an outbox relay, started on entry and stopped on exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import Kafka, event_broker
from referrals_common.messaging.relay import OutboxRelay


@contextlib.asynccontextmanager
async def consuming(
    kafka: Kafka,
    build: Callable[[DeadLetterPublisher], EventConsumer],
    *topics: str,
    **options: Any,
) -> AsyncIterator[EventConsumer]:
    """The consumer `build` makes (given its dead-letter publisher), subscribed to `topics`
    with FastStream `options`, consuming until the block ends."""
    dead_letters = DeadLetterPublisher(kafka)
    await dead_letters.start()
    broker = event_broker(kafka, logger=None)
    consumer = build(dead_letters)
    consumer.subscribe(broker, *topics, **options)
    try:
        await broker.start()
        yield consumer
    finally:
        await broker.stop()
        await dead_letters.stop()


@contextlib.asynccontextmanager
async def relaying(dsn: str, kafka: Kafka, **options: Any) -> AsyncIterator[OutboxRelay]:
    """An outbox relay publishing the database's outbox until the block ends."""
    relay = OutboxRelay(dsn, kafka, **options)
    await relay.start()
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        await relay.stop()
        await task
