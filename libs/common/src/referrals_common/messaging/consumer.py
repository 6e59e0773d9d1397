"""Idempotent consumers on FastStream: validate, apply once, commit the offset after the effect.

    consumer = EventConsumer("records.case-projection", db, dead_letters)

    @consumer.handles(CaseSubmitted, CaseWithdrawn)
    async def project_case(event: CloudEvent[CaseSubmitted], uow: UnitOfWork) -> None:
        ...  # change state through uow.session; add follow-up events with uow.outbox.add(...)

    consumer.subscribe(broker, topics.CASES)

For every record:

1. the value is parsed against its contract; an invalid or unknown event goes to `<topic>.dlq`;
   a valid event of a type this consumer does not handle is skipped;
2. the handler runs in a unit of work that first records `(consumer, event id)` in the inbox: a
   redelivered or replayed event finds its row and changes nothing;
3. a failing handler is retried with exponential backoff; after the last attempt (or at once for
   `PoisonEvent`) the record goes to the dead-letter topic and the consumer carries on; a fault
   of the infrastructure (database down) never dead-letters a good event: it is retried;
4. offsets are committed only after all that, once per batch (FastStream ack policy
   NACK_ON_ERROR, no auto commit); if a record cannot be settled, not even into the dead-letter
   topic, the batch is not acknowledged and is consumed again (the inbox absorbs the repeats).

The consumer's span continues the producer's trace from the record's `traceparent` header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from referrals_common.contracts.envelope import (
    CloudEvent,
    EventData,
    InvalidEvent,
    UnknownEventType,
    parse_event,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.dlq import DeadLetterPublisher

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_common.consumer")

Handler = Callable[[CloudEvent[Any], UnitOfWork], Awaitable[None]]


def is_infrastructure_fault(exc: BaseException) -> bool:
    """A fault of the database or network rather than of the event or the handler's logic."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | OperationalError
        | InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError,
    )


class PoisonEvent(Exception):
    """Raised by a handler for an event that can never be applied: dead-letter it, no retries."""


