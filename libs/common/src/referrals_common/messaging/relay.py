"""The outbox relay: publishes committed outbox rows to Kafka, then marks them sent.

* Woken by PostgreSQL LISTEN/NOTIFY when a transaction adds rows; a slow poll is only the safety
  net (a missed notification, a relay that started after the insert).
* Idempotent producer with acks=all: the claim marks its rows sent, and that is committed only
  after Kafka has them all (rolled back otherwise). A relay that dies between the two publishes
  the rows again after restart; consumers' inboxes make that a no-op (at-least-once
  publication, exactly-once effect).
* Two round trips per claim: the claim, then `COMMIT; BEGIN` as one query once Kafka has its
  rows, so the next claim finds its transaction already open (not BEGIN, claim, COMMIT). Between
  claims the relay's connection is idle in a transaction that has run nothing yet: no snapshot,
  no transaction id, no lock, so it holds back neither vacuum nor anyone's DDL; its timestamps are
  the statements' own (`statement_timestamp()`), not the transaction's start.
* After a claim that took everything there was for it, the relay waits for the next
  notification rather than claiming again (two round trips) to find nothing.
* Several replicas may run: rows are claimed with FOR UPDATE SKIP LOCKED, and each relay
  publishes only from the work slots whose advisory lock it holds, so one case's events are never
  in flight from two relays and keep their order.
* Sent rows are pruned after a retention period.
* Metrics (`referrals_outbox_*`): the backlog and the age of its oldest row, counted by one query
  every `metrics_interval` seconds (not per row), rows published by topic, failed rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from datetime import timedelta
from typing import TypedDict, Unpack

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from referrals_common import metrics
from referrals_common.contracts.envelope import CONTENT_TYPE
from referrals_common.messaging.kafka import Kafka, client_options
from referrals_common.messaging.schema import NOTIFY_CHANNEL, OUTBOX_SLOTS
from referrals_common.telemetry import with_case

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_common.relay")

ADVISORY_NAMESPACE = 0x0B0C  # first key of the two-key advisory locks the relays take

# Claims the rows and marks them sent in one statement; the transaction is committed only once
# Kafka has acknowledged every one of them, and rolled back (the rows unsent again) otherwise.
# The time is the statement's: the transaction began when the last one ended (`_NEXT`).
# RETURNING has no order: the caller sorts by `seq`.
CLAIM_SQL = """
with mine as (
    select slot from (
        select slot from (select distinct slot from outbox where sent_at is null) pending
        order by random()
    ) shuffled
    where pg_try_advisory_xact_lock($3::int, slot::int)
    limit $2
), claimed as (
    select o.id from outbox o join mine using (slot)
    where o.sent_at is null
    order by o.seq
    limit $1
    for update of o skip locked
)
update outbox o set sent_at = statement_timestamp()
from claimed
where o.id = claimed.id
returning o.id, o.seq, o.slot, o.aggregate_id, o.topic, o.event_type, o.payload::text as payload,
          o.headers::text as headers
"""

# Reads the `outbox_pending` partial index: as cheap as the backlog is small.
BACKLOG_SQL = """
select count(*) as backlog,
       coalesce(extract(epoch from statement_timestamp() - min(created_at)), 0)::float8
           as oldest_age
