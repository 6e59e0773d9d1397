"""Idempotent consumers on FastStream: validate, apply once, commit the offset after the effect.

    consumer = EventConsumer("records.case-projection", db, dead_letters)

    @consumer.handles(CaseSubmitted, CaseWithdrawn)
    async def project_case(event: CloudEvent[CaseSubmitted], uow: UnitOfWork) -> None:
        ...  # change state through uow.session; add follow-up events with uow.outbox.add(...)

    consumer.subscribe(broker, topics.CASES)

For every record:

1. an event of a type this consumer does not handle is skipped, told by the `type` its envelope
   declares (read without the full parse: its content is the handling consumers' to check);
   any other value is parsed against its contract, and an invalid or unknown event goes to
   `<topic>.dlq`;
2. the handler runs in a unit of work that first records `(consumer, event id)` in the inbox: a
   redelivered or replayed event finds its row and changes nothing;
3. a failing handler is retried with exponential backoff; after the last attempt (or at once for
   `PoisonEvent`) the record goes to the dead-letter topic and the consumer carries on; a fault
   of the infrastructure (database down) never dead-letters a good event: it is retried;
4. offsets are committed only after all that (FastStream ack policy NACK_ON_ERROR, no auto
   commit), off the critical path: a settled batch notes its offsets and `OffsetCommits` sends
   every batch noted in the last `commit_interval` seconds (0.5) in one request (at once after
   a dead letter, on a rebalance and on stop); with `commit_interval=None`, FastStream commits
   each batch before the next poll. If a record cannot be settled, not even into the
   dead-letter topic, the batch is not acknowledged and is consumed again (the inbox absorbs
   the repeats, and those of a crash before a noted batch was committed).

The consumer's span (`process <topic>`) continues the producer's trace from the record's
`traceparent` header; the handler runs with the envelope's case id in the baggage, so its spans
and log lines carry it (`referrals_common.telemetry`).

Metrics (`referrals_consumer_*`, see docs/runbook.md): records by outcome, handler durations and
dead letters are counted as records are settled (in memory, no query); the lag of every
partition assigned to this process is refreshed every `lag_interval` seconds by a task started
when the group assigns partitions: the log end offset (one ListOffsets request for all of them)
minus the committed position, which is the first offset of the batch in progress for its
partitions and the consumer's position otherwise (what `OffsetCommits` commits within
`commit_interval` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import Token
from itertools import chain
from typing import Annotated, Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream._internal.context import Context  # the class behind faststream.Context()
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.message import KafkaMessage as FastStreamKafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber, LogicSubscriber
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic_core import from_json
from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from referrals_common import metrics
from referrals_common.contracts.envelope import (
    CloudEvent,
    EventData,
    InvalidEvent,
    UnknownEventType,
    parse_event,
    registry,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.faults import is_infrastructure_fault
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.settings import KafkaSettings
from referrals_common.telemetry import CASE_ID, with_case

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_common.consumer")

Handler = Callable[[CloudEvent[Any], UnitOfWork], Awaitable[None]]


def parse_record(
    record: Any, body: bytes | None = None, *, doc: dict[str, Any] | None = None
) -> CloudEvent[EventData]:
    """The event of a Kafka record in CloudEvents structured mode (the value is the envelope).

    A record in binary mode (a `ce_specversion` header, the value only the payload) is refused
    with that reason: the platform's topics carry structured mode only. Records published before
    the relay stopped adding `ce_type`/`ce_id` copies still parse: the value decides. `doc`: the
    value's JSON object as `declared_envelope` read it (validated, not read again)."""
    for key, _ in record.headers or ():
        if key.lower() == "ce_specversion":
            raise InvalidEvent(
                "a CloudEvent in binary content mode (ce_* headers); this topic carries "
                "structured mode: the record value is the whole envelope"
            )
    if doc is not None:
        return parse_event(doc)
    return parse_event(record.value if body is None else body)