class EventConsumer:
    """One named consumer (its Kafka group and its inbox key) with a handler per event type."""

    def __init__(
        self,
        name: str,
        db: Database,
        dead_letters: DeadLetterPublisher,
        *,
        attempts: int = 5,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.name = name
        self.db = db
        self.dead_letters = dead_letters
        self.attempts = attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._handlers: dict[str, Handler] = {}
        self.stats = {"applied": 0, "duplicates": 0, "skipped": 0, "dead_lettered": 0}

    def handles(self, *event_classes: type[EventData]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for cls in event_classes:
                if cls.event_type in self._handlers:
                    raise ValueError(f"{self.name} already handles {cls.event_type}")
                self._handlers[cls.event_type] = handler
            return handler

        return register

    def subscribe(self, broker: KafkaBroker | KafkaRouter, *topics: str, **options: Any) -> Any:
        """Attach this consumer to `topics` as a FastStream batch subscriber in group `name`.

        Records arrive in batches; each partition's records are applied in order (partitions
        concurrently), and the batch's offsets are committed once, after every effect. If a
        record cannot be settled (an infrastructure fault), the batch is not acknowledged: every
        partition is rewound to its first record of the batch, and the inbox turns what was
        already applied into no-ops when it comes again.
        """

        async def on_batch(message: KafkaMessage) -> None:
            await self.process_batch(message.raw_message)

        options.setdefault("auto_offset_reset", "earliest")
        options.setdefault("max_records", 200)
        # FastStream sleeps for as long again after an empty poll: keep both short for latency.
        options.setdefault("batch_timeout_ms", 5)
        return broker.subscriber(
            *topics,
            group_id=self.name,
            batch=True,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            **options,
        )(on_batch)

    async def process_batch(self, records: tuple[Any, ...]) -> None:
        by_partition: dict[tuple[str, int], list[Any]] = {}
        for record in records:
            by_partition.setdefault((record.topic, record.partition), []).append(record)

        async def in_order(partition_records: list[Any]) -> None:
            if len(partition_records) > 1 and await self._apply_together(partition_records):
                return
            for record in partition_records:
                await self.process(record, record.value)

        results = await asyncio.gather(
            *(in_order(rs) for rs in by_partition.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _apply_together(self, records: list[Any]) -> bool:
        """Apply a partition's records in one transaction (one commit instead of one per event).

        The fast path for the common case where every record is a valid event whose handler
        succeeds. If anything is off (an invalid event, a failing handler, the database), the
        transaction is rolled back and False is returned: the caller then applies the records
        one by one, with retries and dead letters, exactly as if this had not been tried.
        """
        events = []
        for record in records:
            try:
                event = parse_event(record.value)
            except (InvalidEvent, UnknownEventType):
                return False
            events.append((record, event))
        applied = duplicates = skipped = 0
        try:
            async with self.db.unit_of_work() as uow:
                for record, event in events:
                    handler = self._handlers.get(event.type)
                    if handler is None:
                        skipped += 1
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
                    with tracer.start_as_current_span(
                        f"{record.topic} process",
                        context=propagate.extract(headers),
                        kind=SpanKind.CONSUMER,
                    ) as span:
                        span.set_attribute("messaging.system", "kafka")
                        span.set_attribute("messaging.consumer.group.name", self.name)
                        span.set_attribute("messaging.destination.name", record.topic)
                        span.set_attribute("messaging.kafka.offset", record.offset)
                        span.set_attribute("messaging.message.id", str(event.id))
                        span.set_attribute("cloudevents.event_type", event.type)
                        if not await uow.inbox.record(self.name, event.id, event.type):
                            duplicates += 1
                            continue
                        # Each handler sees the database as the previous ones left it, not
                        # objects the session still holds from before their writes.
                        await uow.session.flush()
                        uow.session.expire_all()
                        await handler(event, uow)
                        applied += 1
                await uow.commit()
        except Exception as exc:
            log.info("%s: batch of %d falls back to one by one: %r", self.name, len(records), exc)
            return False
        self.stats["applied"] += applied
        self.stats["duplicates"] += duplicates
        self.stats["skipped"] += skipped
        return True

    async def process(self, record: Any, body: bytes) -> None:
        """Apply one Kafka record (an aiokafka ConsumerRecord); see the module doc."""
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        parent = propagate.extract(headers)
        with tracer.start_as_current_span(
            f"{record.topic} process", context=parent, kind=SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.consumer.group.name", self.name)
            span.set_attribute("messaging.destination.name", record.topic)
            span.set_attribute("messaging.kafka.offset", record.offset)
            try:
                event = parse_event(body)
            except (InvalidEvent, UnknownEventType) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._dead_letter(record, body, exc)
                return
            span.set_attribute("messaging.message.id", str(event.id))
            span.set_attribute("cloudevents.event_type", event.type)
            handler = self._handlers.get(event.type)
            if handler is None:
                self.stats["skipped"] += 1
                return
            try:
                await self._apply(event, handler)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                if is_infrastructure_fault(exc):
                    # The event is fine, our database is not: never dead-letter a good event.
                    # Not acknowledged, the record is consumed again once the fault is over.
                    log.warning("%s: infrastructure fault, will retry: %r", self.name, exc)
                    await asyncio.sleep(self.backoff_max)
                    raise
                await self._dead_letter(record, body, exc)

    async def _apply(self, event: CloudEvent[Any], handler: Handler) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
            ),
            retry=retry_if_not_exception_type(PoisonEvent),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self.db.unit_of_work() as uow:
                    if not await uow.inbox.record(self.name, event.id, event.type):
                        self.stats["duplicates"] += 1
                        return
                    await handler(event, uow)
                    await uow.commit()
        self.stats["applied"] += 1

    async def _dead_letter(self, record: Any, body: bytes, exc: BaseException) -> None:
        log.warning(
            "%s: dead-lettering %s[%s]@%s: %r",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            exc,
        )
        try:
            await self.dead_letters.publish(record, body, consumer=self.name, error=exc)
        except Exception:
            # Not even the DLQ can be written (Kafka down?): do not ack; the record comes back.
            await asyncio.sleep(1.0)
            raise
        self.stats["dead_lettered"] += 1


async def serve_consumer(
    service: str,
    bootstrap_servers: str,
    topics: tuple[str, ...],
    build: Callable[[DeadLetterPublisher], EventConsumer],
    **subscribe_options: Any,
) -> None:
    """Run one service's consumer process until SIGTERM or SIGINT: declare its topics (and their
    dead-letter topics), start its dead-letter publisher and broker, stop them cleanly.

    `subscribe_options` go to `EventConsumer.subscribe` (e.g. a smaller `max_records` for a
    consumer whose events take seconds each)."""
    import signal

    from referrals_common.messaging.kafka import ensure_topics

    await ensure_topics(bootstrap_servers, topics)
    dead = DeadLetterPublisher(bootstrap_servers, client_id=f"{service}-dlq")
    await dead.start()
    broker = KafkaBroker(bootstrap_servers, client_id=service)
    build(dead).subscribe(broker, *topics, **subscribe_options)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await broker.stop()
        await dead.stop()