from outbox where sent_at is null
"""

PRUNE_SQL = """
delete from outbox where id in (
    select id from outbox where sent_at < statement_timestamp() - $1::interval limit 5000
)
"""


# The end of a relay's transaction and the start of the next, in one round trip (simple query).
_NEXT = "commit; begin"
_UNDONE = "rollback; begin"


def record_headers(trace_context: dict[str, str]) -> list[tuple[str, bytes]]:
    """The headers of a published event: the trace context, and `content-type` saying the
    record is in CloudEvents structured mode (the value is the whole JSON envelope).

    No `ce_*` header: the CloudEvents Kafka binding reads those as binary mode, where the value
    would be the payload alone, so an SDK would misread our records."""
    headers = [(name, value.encode()) for name, value in trace_context.items()]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    return headers


class OutboxRelay:
    """Publishes one service database's outbox to Kafka until stopped."""

    def __init__(
        self,
        dsn: str,
        kafka: Kafka,
        *,
        batch_size: int = 500,
        slots_per_claim: int = OUTBOX_SLOTS // 2,
        poll_interval: float = 1.0,
        retention: timedelta = timedelta(hours=1),
        prune_interval: float = 60.0,
        client_id: str = "referrals-relay",
        # No wait for more records: a claim appends all its rows before the producer's sender
        # runs (`send` does not yield while the topic's metadata is known and the buffer has
        # room), so they still go out together, and a lone event is not held back 1 ms.
        linger_ms: int = 0,
        service: str | None = None,
        metrics_interval: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._kafka = kafka
        self.batch_size = batch_size
        # A relay takes at most this many work slots per claim, leaving the rest to replicas.
        self.slots_per_claim = slots_per_claim
        self.poll_interval = poll_interval
        self.retention = retention
        self.prune_interval = prune_interval
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._listener: asyncpg.Connection | None = None
        self._producer: AIOKafkaProducer | None = None
        self.published = 0
        # Whether the last claim took everything there was for this relay (see publish_batch).
        self.exhausted = False
        # The `service` label of this relay's metrics (default: the process's service).
        self.service = service or metrics.service_name()
        self.metrics_interval = metrics_interval
        self._backlog = metrics.OUTBOX_BACKLOG.labels(self.service)
        self._oldest_age = metrics.OUTBOX_OLDEST_AGE.labels(self.service)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **client_options(self._kafka),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_batch_size=256 * 1024,
        )
        await self._producer.start()
        await self._connect()

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.execute("begin")  # the first claim's transaction (then `_NEXT`)
        self._listener = await asyncpg.connect(self._dsn)
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        if self._producer is not None:
            await self._producer.stop()

    async def run(self) -> None:
        """Publish until `stop()`; transient faults (Kafka, PostgreSQL) are retried with backoff."""
        last_prune = time.monotonic()
        last_metrics = -float("inf")
        backoff = 0.2
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - last_metrics >= self.metrics_interval:
                    await self.refresh_metrics()
                    last_metrics = time.monotonic()
                published = await self.publish_batch()
                if time.monotonic() - last_prune > self.prune_interval:
                    await self.prune()
                    last_prune = time.monotonic()
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                metrics.OUTBOX_RELAY_ERRORS.labels(self.service, "database").inc()
                log.warning("outbox relay: %r; retrying in %.1f s", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._reconnect()
                continue
            except Exception as exc:  # a Kafka error: the claimed rows stay unsent, retry later
                metrics.OUTBOX_RELAY_ERRORS.labels(self.service, "kafka").inc()
                log.warning("outbox relay: publish failed: %r; retrying in %.1f s", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if published == 0 or (self.exhausted and not self._wake.is_set()):
                # Nothing more to publish until a notification (or the safety-net poll): no
                # claim that would find nothing (3 round trips) after every one that did.
                await self._sleep(self.poll_interval, wakeable=True)

    async def _sleep(self, seconds: float, *, wakeable: bool = False) -> None:
        waiter = self._wake if wakeable else self._stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), seconds)

    async def _reconnect(self) -> None:
        for conn in (self._conn, self._listener):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        try:
            await self._connect()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox relay: reconnect failed: %r", exc)

    async def publish_batch(self) -> int:
        """Claim up to `batch_size` pending rows and mark them sent, publish them, commit once
        Kafka has them all; return the count."""
        assert self._conn is not None, "start() first"
        assert self._producer is not None, "start() first"
        # In the transaction the last claim's `_NEXT` (or `_connect`) began.
        rows = await self._conn.fetch(
            CLAIM_SQL, self.batch_size, self.slots_per_claim, ADVISORY_NAMESPACE
        )
        if not rows:
            self.exhausted = True
            await self._conn.execute(_NEXT)  # the slots' advisory locks it may have taken
            return 0
        try:
            rows.sort(key=lambda row: row["seq"])
            deliveries = []
            for row in rows:
                deliveries.append(await self._send(row))
            await asyncio.gather(*deliveries)
        except BaseException:
            # The rows unsent again (the connection's own fault is the caller's to handle).
            await self._conn.execute(_UNDONE)
            raise
        await self._conn.execute(_NEXT)
        # Less than a full claim (fewer rows than the batch, fewer slots than allowed) means that
        # nothing else was there for this relay when it claimed; whatever was committed since
        # has notified it (`run` cleared the wake-up before the claim).
        self.exhausted = (
            len(rows) < self.batch_size
            and len({row["slot"] for row in rows}) < self.slots_per_claim
        )
        self.published += len(rows)
        for topic, count in Counter(row["topic"] for row in rows).items():
            metrics.OUTBOX_PUBLISHED.labels(self.service, topic).inc(count)
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> asyncio.Future[object]:
        assert self._producer is not None
        # The row's case (its key) is the baggage of the publish and goes on in the record's
        # `baggage` header; a row stored without a trace context starts a trace of its own,
        # linked to the case's root.
        parent = with_case(row["aggregate_id"], propagate.extract(json.loads(row["headers"])))
        with tracer.start_as_current_span(
            f"send {row['topic']}", context=parent, kind=SpanKind.PRODUCER
        ) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.operation.type", "send")
            span.set_attribute("messaging.operation.name", "send")
            span.set_attribute("messaging.destination.name", row["topic"])
            span.set_attribute("messaging.message.id", str(row["id"]))
            span.set_attribute("messaging.kafka.message.key", row["aggregate_id"])
            span.set_attribute("cloudevents.event_type", row["event_type"])
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
        sent: asyncio.Future[object] = await self._producer.send(
            row["topic"],
            value=row["payload"].encode(),
            key=row["aggregate_id"].encode(),
            headers=record_headers(carrier),
        )
        return sent

    async def prune(self) -> int:
        """Delete rows sent longer ago than the retention period (in bounded batches)."""
        assert self._conn is not None
        total = 0
        while True:
            status = await self._conn.execute(PRUNE_SQL, self.retention)
            await self._conn.execute(_NEXT)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < 5000:
                return total

    async def refresh_metrics(self) -> tuple[int, float]:
        """Count the backlog and the age of its oldest row into the gauges; return both.

        Every relay of a database reports the same figures (the table's): aggregate with max.
        """
        assert self._conn is not None, "start() first"
        row = await self._conn.fetchrow(BACKLOG_SQL)
        assert row is not None  # an aggregate without GROUP BY gives one row
        backlog, oldest_age = int(row["backlog"]), float(row["oldest_age"])
        self._backlog.set(backlog)
        self._oldest_age.set(oldest_age)
        return backlog, oldest_age

    async def pending(self) -> int:
        """How many rows wait to be published (the outbox backlog)."""
        assert self._conn is not None
        return int(await self._conn.fetchval("select count(*) from outbox where sent_at is null"))


