"""Benchmark: raw aiokafka vs the outbox → relay → Kafka → idempotent consumer path.

Not a test: it prints figures (and writes them to bench/results/messaging.json). It starts its own
real stack (Kafka, PostgreSQL, MinIO) on free ports, measures in the same run:

1. raw aiokafka: produce→consume throughput, and one-hop latency at a fixed rate;
2. relay throughput: a pre-filled outbox drained to Kafka (rows published and marked sent per s);
3. end-to-end throughput: outbox commit → relay → Kafka → idempotent consumer effect committed;
4. one-hop latency at a fixed rate: outbox commit → consumer effect committed (p50/p95/p99),
   with the writer, the relay and the consumer each in its own process, as deployed;

and prints the outbox path's figures as ratios to the raw floor.

    uv run python bench/messaging.py [--events 20000] [--rate 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from _harness import stats
from _harness.results import ROOT, parser, report
from _harness.stack import own_stack_async
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from rich.console import Console
from sqlalchemy import text

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.db import Database
from referrals_common.messaging.consumer import EventConsumer, parse_record
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings

MIGRATIONS = ROOT / "tests" / "integration" / "messaging_migrations"
console = Console()


def summary(latencies_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in ms to two decimals (a hop takes a few milliseconds), and the count."""
    return stats.summary(latencies_s, digits=2, with_max=False)


# ------------------------------------------------------------------------------- raw aiokafka


async def raw_clients(
    bootstrap: str, topic: str, group: str, offset_reset: str, **producer_options: Any
) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
    """An idempotent acks=all producer and a consumer of `topic` in a new group, started."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **producer_options
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{group}-{uuid.uuid4()}",
        auto_offset_reset=offset_reset,
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    return producer, consumer


async def raw_throughput(bootstrap: str, topic: str, n: int, payload: bytes) -> float:
    producer, consumer = await raw_clients(bootstrap, topic, "raw", "earliest", linger_ms=2)
    try:
        began = time.perf_counter()
        futures = [await producer.send(topic, payload, key=str(i % 500).encode()) for i in range(n)]
        await asyncio.gather(*futures)
        received = 0
        while received < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            received += sum(len(v) for v in batch.values())
            await consumer.commit()
        return n / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()


async def raw_latency(
    bootstrap: str, topic: str, rate: float, seconds: float, payload: bytes
) -> list[float]:
    producer, consumer = await raw_clients(bootstrap, topic, "lat", "latest")
    await asyncio.sleep(1.0)  # partition assignment
    sent: dict[bytes, float] = {}
    latencies: list[float] = []
    total = int(rate * seconds)

    async def consume() -> None:
        while len(latencies) < total:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.key in sent:
                        latencies.append(time.perf_counter() - sent[r.key])
            await consumer.commit()

    reader = asyncio.create_task(consume())
    try:
        start = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            key = f"{i}".encode()
            sent[key] = time.perf_counter()
            await producer.send(topic, payload, key=key)
        await asyncio.wait_for(reader, 60)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return latencies


# ------------------------------------------------------------------------------ outbox path


class TimedConsumer(EventConsumer):
    """Records when each event's effect was committed."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.done_at: dict[uuid.UUID, float] = {}

    async def process_batch(self, records) -> None:  # type: ignore[no-untyped-def]
        # Once a batch returns, every effect of it is committed, whether its partitions went
        # through one transaction (`_apply_together`) or one per record (`_apply`).
        await super().process_batch(records)
        now = time.time()
        for record in records:
            self.done_at.setdefault(parse_record(record).id, now)


async def apply_effect(event, uow) -> None:  # type: ignore[no-untyped-def]
    await uow.session.execute(
        text("insert into applied_effect (event_id, case_id, detail) values (:e, :c, 'bench')"),
        {"e": event.id, "c": event.case_id},
    )


async def fill_outbox(db: Database, topic: str, n: int, per_tx: int = 200) -> None:
    cases = [uuid.uuid4() for _ in range(500)]
    for start in range(0, n, per_tx):
        async with db.unit_of_work() as uow:
            await uow.outbox.add_all(
                [
                    new_event(CaseWithdrawn(case_id=cases[i % len(cases)]))
                    for i in range(start, min(n, start + per_tx))
                ],
                topic=topic,
            )
            await uow.commit()


async def relay_throughput(dsn: str, bootstrap: str, db: Database, topic: str, n: int) -> float:
    await fill_outbox(db, topic, n)
    relay = OutboxRelay(dsn, bootstrap, batch_size=1000, slots_per_claim=32)
    await relay.start()
    try:
        began = time.perf_counter()
        while relay.published < n:
            if await relay.publish_batch() == 0:
                break
        return relay.published / (time.perf_counter() - began)
    finally:
        await relay.stop()


async def with_consumer(db: Database, bootstrap: str, topic: str):  # type: ignore[no-untyped-def]
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    consumer = TimedConsumer(f"bench-{uuid.uuid4().hex[:6]}", db, dead)
    consumer.handles(CaseWithdrawn)(apply_effect)
    broker = KafkaBroker(bootstrap, logger=None)
    consumer.subscribe(broker, topic, max_records=500)
    await broker.start()
    return consumer, broker, dead


async def end_to_end_throughput(
    dsn: str, bootstrap: str, db: Database, topic: str, n: int
) -> float:
    consumer, broker, dead = await with_consumer(db, bootstrap, topic)
    relay = OutboxRelay(dsn, bootstrap, batch_size=1000)
    await relay.start()
    task = asyncio.create_task(relay.run())
    try:
        began = time.perf_counter()
        await fill_outbox(db, topic, n)
        while len(consumer.done_at) < n:
            await asyncio.sleep(0.05)
        return n / (time.perf_counter() - began)  # done_at is wall time; this is elapsed time
    finally:
        await relay.stop()
        await task
        await broker.stop()
        await dead.stop()