def declared_envelope(record: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The `type` a record's envelope declares, read without validating anything else (a
    fraction of the full parse's CPU), and the envelope's JSON object as read (for
    `parse_record`, which then does not read the JSON again); (None, None) when the record
    cannot say: not a JSON object, or binary mode (`parse_record` refuses those, and its refusal
    is what a dead letter carries); a None type when the object has no string `type`."""
    for key, _ in record.headers or ():
        if key.lower() == "ce_specversion":
            return None, None
    try:
        doc = from_json(record.value)
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    event_type = doc.get("type")
    return (event_type if isinstance(event_type, str) else None), doc


def declared_type(record: Any) -> str | None:
    """The `type` a record's envelope declares (`declared_envelope`); None when the record
    cannot say: not a JSON object, no string `type`, or binary mode."""
    return declared_envelope(record)[0]


@contextlib.contextmanager
def _detaching(token: Token[otel_context.Context]) -> Iterator[None]:
    try:
        yield
    finally:
        otel_context.detach(token)


class _ContextOnTheLoop(Context):
    """FastStream's `Context`, resolved on the event loop. fast_depends runs a synchronous
    `use` in a worker thread (anyio's `to_thread`), once per delivered batch: a thread hop and a
    task group for a dictionary lookup, about a twentieth of a consumer's CPU in the profile of
    bench/pipeline.py."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]  # async on purpose
        return super().use(**kwargs)


# The batch as FastStream delivered it (`faststream.kafka.annotations.KafkaMessage`, minus the
# thread hop): its `raw_message` is the tuple of aiokafka records.
KafkaMessage = Annotated[FastStreamKafkaMessage, _ContextOnTheLoop("message")]


class WaitingBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, waiting in aiokafka for the next records.

    FastStream's own polls `getmany(timeout_ms=batch_timeout_ms)` and, when that comes back
    empty, sleeps as long again: a record arriving during the sleep waits for it, and an idle
    subscriber wakes up every few milliseconds (with the 5 ms we used: 100 times a second, the
    largest part of an idle consumer's CPU). aiokafka's `getmany` returns as soon as records
    arrive (a rebalance or `stop()` wakes it too, and aiokafka counts the wait as polling, not as
    idling past `max_poll_interval_ms`), so this one waits there, up to `IDLE_WAIT_MS` at a time,
    and never sleeps. The batch is whatever the consumer has fetched, as before.

    A batch its consume loop polled goes straight to the consumer's `settle` (set by
    `EventConsumer.subscribe`), not through FastStream's per-message pipeline (`consume`,
    `process_message`): an exit stack, context scopes, two middlewares, a parsed message with
    every record's headers decoded, fast_depends' call model and the handler's wrappers, about
    40 CPU-us a batch, and at a low rate a batch is one event. What that pipeline did for us is
    done here: the subscriber's lock (a graceful stop waits for the batch), NACK_ON_ERROR (a
    failed batch is logged and every partition rewound to its first record in it, nothing
    committed), and the commit of a settled batch (`OffsetCommits`' to do, or the consumer's
    position committed at once when there is none). A broker with middlewares of its own goes
    through FastStream's pipeline, which runs them."""

    __slots__ = ()

    IDLE_WAIT_MS = 1000

    # Set by `EventConsumer.subscribe`: who commits this subscriber's offsets.
    offset_commits: OffsetCommits | None
    # Set by `EventConsumer.subscribe`: what applies a polled batch (its aiokafka records).
    settle: Callable[[tuple[Any, ...]], Awaitable[None]] | None

    async def start(self) -> None:
        await super().start()
        if getattr(self, "offset_commits", None) is not None:
            # Before the consume loop's first batch (its task has not run yet).
            self.parser._setup(_CommitsElsewhere(self.consumer))

    async def stop(self) -> None:
        # FastStream's stop (LogicSubscriber's) minus nothing: the consume loop stops (the
        # batch in progress ends), then what it noted is committed, then the consumer stops.
        await super(LogicSubscriber, self).stop()
        commits = getattr(self, "offset_commits", None)
        if commits is not None and self.consumer is not None:
            await commits.close()
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def get_msg(self, consumer: Any) -> tuple[Any, ...]:
        messages = await consumer.getmany(
            timeout_ms=self.IDLE_WAIT_MS, max_records=self.max_records
        )
        return tuple(chain.from_iterable(messages.values()))

    async def consume_one(self, msg: tuple[Any, ...]) -> None:
        settle = getattr(self, "settle", None)
        if settle is None or self._broker_middlewares:
            await super().consume_one(msg)
            return
        if not self.running:  # stopping: the batch is not applied, nor committed
            return
        consumer = self.consumer
        with self.lock:
            try:
                await settle(msg)
            except Exception as exc:
                log.error("batch of %d not settled: %r", len(msg), exc, exc_info=exc)
                if consumer is not None:
                    _rewind(consumer, msg)
                return
            if getattr(self, "offset_commits", None) is None and consumer is not None:
                try:
                    await consumer.commit()
                except Exception as exc:  # a rebalance: the records come again, to the inbox
                    log.warning("batch of %d settled, not committed: %r", len(msg), exc)