class RelayOptions(TypedDict, total=False):
    """`OutboxRelay`'s keyword options, as `serve` passes them on."""

    batch_size: int
    slots_per_claim: int
    poll_interval: float
    retention: timedelta
    prune_interval: float
    client_id: str
    linger_ms: int
    service: str | None
    metrics_interval: float


async def serve(dsn: str, kafka: Kafka, **options: Unpack[RelayOptions]) -> None:
    """Run one relay until SIGTERM or SIGINT (`referrals_common.shutdown`), then stop cleanly."""
    from referrals_common import shutdown

    relay = OutboxRelay(dsn, kafka, **options)
    await relay.start()
    stop = shutdown.requested()
    stopping = asyncio.create_task(stop.wait())
    stopping.add_done_callback(
        lambda waited: None if waited.cancelled() else asyncio.ensure_future(relay.stop())
    )
    try:
        await relay.run()
    finally:
        stopping.cancel()
        await relay.stop()


def main() -> None:
    """`python -m referrals_common.messaging.relay`: a relay for one service database outside a
    service's command line (the services run `referrals-<service> relay`). Kafka's connection is
    the platform's `REFERRALS_KAFKA__*` settings, `--bootstrap` replacing the servers."""
    import typer

    from referrals_common.messaging.kafka import kafka_from_environment

    def run(
        dsn: str = typer.Option(..., envvar="RELAY_POSTGRES_DSN", help="the service's database"),
        bootstrap: str | None = typer.Option(None, envvar="RELAY_KAFKA_BOOTSTRAP_SERVERS"),
        batch_size: int = typer.Option(500),
        poll_interval: float = typer.Option(1.0, help="safety-net poll, seconds"),
    ) -> None:
        from referrals_common.service_cli import run as run_role

        logging.basicConfig(level=logging.INFO)
        kafka = kafka_from_environment(bootstrap)
        # As a service's `relay` role runs: on uvloop, its heap settled once started.
        run_role(serve(dsn, kafka, batch_size=batch_size, poll_interval=poll_interval))

    typer.run(run)


if __name__ == "__main__":
    main()