async def write_at_rate(dsn: str, topic: str, rate: float, seconds: float, out: Path) -> None:
    """The producing side of the latency hop, in its own process: one event per transaction at
    a fixed rate; each event's id and wall-clock commit time go to `out` (JSON lines)."""
    db = Database(PostgresSettings(dsn=dsn))  # type: ignore[arg-type]
    lines = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        event = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
        async with db.unit_of_work() as uow:
            await uow.outbox.add(event, topic=topic)
            await uow.commit()
        lines.append(json.dumps({"id": str(event.id), "committed": time.time()}))
    out.write_text("\n".join(lines) + "\n")
    await db.dispose()


async def outbox_latency(
    dsn: str, bootstrap: str, db: Database, topic: str, rate: float, seconds: float
) -> tuple[list[float], dict[str, int]]:
    """One hop at a fixed rate, with writer, relay and consumer each in its own process, as they
    are deployed; commit and effect times are wall-clock times on this one machine."""
    consumer, broker, dead = await with_consumer(db, bootstrap, topic)
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "referrals_common.messaging.relay",
            "--dsn",
            dsn,
            "--bootstrap",
            bootstrap,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    commits = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    try:
        await asyncio.sleep(3.0)  # partition assignment, relay start-up
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--write-to",
            str(commits),
            "--dsn",
            dsn,
            "--topic",
            topic,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
        )
        await writer.wait()
        committed = {
            uuid.UUID(d["id"]): d["committed"]
            for d in map(json.loads, commits.read_text().splitlines())
        }
        deadline = time.perf_counter() + 60
        while len(consumer.done_at) < len(committed) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        latencies = [consumer.done_at[k] - t for k, t in committed.items() if k in consumer.done_at]
        return latencies, dict(consumer.stats)
    finally:
        commits.unlink(missing_ok=True)
        relay.terminate()
        relay.wait(timeout=20)
        await broker.stop()
        await dead.stop()


async def measure(args: argparse.Namespace) -> dict[str, object]:
    async with own_stack_async("bench-messaging-", ()) as (_, info):
        bootstrap = info.kafka_bootstrap
        admin = await asyncpg.connect(info.postgres_dsn)
        await admin.execute("create database bench")
        await admin.close()
        dsn = info.postgres_dsn.rsplit("/", 1)[0] + "/bench"
        await upgrade_async(dsn, MIGRATIONS)
        db = Database(PostgresSettings(dsn=dsn))  # type: ignore[arg-type]
        topics = ["bench.raw.tp", "bench.raw.lat", "bench.relay", "bench.e2e", "bench.lat"]
        await ensure_topics(bootstrap, topics, partitions=6)
        payload = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()

        console.print(f"[bold]raw aiokafka[/]: {args.events} events, then {args.rate}/s")
        raw_tp = await raw_throughput(bootstrap, "bench.raw.tp", args.events, payload)
        raw_lat = summary(
            await raw_latency(bootstrap, "bench.raw.lat", args.rate, args.seconds, payload)
        )
        console.print(f"[bold]outbox relay[/]: drain {args.events} pre-filled rows")
        relay_tp = await relay_throughput(dsn, bootstrap, db, "bench.relay", args.events)
        e2e_n = max(1000, args.events // 4)
        console.print(f"[bold]outbox → consumer[/]: {e2e_n} events end to end, then {args.rate}/s")
        e2e_tp = await end_to_end_throughput(dsn, bootstrap, db, "bench.e2e", e2e_n)
        lat, consumer_stats = await outbox_latency(
            dsn, bootstrap, db, "bench.lat", args.rate, args.seconds
        )
        out_lat = summary(lat)
        await db.dispose()

    results = {
        "raw_aiokafka": {"throughput_events_per_s": round(raw_tp), "latency": raw_lat},
        "outbox_relay": {"throughput_events_per_s": round(relay_tp)},
        "outbox_to_consumer": {
            "throughput_events_per_s": round(e2e_tp),
            "latency_at_rate": out_lat,
            "consumer_stats": consumer_stats,
        },
        "ratios": {
            "relay_throughput_vs_raw": round(relay_tp / raw_tp, 3),
            "end_to_end_throughput_vs_raw": round(e2e_tp / raw_tp, 3),
            "p50_latency_vs_raw": round(out_lat["p50_ms"] / raw_lat["p50_ms"], 2),
            "p99_latency_vs_raw": round(out_lat["p99_ms"] / raw_lat["p99_ms"], 2),
        },
        "targets": {
            "relay_events_per_s>=3000": relay_tp >= 3000,
            "hop_p50_ms<=25": out_lat["p50_ms"] <= 25,
            "hop_p99_ms<=100": out_lat["p99_ms"] <= 100,
        },
        "parameters": {"events": args.events, "rate_per_s": args.rate, "seconds": args.seconds},
    }
    return results


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--events", type=int, default=20000)
    cli.add_argument("--rate", type=float, default=200.0)
    cli.add_argument("--seconds", type=float, default=15.0)
    cli.add_argument("--write-to", type=Path, help=argparse.SUPPRESS)
    cli.add_argument("--dsn", help=argparse.SUPPRESS)
    cli.add_argument("--topic", help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.write_to:  # the writer process of the latency hop
        asyncio.run(write_at_rate(args.dsn, args.topic, args.rate, args.seconds, args.write_to))
        return
    report("messaging.json", asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
    sys.exit(0)