def _rewind(consumer: Any, records: Sequence[Any]) -> None:
    """Seek each partition of `records` back to its first record among them (what FastStream's
    nack of a batch does): nothing after the earliest unsettled record is committed, and the
    batch's records are polled again."""
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in earliest or record.offset < earliest[tp]:
            earliest[tp] = record.offset
    for tp, offset in earliest.items():
        try:
            consumer.seek(tp, offset)
        except Exception as exc:  # revoked meanwhile: its next owner starts at the commit
            log.info("%s not rewound to %d: %r", tp, offset, exc)


def waiting(subscriber: Any) -> Any:
    """`subscriber` (a FastStream batch subscriber, as `broker.subscriber(..., batch=True)` made
    it) turned into a `WaitingBatchSubscriber`: the same object and state, only its polling
    differs (FastStream has no option to choose a subscriber's class)."""
    if type(subscriber) is not BatchSubscriber:
        raise TypeError(f"not FastStream's batch subscriber: {type(subscriber).__name__}")
    subscriber.__class__ = WaitingBatchSubscriber
    return subscriber


async def _undecoded(message: Any) -> None:
    """A batch's decoded body, for FastStream: none. `process_batch` parses each record's value
    itself (`parse_record`); FastStream's own decoder would make a message object and a JSON
    parse of every record, to be thrown away."""
    return None


class _CommitsElsewhere:
    """aiokafka's consumer as FastStream's acknowledgement of a batch sees it: the batch's
    offsets are `OffsetCommits`' to commit, so `commit` sends nothing; a rejected batch's
    `seek` back to its first records goes to the consumer as before."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    async def commit(self) -> None:
        return None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(partition, offset)


class OffsetCommits(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped (Any)
    """The offsets up to which a subscriber's batches are settled, committed to Kafka off the
    critical path.

    FastStream commits each batch before it polls again: an OffsetCommit round trip to the group
    coordinator between one event's effect and the next poll, and at a few events a second one
    request per event. Here a settled batch only notes its offsets (`settled`); `interval`
    seconds after the first note a task commits everything noted, one request for every batch of
    the interval. Offsets still follow the effects: a batch is noted once all its effects are
    committed in PostgreSQL (or dead-lettered). What is noted but not yet committed when the
    process dies (at most `interval` seconds of events) is delivered again, and the inbox makes
    it a no-op. A dead-lettered record has no inbox row, so its batch is committed at once
    (`flush`); so is everything noted when the group rebalances and when the subscriber stops.
    """

    COMMIT_TIMEOUT = 5.0

    def __init__(self, interval: float, *, chained: ConsumerRebalanceListener | None = None):
        self.interval = interval
        self.chained = chained
        self.subscriber: Any = None  # FastStream's subscriber; its `consumer` is aiokafka's
        self.commits = 0  # OffsetCommit requests sent
        self._noted: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def settled(self, records: Sequence[Any]) -> None:
        """Note that `records` (a batch of aiokafka records) are settled: their effects are
        committed. Their offsets are committed within `interval` seconds."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._noted[tp] = max(self._noted.get(tp, 0), record.offset + 1)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._later(), name="offset commit")

    async def _later(self) -> None:
        # Until nothing is left: batches settled while a commit was under way, and offsets
        # whose commit failed, go with the next round (an idle consumer's last batch too).
        while self._noted:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Commit every offset noted so far (of the partitions still assigned). A failed commit
        is logged and its offsets noted again for the next round (if the process ends first,
        those records come again, and the inbox absorbs them)."""
        async with self._lock:
            noted, self._noted = self._noted, {}
            consumer = getattr(self.subscriber, "consumer", None)
            if not noted or consumer is None:
                return
            assigned = consumer.assignment()
            offsets = {tp: offset for tp, offset in noted.items() if tp in assigned}
            if not offsets:
                return
            try:
                # Bounded: a rebalance (on_partitions_revoked) or a stop waits for this lock.
                await asyncio.wait_for(consumer.commit(offsets), self.COMMIT_TIMEOUT)
                self.commits += 1
            except Exception as exc:  # a rebalance, the coordinator away, too slow
                log.info("offsets %s not committed yet: %r", offsets, exc)
                for tp, offset in offsets.items():
                    self._noted.setdefault(tp, offset)  # unless a later batch noted more

    async def close(self) -> None:
        """Commit what is noted and stop the pending commit (the subscriber stops)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.flush()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Still in the old generation: the coordinator accepts the partitions' offsets now.
        await self.flush()
        await self._chain("on_partitions_revoked", revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._chain("on_partitions_assigned", assigned)

    async def _chain(self, method: str, partitions: set[TopicPartition]) -> None:
        if self.chained is not None:
            result = getattr(self.chained, method)(partitions)
            if inspect.isawaitable(result):
                await result


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
        service: str | None = None,
        lag_interval: float = 2.0,
        commit_interval: float | None = 0.5,
    ) -> None:
        self.name = name
        self.db = db
        self.dead_letters = dead_letters
        self.attempts = attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._handlers: dict[str, Handler] = {}
        self.stats = {"applied": 0, "duplicates": 0, "skipped": 0, "dead_lettered": 0}
        # The `service` label of this consumer's metrics (default: the process's service).
        self.service = service or metrics.service_name()
        self.lag_interval = lag_interval
        # How long a settled batch's offsets may wait to be committed with the next ones
        # (`OffsetCommits`); None: FastStream commits each batch before the next poll.
        self.commit_interval = commit_interval
        # Per partition of the batch in progress, its first offset: what is committed now.
        self.in_flight: dict[tuple[str, int], int] = {}
        # The consumer group reading each topic (`name`, or a lane's own `group_id`).
        self.groups: dict[str, str] = {}
        # The FastStream subscribers `subscribe` made (`WaitingBatchSubscriber`s).
        self.subscribers: list[WaitingBatchSubscriber] = []
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def _count(self, topic: str, outcome: str, n: int = 1) -> None:
        if n:
            child = self._outcomes.get((topic, outcome))
            if child is None:
                child = metrics.CONSUMER_EVENTS.labels(self.service, self.name, topic, outcome)
                self._outcomes[(topic, outcome)] = child
            child.inc(n)

    async def _call(self, handler: Handler, event: CloudEvent[Any], uow: UnitOfWork) -> None:
        """Run a handler, observing how long it took."""
        started = time.perf_counter()
        try:
            await handler(event, uow)
        finally:
            child = self._durations.get(event.type)
            if child is None:
                child = metrics.CONSUMER_HANDLER_DURATION.labels(
                    self.service, self.name, event.type
                )
                self._durations[event.type] = child
            child.observe(time.perf_counter() - started)

    def handles(self, *event_classes: type[EventData]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for cls in event_classes:
                if cls.event_type in self._handlers:
                    raise ValueError(f"{self.name} already handles {cls.event_type}")
                self._handlers[cls.event_type] = handler
            return handler

        return register

    def group(self, topic: str) -> str:
        """The consumer group this consumer reads `topic` in."""
        return self.groups.get(topic, self.name)

    def subscribe(self, broker: KafkaBroker | KafkaRouter, *topics: str, **options: Any) -> Any:
        """Attach this consumer to `topics` as a FastStream batch subscriber in group `name`
        (or the `group_id` in `options`: the inbox is the consumer's `name` whatever the group).

        Records arrive in batches; each partition's records are applied in order (partitions
        concurrently), and the batch's offsets are committed after every effect, with the other
        batches settled within `commit_interval` (`OffsetCommits`; None: FastStream commits
        each batch before the next poll). If a
        record cannot be settled (an infrastructure fault), the batch is not acknowledged: every
        partition is rewound to its first record of the batch, and the inbox turns what was
        already applied into no-ops when it comes again.

        A rebalance listener keeps the lag gauges of the partitions the group assigns to this
        process (a `listener` given in `options` is called too).
        """

        async def settle(records: tuple[Any, ...]) -> None:
            dead_lettered = self.stats["dead_lettered"]
            await self.process_batch(records)
            if commits is not None:
                commits.settled(records)
                if self.stats["dead_lettered"] != dead_lettered:
                    await commits.flush()  # no inbox row would make its redelivery a no-op

        # FastStream's handler: what a batch delivered through its pipeline reaches (a test
        # broker's, or a broker with middlewares); the consume loop calls `settle` itself.
        async def on_batch(message: KafkaMessage) -> None:
            await settle(message.raw_message)

        options.setdefault("auto_offset_reset", "earliest")
        options.setdefault("max_records", 200)
        options.setdefault("decoder", _undecoded)
        lag = ConsumerLag(self, chained=options.pop("listener", None))
        commits = (
            None
            if self.commit_interval is None
            else OffsetCommits(self.commit_interval, chained=lag)
        )
        group = options.pop("group_id", self.name)
        self.groups.update(dict.fromkeys(topics, group))
        for topic in topics:
            # At 0 from the start, so the first dead letter is an increase Prometheus sees.
            metrics.CONSUMER_DEAD_LETTERS.labels(self.service, self.name, topic)
        subscriber = broker.subscriber(
            *topics,
            group_id=group,
            batch=True,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            listener=commits or lag,
            **options,
        )
        lag.subscriber = waiting(subscriber)
        lag.subscriber.offset_commits = commits
        lag.subscriber.settle = settle
        if commits is not None:
            commits.subscriber = lag.subscriber
        self.subscribers.append(subscriber)
        return subscriber(on_batch)

    async def process_batch(self, records: tuple[Any, ...]) -> None:
        """Settle a batch of aiokafka records: skip the events of types this consumer does not
        handle, apply the others (each partition's in order, partitions concurrently)."""
        by_partition: dict[tuple[str, int], list[tuple[Any, dict[str, Any] | None]]] = {}
        first: dict[tuple[str, int], int] = {}
        skipped: dict[str, int] = {}
        known: dict[str, Any] | None = None
        for record in records:
            tp = (record.topic, record.partition)
            first.setdefault(tp, record.offset)
            # Most of a topic's events are for other consumers (records, partners and
            # translation read every event of the cases topic and handle a few types): told
            # apart by their declared type, they cost neither the full parse, nor a span, nor
            # a transaction. Nothing of them is applied, so their content does not matter
            # here; a consumer that handles the type validates it (and dead-letters it if
            # invalid). A type no contract defines goes on to the parse, which dead-letters it.
            event_type, doc = declared_envelope(record)
            if event_type is not None and event_type not in self._handlers:
                known = registry() if known is None else known
                if event_type in known:
                    skipped[record.topic] = skipped.get(record.topic, 0) + 1
                    continue
            # The JSON read once: the full parse validates this object.
            by_partition.setdefault(tp, []).append((record, doc))
        # Until the batch is acknowledged, its partitions are committed at their first records.
        self.in_flight.update(first)
        try:
            for topic, n in skipped.items():
                self.stats["skipped"] += n
                self._count(topic, "skipped", n)
            await self._process_partitions(by_partition)
        finally:
            for tp in first:
                self.in_flight.pop(tp, None)

    async def _process_partitions(
        self, by_partition: dict[tuple[str, int], list[tuple[Any, dict[str, Any] | None]]]
    ) -> None:
        async def in_order(partition_records: list[tuple[Any, dict[str, Any] | None]]) -> None:
            if len(partition_records) > 1 and await self._apply_together(partition_records):
                return
            for record, doc in partition_records:
                await self.process(record, record.value, doc=doc)

        if not by_partition:  # every event skipped
            return
        if len(by_partition) == 1:
            # One partition (at a low rate, most batches are one event): applied here, not in a
            # task of its own that gather would make and the loop schedule.
            [partition_records] = by_partition.values()
            await in_order(partition_records)
            return
        results = await asyncio.gather(
            *(in_order(rs) for rs in by_partition.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _apply_together(self, records: list[tuple[Any, dict[str, Any] | None]]) -> bool:
        """Apply a partition's records in one transaction (one commit instead of one per event).

        The fast path for the common case where every record is a valid event whose handler
        succeeds. If anything is off (an invalid event, a failing handler, the database), the
        transaction is rolled back and False is returned: the caller then applies the records
        one by one, with retries and dead letters, exactly as if this had not been tried.
        """
        events = []
        for record, doc in records:
            try:
                event = parse_record(record, doc=doc)
            except (InvalidEvent, UnknownEventType):
                return False
            events.append((record, event))
        applied = duplicates = skipped = 0
        last: trace.Span | None = None
        try:
            async with self.db.unit_of_work() as uow:
                # Every handled event's inbox row in one statement (one round trip instead of
                # one per event): the ids it inserted are the events applied now; the others
                # (and a second copy of one in this batch) were applied before.
                fresh = await uow.inbox.record_all(
                    self.name,
                    [(event.id, event.type) for _, event in events if event.type in self._handlers],
                )
                for record, event in events:
                    handler = self._handlers.get(event.type)
                    if handler is None:
                        skipped += 1
                        continue
                    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
                    # The envelope says whose case this is, whatever the headers carried.
                    token = otel_context.attach(
                        with_case(event.case_id, propagate.extract(headers))
                    )
                    with (
                        _detaching(token),
                        tracer.start_as_current_span(
                            f"process {record.topic}", kind=SpanKind.CONSUMER
                        ) as span,
                    ):
                        self._describe(span, record)
                        span.set_attribute("messaging.message.id", str(event.id))
                        span.set_attribute("cloudevents.event_type", event.type)
                        last = span
                        if event.id not in fresh:
                            duplicates += 1
                            continue
                        fresh.discard(event.id)
                        # Each handler sees the database as the previous ones left it, not
                        # objects the session still holds from before their writes (a unit of
                        # work whose handlers went through asyncpg alone has no session to
                        # flush, and none is made for it).
                        if uow.has_session:
                            await uow.session.flush()
                            uow.session.expire_all()
                        await self._call(handler, event, uow)
                        applied += 1
                # The one commit of the partition's events, under the last one's span (its
                # own trace otherwise, about no case).
                with trace.use_span(last or trace.INVALID_SPAN, end_on_exit=False):
                    await uow.commit()
        except Exception as exc:
            log.info("%s: batch of %d falls back to one by one: %r", self.name, len(records), exc)
            return False
        self.stats["applied"] += applied
        self.stats["duplicates"] += duplicates
        self.stats["skipped"] += skipped
        topic = records[0][0].topic
        self._count(topic, "ok", applied)
        self._count(topic, "duplicate", duplicates)
        self._count(topic, "skipped", skipped)
        return True

    async def process(self, record: Any, body: bytes, *, doc: dict[str, Any] | None = None) -> None:
        """Apply one Kafka record (an aiokafka ConsumerRecord); see the module doc. `doc`: its
        value's JSON object, already read (`declared_envelope`)."""
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        parent = propagate.extract(headers)
        with tracer.start_as_current_span(
            f"process {record.topic}", context=parent, kind=SpanKind.CONSUMER
        ) as span:
            self._describe(span, record)
            try:
                event = parse_record(record, body, doc=doc)
            except (InvalidEvent, UnknownEventType) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._dead_letter(record, body, exc)
                return
            case_id = str(event.case_id)
            span.set_attribute(CASE_ID, case_id)
            span.set_attribute("messaging.message.id", str(event.id))
            span.set_attribute("cloudevents.event_type", event.type)
            handler = self._handlers.get(event.type)
            if handler is None:
                self.stats["skipped"] += 1
                self._count(record.topic, "skipped")
                return
            # The envelope says whose case this is, whatever the headers carried.
            token = otel_context.attach(with_case(case_id))
            try:
                outcome = await self._apply(event, handler)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                if is_infrastructure_fault(exc):
                    # The event is fine, our database is not: never dead-letter a good event.
                    # Not acknowledged, the record is consumed again once the fault is over.
                    log.warning("%s: infrastructure fault, will retry: %r", self.name, exc)
                    self._count(record.topic, "failed")
                    await asyncio.sleep(self.backoff_max)
                    raise
                await self._dead_letter(record, body, exc)
                return
            finally:
                otel_context.detach(token)
            self._count(record.topic, outcome)

    def _describe(self, span: trace.Span, record: Any) -> None:
        """The messaging attributes of a record's process span (OpenTelemetry's semantic
        conventions for Kafka)."""
        if not span.is_recording():
            return
        span.set_attributes(
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.consumer.group.name": self.group(record.topic),
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            }
        )

    async def _apply(self, event: CloudEvent[Any], handler: Handler) -> str:
        """Apply an event with retries; its outcome: ok, retried (after failed attempts) or
        duplicate."""
        try:
            # The first attempt without tenacity's machinery (most events need no other).
            if not await self._apply_once(event, handler):
                return "duplicate"
        except PoisonEvent:
            raise
        except Exception as exc:
            if self.attempts <= 1:
                raise
            log.info("%s: %s failed, retrying: %r", self.name, event.id, exc)
            await asyncio.sleep(self._backoff(1))
        else:
            self.stats["applied"] += 1
            return "ok"
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts - 1),
            # Counted on from the first attempt, which failed above.
            wait=lambda state: self._backoff(state.attempt_number + 1),
            retry=retry_if_not_exception_type(PoisonEvent),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if not await self._apply_once(event, handler):
                    return "duplicate"
        self.stats["applied"] += 1
        return "retried"

    def _backoff(self, failed_attempts: int) -> float:
        """The wait after `failed_attempts` attempts: exponential from `backoff_initial`, with
        up to `backoff_initial` of jitter, at most `backoff_max`."""
        exponential = self.backoff_initial * 2.0 ** (failed_attempts - 1)
        return min(exponential + random.uniform(0, self.backoff_initial), self.backoff_max)

    async def _apply_once(self, event: CloudEvent[Any], handler: Handler) -> bool:
        """One attempt: the inbox row, the handler's effect, one commit; False (and nothing
        changed) if the inbox already had the event."""
        async with self.db.unit_of_work() as uow:
            if not await uow.inbox.record(self.name, event.id, event.type):
                self.stats["duplicates"] += 1
                return False
            await self._call(handler, event, uow)
            await uow.commit()
        return True

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
            self._count(record.topic, "failed")
            await asyncio.sleep(1.0)
            raise
        self.stats["dead_lettered"] += 1
        self._count(record.topic, "dead_lettered")
        metrics.CONSUMER_DEAD_LETTERS.labels(self.service, self.name, record.topic).inc()


class ConsumerLag(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped (Any)
    """Keeps `referrals_consumer_lag` for the partitions the group assigns to this process.

    Started by the first assignment, a task refreshes every partition's lag each
    `lag_interval` seconds until the subscriber's consumer is gone; revoked partitions lose
    their series, so replicas never report the same partition twice.
    """

    END_OFFSETS_TIMEOUT = 5.0

    def __init__(
        self, owner: EventConsumer, *, chained: ConsumerRebalanceListener | None = None
    ) -> None:
        self.owner = owner
        self.subscriber: Any = None  # FastStream's subscriber; its `consumer` is aiokafka's
        self.chained = chained
        self.reported: set[tuple[str, int]] = set()
        self._task: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._forget((tp.topic, tp.partition))
        await self._chain("on_partitions_revoked", revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"{self.owner.name} lag")
        await self._chain("on_partitions_assigned", assigned)

    async def _chain(self, method: str, partitions: set[TopicPartition]) -> None:
        if self.chained is not None:
            result = getattr(self.chained, method)(partitions)
            if inspect.isawaitable(result):
                await result

    async def _run(self) -> None:
        try:
            while (consumer := getattr(self.subscriber, "consumer", None)) is not None:
                try:
                    await self.refresh(consumer)
                except Exception as exc:  # a rebalance or a broker away: next time
                    log.debug("%s: lag not refreshed: %r", self.owner.name, exc)
                await asyncio.sleep(self.owner.lag_interval)
        finally:
            for key in list(self.reported):
                self._forget(key)

    async def refresh(self, consumer: Any) -> None:
        """Set the lag of every partition `consumer` (aiokafka's) is assigned."""
        assigned = list(consumer.assignment())
        for key in self.reported - {(tp.topic, tp.partition) for tp in assigned}:
            self._forget(key)
        if not assigned:
            return
        try:
            ends = await asyncio.wait_for(
                consumer.end_offsets(assigned), timeout=self.END_OFFSETS_TIMEOUT
            )
        except Exception:  # the broker is slow or away: the last fetched high watermarks
            ends = {}
        owner = self.owner
        lags = await asyncio.gather(*(self._lag(consumer, tp, ends.get(tp)) for tp in assigned))
        for tp, lag in zip(assigned, lags, strict=True):
            if lag is not None:
                metrics.CONSUMER_LAG.labels(
                    owner.service, owner.name, tp.topic, str(tp.partition)
                ).set(lag)
                self.reported.add((tp.topic, tp.partition))

    async def _lag(self, consumer: Any, tp: TopicPartition, end: int | None) -> int | None:
        """One partition's lag; None while it cannot be known (no fetch or position yet, or
        revoked meanwhile)."""
        try:
            if end is None:
                end = consumer.highwater(tp)
            committed = self.owner.in_flight.get((tp.topic, tp.partition))
            if committed is None:
                # No batch in progress: the position is what the last batch committed.
                position: int = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
                committed = position
        except Exception as exc:
            log.debug("%s: no lag for %s yet: %r", self.owner.name, tp, exc)
            return None
        return None if end is None else max(0, end - committed)

    def _forget(self, key: tuple[str, int]) -> None:
        self.reported.discard(key)
        metrics.CONSUMER_LAG.remove(self.owner.service, self.owner.name, key[0], str(key[1]))


def subscribe_lanes(
    consumer: EventConsumer,
    broker: KafkaBroker | KafkaRouter,
    topics: tuple[str, ...],
    lanes: Sequence[tuple[tuple[str, ...], Mapping[str, Any]]] = (),
    **subscribe_options: Any,
) -> list[Any]:
    """Subscribe `consumer` to `topics`, each lane's topics through a subscriber of their own.

    A lane is (its topics, its own subscribe options over `subscribe_options`), so that the
    quick events of one topic never wait in a batch behind the slow ones of another (translation
    reads documents for seconds; a case's destination takes milliseconds). A lane that must not
    wait for a slow one at all names a consumer group of its own (`group_id` in its options): in
    a shared group, a rebalance waits until every member polls again, so the quick lane would
    stand still until the slow lane's batch ends. Every lane keeps the consumer's one inbox
    (its `name`): lanes change when an event is applied, never whether, and a lane's new group
    reading its topic from the start finds every event it had applied already done. Topics in
    no lane share one subscriber."""
    laned = {topic for lane_topics, _ in lanes for topic in lane_topics}
    unknown = laned - set(topics)
    if unknown:
        raise ValueError(f"lanes name topics the consumer does not read: {sorted(unknown)}")
    subscribers = [
        consumer.subscribe(broker, *lane_topics, **{**subscribe_options, **options})
        for lane_topics, options in lanes
    ]
    rest = tuple(topic for topic in topics if topic not in laned)
    if rest:
        subscribers.append(consumer.subscribe(broker, *rest, **subscribe_options))
    return subscribers


def consumer_broker(kafka: KafkaSettings | str, service: str) -> KafkaBroker:
    """The FastStream broker of a service's consumer process, writing its access lines
    ("Received", "Processed": two for every batch) at DEBUG, below a service's INFO.

    At INFO they were two log lines written for every batch (~15 CPU-us each, ~2 % of an
    event's CPU at one or two events a batch) and most of a consumer's log; what a batch did
    is counted in the consumer's metrics, and a failure is still logged at WARNING or ERROR."""
    from referrals_common.messaging.kafka import event_broker

    return event_broker(kafka, client_id=service, log_level=logging.DEBUG)


async def serve_consumer(
    service: str,
    kafka: KafkaSettings | str,
    topics: tuple[str, ...],
    build: Callable[[DeadLetterPublisher], EventConsumer],
    *,
    lanes: Sequence[tuple[tuple[str, ...], Mapping[str, Any]]] = (),
    **subscribe_options: Any,
) -> None:
    """Run one service's consumer process until SIGTERM or SIGINT: declare its topics (and their
    dead-letter topics), start its dead-letter publisher and broker, stop them cleanly.

    `kafka` is the service's Kafka settings (or just the bootstrap servers, with the default
    partitions and replication of new topics). `subscribe_options` go to
    `EventConsumer.subscribe` (e.g. a smaller `max_records` for a consumer whose events take
    seconds each); `lanes` give some topics a subscriber of their own (`subscribe_lanes`)."""
    from referrals_common import shutdown
    from referrals_common.messaging.kafka import ensure_topics, kafka_settings

    kafka = kafka_settings(kafka)
    metrics.set_service(service)  # the `service` label of the consumer's metrics
    await ensure_topics(
        kafka,
        topics,
        partitions=kafka.topic_partitions,
        replication_factor=kafka.topic_replication_factor,
    )
    dead = DeadLetterPublisher(kafka, client_id=f"{service}-dlq")
    await dead.start()
    broker = consumer_broker(kafka, service)
    subscribe_lanes(build(dead), broker, topics, lanes, **subscribe_options)
    await broker.start()
    try:
        await shutdown.requested().wait()
    finally:
        await broker.stop()
        await dead.stop()
