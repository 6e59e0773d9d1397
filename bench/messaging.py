"""Benchmark: raw aiokafka vs the outbox → relay → Kafka → idempotent consumer path.

Not a test: it prints figures (and writes them to bench/results/messaging.json). It starts its own
real stack (Kafka, PostgreSQL, MinIO) on free ports, measures in the same run:

1. raw aiokafka: produce→consume throughput, and one-hop latency at a fixed rate;
2. relay throughput: a pre-filled outbox drained to Kafka (rows published and marked sent per s);
3. end-to-end throughput: outbox commit → relay → Kafka → idempotent consumer effect committed;
4. one-hop latency at a fixed rate: outbox commit → consumer effect committed (p50/p95/p99),
   with the writer, the relay and the consumer each in its own process, as deployed; and the
   relay's and the consumer's CPU (user + system) per event and per idle second;
5. the consumer's own CPU per event without Kafka (`consumer_code_cpu`), alone and in batches;

and prints the outbox path's figures as ratios to the raw floor.

    uv run python bench/messaging.py [--events 20000] [--rate 200] [--seconds 15] [--hop-only]

`--hop-only` measures only the two latencies (1 and 4's), for comparing changes to the hop.
`--hop-rounds N` runs the two latency hops N times each, taking turns (raw, outbox, raw, ...),
each round on topics of its own; each hop's figures are over all its rounds' events, so a
moment of other load on the machine falls on both sides alike.
`--relay-against SRC` measures only the relay's CPU per event, A/B: a relay process of this
checkout and one whose `referrals_common` is under SRC (another checkout's libs/common/src) take
turns (`--rounds` each) publishing one event per transaction at `--rate` for `--seconds`.
`--consumer-against SRC` does the same for the consumer: a consumer process of this checkout and
one of SRC's take turns behind this checkout's relay, each reading a new topic; per run its CPU
per event, the hop's p99 and raw aiokafka's p99 at the same rate just before; and, in a process
of each side, the consumer's own code CPU without Kafka (5.).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from math import isnan, nan
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from _harness import stats
from _harness.results import ROOT, loadavg, parser, report
from _harness.stack import own_stack_async
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic_core import from_json
from rich.console import Console
from sqlalchemy import text

from referrals_common import heap
from referrals_common.contracts import CaseStatusChanged, CaseWithdrawn, new_event
from referrals_common.db import Database
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings

MIGRATIONS = ROOT / "tests" / "integration" / "messaging_migrations"
IDLE_S = 4.0  # seconds of no events over which the relay's and the consumer's idle CPU is taken
console = Console()


def figure(value: float, digits: int | None = None) -> float | None:
    """A throughput or ratio as reported: rounded, or None if not measured (`--hop-only`)."""
    return None if isnan(value) else round(value, digits)


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
    """Records when each event's effect was committed, and for the hop's parts when its record
    was made (the relay's `send`: the record's timestamp, in milliseconds) and reached this
    consumer (its batch delivered by the subscriber)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.done_at: dict[uuid.UUID, float] = {}
        self.sent_at: dict[uuid.UUID, float] = {}
        self.received_at: dict[uuid.UUID, float] = {}

    async def process_batch(self, records) -> None:  # type: ignore[no-untyped-def]
        received = time.time()
        # Once a batch returns, every effect of it is committed, whether its partitions went
        # through one transaction (`_apply_together`) or one per record (`_apply`).
        await super().process_batch(records)
        now = time.time()
        for record in records:
            # The id alone (not the consumer's full parse again: its CPU is measured).
            event_id = uuid.UUID(from_json(record.value)["id"])
            if event_id not in self.done_at:
                self.done_at[event_id] = now
                self.sent_at[event_id] = record.timestamp / 1000
                self.received_at[event_id] = received


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


class GcPauses:
    """This process's garbage collections while it is entered: per generation, how many, their
    CPU-blocking time in all and the longest (no event moves while one runs)."""

    def __init__(self) -> None:
        self.began = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.began = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self.began)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{g}": {
                "collections": len(p),
                "total_ms": round(sum(p) * 1000, 1),
                "longest_ms": round(max(p, default=0.0) * 1000, 1),
            }
            for g, p in self.pauses.items()
        }


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


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    times = process.cpu_times()
    return float(times.user + times.system)


async def relay_listening(dsn: str, timeout: float = 60.0) -> None:
    """Wait until the relay process listens for the outbox's notifications (it has started)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.perf_counter() + timeout
        while not await conn.fetchval(
            "select exists (select from pg_stat_activity where query ilike 'listen %')"
        ):
            if time.perf_counter() > deadline:
                raise TimeoutError("the relay did not start")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def start_relay(
    dsn: str, bootstrap: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """An outbox relay in a process of its own (`python -m referrals_common.messaging.relay`),
    its output discarded; `env`: its environment (default: this process's)."""
    module = "referrals_common.messaging.relay"
    return subprocess.Popen(
        [sys.executable, "-m", module, "--dsn", dsn, "--bootstrap", bootstrap],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def outbox_latency(
    dsn: str, bootstrap: str, db: Database, topic: str, rate: float, seconds: float
) -> tuple[list[float], dict[str, int], dict[str, float], dict[str, dict[str, float]]]:
    """One hop at a fixed rate, with the writer and the relay each in a process of their own and
    the consumer in this one (which does nothing else meanwhile); commit and effect times are
    wall-clock times on this one machine.

    Also the CPU (user + system) of the relay's process and of this one, the consumer's: per
    second while idle (no event for `IDLE_S` seconds before the writer starts) and per event
    while the events flow (from the writer's start until the last effect), idle share included."""
    consumer, broker, dead = await with_consumer(db, bootstrap, topic)
    relay = start_relay(dsn, bootstrap)
    commits = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    relay_process, consumer_process = psutil.Process(relay.pid), psutil.Process()
    try:
        await asyncio.sleep(3.0)  # partition assignment
        await relay_listening(dsn)
        # The consumer's process, started, settles its heap as a service's does (the relay's
        # does it itself): its full collections would otherwise pause the hop for 76-146 ms.
        heap.settle()
        idle_began = time.perf_counter()
        relay_cpu, consumer_cpu = cpu_seconds(relay_process), cpu_seconds(consumer_process)
        await asyncio.sleep(IDLE_S)
        idle_s = time.perf_counter() - idle_began
        cpu = {
            "relay_idle_cpu_ms_per_s": (cpu_seconds(relay_process) - relay_cpu) / idle_s * 1000,
            "consumer_idle_cpu_ms_per_s": (cpu_seconds(consumer_process) - consumer_cpu)
            / idle_s
            * 1000,
        }
        relay_cpu, consumer_cpu = cpu_seconds(relay_process), cpu_seconds(consumer_process)
        with GcPauses() as collections:
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
        n = max(1, len(committed))
        cpu["relay_cpu_ms_per_event"] = (cpu_seconds(relay_process) - relay_cpu) / n * 1000
        cpu["consumer_cpu_ms_per_event"] = (cpu_seconds(consumer_process) - consumer_cpu) / n * 1000
        cpu = {key: round(value, 3) for key, value in cpu.items()}
        cpu["consumer_gc_while_events_flow"] = collections.summary()  # type: ignore[assignment]
        done = [(k, t) for k, t in committed.items() if k in consumer.done_at]
        latencies = [consumer.done_at[k] - t for k, t in done]
        parts = {
            "commit_to_send": summary([consumer.sent_at[k] - t for k, t in done]),
            "send_to_received": summary(
                [consumer.received_at[k] - consumer.sent_at[k] for k, _ in done]
            ),
            "received_to_effect": summary(
                [consumer.done_at[k] - consumer.received_at[k] for k, _ in done]
            ),
        }
        return latencies, dict(consumer.stats), cpu, parts
    finally:
        commits.unlink(missing_ok=True)
        relay.terminate()
        relay.wait(timeout=20)
        await broker.stop()
        await dead.stop()


async def relay_cpu_per_event(
    dsn: str, bootstrap: str, topic: str, rate: float, seconds: float, src: Path | None
) -> float:
    """CPU milliseconds per event of a relay process (this checkout's, or the one under `src`)
    publishing one event per transaction at `rate`, from the first write until the outbox is
    empty."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    relay = start_relay(dsn, bootstrap, env)
    commits = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    try:
        await relay_listening(dsn)
        await asyncio.sleep(1.0)
        process = psutil.Process(relay.pid)
        began = cpu_seconds(process)
        await write_at_rate(dsn, topic, rate, seconds, commits)
        conn = await asyncpg.connect(dsn)
        try:
            while await conn.fetchval("select count(*) from outbox where sent_at is null"):
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        return (cpu_seconds(process) - began) / int(rate * seconds) * 1000
    finally:
        commits.unlink(missing_ok=True)
        relay.terminate()
        relay.wait(timeout=20)


async def bench_database(server_dsn: str) -> str:
    """A new database `bench` on the stack's PostgreSQL with the messaging tables; its DSN."""
    admin = await asyncpg.connect(server_dsn)
    await admin.execute("create database bench")
    await admin.close()
    dsn = server_dsn.rsplit("/", 1)[0] + "/bench"
    await upgrade_async(dsn, MIGRATIONS)
    return dsn


async def relay_ab(args: argparse.Namespace) -> dict[str, object]:
    """The relay's CPU per event, this checkout's against `args.relay_against`'s, alternating."""
    async with own_stack_async("bench-messaging-", ()) as (_, info):
        dsn = await bench_database(info.postgres_dsn)
        await ensure_topics(info.kafka_bootstrap, ["bench.relay-ab"], partitions=6)
        runs: dict[str, list[float]] = {"against": [], "this": []}
        for _ in range(args.rounds):
            for side, src in (("against", args.relay_against), ("this", None)):
                cpu = await relay_cpu_per_event(
                    dsn, info.kafka_bootstrap, "bench.relay-ab", args.rate, args.seconds, src
                )
                runs[side].append(round(cpu, 3))
                console.print(f"relay {side}: {cpu:.3f} CPU-ms per event")
    return {
        "relay_cpu_ms_per_event": runs,
        "medians": {side: statistics.median(values) for side, values in runs.items()},
        "parameters": {"rate_per_s": args.rate, "seconds": args.seconds, "rounds": args.rounds},
        "loadavg": loadavg(),
    }


async def consume_to(dsn: str, bootstrap: str, topic: str, events: int, out: Path) -> None:
    """The consuming side of `--consumer-against`, in a process of its own (whichever
    `referrals_common` its PYTHONPATH gives): applies `topic`'s events until it has `events`,
    then writes each one's effect time (wall clock) to `out` (JSON lines). `out` + ".ready" is
    written once the group has assigned it the topic's partitions."""
    db = Database(PostgresSettings(dsn=dsn))  # type: ignore[arg-type]
    consumer, broker, dead = await with_consumer(db, bootstrap, topic)
    try:
        subscriber = consumer.subscribers[0]
        while not getattr(subscriber, "consumer", None) or not subscriber.consumer.assignment():
            await asyncio.sleep(0.1)
        Path(f"{out}.ready").write_text("")
        while len(consumer.done_at) < events:
            await asyncio.sleep(0.05)
        out.write_text(
            "\n".join(json.dumps({"id": str(k), "done": t}) for k, t in consumer.done_at.items())
            + "\n"
        )
    finally:
        await broker.stop()
        await dead.stop()
        await db.dispose()


async def consumer_run(
    dsn: str, bootstrap: str, topic: str, rate: float, seconds: float, src: Path | None
) -> tuple[float, float]:
    """(CPU milliseconds per event, hop p99 in ms) of a consumer process (this checkout's, or
    the one under `src`) reading `topic` behind the running relay, one event per transaction
    written at `rate` for `seconds`; its CPU from the writer's start to its last effect."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    n = int(rate * seconds)
    done = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    done.unlink()
    ready = Path(f"{done}.ready")
    commits = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    command = [sys.executable, __file__, "--consume-to", str(done), "--dsn", dsn]
    command += ["--bootstrap", bootstrap, "--topic", topic, "--events", str(n)]
    process = subprocess.Popen(command, env=env)
    try:
        deadline = time.perf_counter() + 60
        while not ready.exists():
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the consumer did not start")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        measured = psutil.Process(process.pid)
        began = cpu_seconds(measured)
        await write_at_rate(dsn, topic, rate, seconds, commits)
        deadline = time.perf_counter() + 60
        while not done.exists() and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        cpu = (cpu_seconds(measured) - began) / n * 1000
        process.wait(timeout=30)
        committed = {
            d["id"]: d["committed"] for d in map(json.loads, commits.read_text().splitlines())
        }
        effects = {d["id"]: d["done"] for d in map(json.loads, done.read_text().splitlines())}
        latencies = [effects[k] - t for k, t in committed.items() if k in effects]
        return cpu, summary(latencies)["p99_ms"]
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
        for path in (done, ready, commits):
            path.unlink(missing_ok=True)


async def side_code_cpu(dsn: str, src: Path | None) -> dict[str, float]:
    """`consumer_code_cpu` in a process of its own, whose `referrals_common` is under `src`
    (None: this checkout's)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--code-cpu", "--dsn", dsn, env=env, stdout=subprocess.PIPE
    )
    out, _ = await process.communicate()
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def code_cpu_alone(dsn: str) -> None:
    """The `--code-cpu` process: `consumer_code_cpu`'s batches of the consumer that applies
    them, printed as one JSON line."""
    db = Database(PostgresSettings(dsn=dsn))  # type: ignore[arg-type]
    try:
        figures = await consumer_code_cpu(db)
    finally:
        await db.dispose()
    print(json.dumps({k: v for k, v in figures.items() if not k.startswith("skipped")}))


async def consumer_ab(args: argparse.Namespace) -> dict[str, object]:
    """The consumer's CPU per event and the hop's p99, this checkout's consumer against
    `args.consumer_against`'s, alternating, each run on a new topic behind one relay of this
    checkout; raw aiokafka's p99 at the same rate measured before each pair."""
    async with own_stack_async("bench-messaging-", ()) as (_, info):
        bootstrap = info.kafka_bootstrap
        dsn = await bench_database(info.postgres_dsn)
        payload = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()
        await ensure_topics(bootstrap, ["bench.raw.lat"], partitions=6)
        relay = start_relay(dsn, bootstrap)
        runs: dict[str, dict[str, list[float]]] = {
            side: {"cpu_ms_per_event": [], "hop_p99_ms": [], "hop_p99_vs_raw": []}
            for side in ("against", "this")
        }
        try:
            await relay_listening(dsn)
            for i in range(args.rounds):
                raw = summary(
                    await raw_latency(bootstrap, "bench.raw.lat", args.rate, args.seconds, payload)
                )["p99_ms"]
                sides = (("against", args.consumer_against), ("this", None))
                # Each side first in every other round: a run may leave the database, the
                # relay or the machine different for the next one.
                for side, src in sides if i % 2 == 0 else sides[::-1]:
                    topic = f"bench.consumer-ab.{i}.{side}"
                    await ensure_topics(bootstrap, [topic], partitions=6)
                    cpu, p99 = await consumer_run(
                        dsn, bootstrap, topic, args.rate, args.seconds, src
                    )
                    figures = runs[side]
                    code = await side_code_cpu(dsn, src)
                    for size, us in code.items():
                        figures.setdefault(f"code_us_per_event_{size}", []).append(us)
                    figures["cpu_ms_per_event"].append(round(cpu, 3))
                    figures["hop_p99_ms"].append(p99)
                    figures["hop_p99_vs_raw"].append(round(p99 / raw, 2))
                    console.print(
                        f"consumer {side}: {cpu:.3f} CPU-ms per event, hop p99 {p99:.1f} ms"
                        f" (raw {raw:.1f} ms); code without Kafka {code} us per event"
                    )
        finally:
            relay.terminate()
            relay.wait(timeout=20)
    return {
        "consumer": runs,
        "medians": {
            side: {name: statistics.median(values) for name, values in figures.items()}
            for side, figures in runs.items()
        },
        "parameters": {"rate_per_s": args.rate, "seconds": args.seconds, "rounds": args.rounds},
        "loadavg": loadavg(),
    }


async def consumer_code_cpu(db: Database, events: int = 1000) -> dict[str, float]:
    """CPU microseconds per event of the consumer's own code and its database work, without
    Kafka or FastStream: records made here are given to `process_batch` one at a time, in
    batches of 6 (one per partition) and of 20 (over 3 partitions). Less sensitive to the
    machine's load than the hop's figures, which include the clients' network work.

    `skipped_batch_*`: the same records given to a consumer that does not handle their type (as
    records, partners and translation skip most of the cases topic)."""
    consumer = EventConsumer(f"bench-cpu-{uuid.uuid4().hex[:6]}", db, None)  # type: ignore[arg-type]  # no dead letters here
    consumer.handles(CaseWithdrawn)(apply_effect)
    other = EventConsumer(f"bench-skip-{uuid.uuid4().hex[:6]}", db, None)  # type: ignore[arg-type]  # no dead letters here
    other.handles(CaseStatusChanged)(apply_effect)
    offsets = iter(range(10**9))
    headers = ((b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)

    def record(partition: int) -> ConsumerRecord[bytes, bytes]:
        value = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()
        return ConsumerRecord(
            "bench.cpu", partition, next(offsets), 0, 0, b"k", value, None, 0, 0, headers
        )

    for _ in range(100):  # connections, prepared statements
        await consumer.process_batch((record(0),))
    result = {}
    # Batch size: partitions it spans (6: one event in each, as at a low rate).
    spans = {1: 1, 6: 6, 20: 3}
    for label, reader in (("batch", consumer), ("skipped_batch", other)):
        for size, partitions in spans.items():
            batches = [
                tuple(record(i % partitions) for i in range(size)) for _ in range(events // size)
            ]
            began = time.process_time()
            for batch in batches:
                await reader.process_batch(batch)
            spent = time.process_time() - began
            result[f"{label}_{size}"] = round(spent / (len(batches) * size) * 1e6)
    return result


async def measure(args: argparse.Namespace) -> dict[str, object]:
    async with own_stack_async("bench-messaging-", ()) as (_, info):
        bootstrap = info.kafka_bootstrap
        dsn = await bench_database(info.postgres_dsn)
        db = Database(PostgresSettings(dsn=dsn))  # type: ignore[arg-type]
        rounds = max(1, getattr(args, "hop_rounds", 1))
        topics = ["bench.raw.tp", "bench.relay", "bench.e2e"]
        topics += [f"bench.raw.lat.{i}" for i in range(rounds)]
        topics += [f"bench.lat.{i}" for i in range(rounds)]
        await ensure_topics(bootstrap, topics, partitions=6)
        payload = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()

        console.print(f"[bold]raw aiokafka[/]: {args.events} events, then {args.rate}/s")
        hop_only = getattr(args, "hop_only", False)
        raw_tp = (
            nan
            if hop_only
            else await raw_throughput(bootstrap, "bench.raw.tp", args.events, payload)
        )
        console.print(f"[bold]outbox relay[/]: drain {args.events} pre-filled rows")
        relay_tp = (
            nan
            if hop_only
            else await relay_throughput(dsn, bootstrap, db, "bench.relay", args.events)
        )
        e2e_n = max(1000, args.events // 4)
        console.print(f"[bold]outbox → consumer[/]: {e2e_n} events end to end, then {args.rate}/s")
        e2e_tp = (
            nan if hop_only else await end_to_end_throughput(dsn, bootstrap, db, "bench.e2e", e2e_n)
        )
        code_cpu = await consumer_code_cpu(db)
        load_before = loadavg()
        # The two hops take turns (`--hop-rounds`), each on topics of its own, so that both see
        # the same moments of the machine; each one's latencies are pooled over its rounds.
        raw_all: list[float] = []
        lat: list[float] = []
        per_round: list[dict[str, object]] = []
        for i in range(rounds):
            console.print(f"[bold]hop round {i + 1}/{rounds}[/]: raw aiokafka, then the outbox")
            raw_topic = f"bench.raw.lat.{i}"
            raw = await raw_latency(bootstrap, raw_topic, args.rate, args.seconds, payload)
            ours, consumer_stats, cpu, parts = await outbox_latency(
                dsn, bootstrap, db, f"bench.lat.{i}", args.rate, args.seconds
            )
            raw_all += raw
            lat += ours
            per_round.append(
                {"raw_p99_ms": summary(raw)["p99_ms"], "outbox_p99_ms": summary(ours)["p99_ms"],
                 "cpu": cpu, "latency_parts": parts}
            )  # fmt: skip
        raw_lat = summary(raw_all)
        out_lat = summary(lat)
        await db.dispose()

    results = {
        "raw_aiokafka": {"throughput_events_per_s": figure(raw_tp), "latency": raw_lat},
        "outbox_relay": {"throughput_events_per_s": figure(relay_tp)},
        "outbox_to_consumer": {
            "throughput_events_per_s": figure(e2e_tp),
            "latency_at_rate": out_lat,
            # The last round's hop parts (the relay's send time is the record's timestamp, to
            # the ms), consumer and CPU; every round's in `hop_rounds`.
            "latency_parts": parts,
            "consumer_stats": consumer_stats,
            "cpu": cpu,
            "consumer_code_cpu_us_per_event": code_cpu,
            "hop_rounds": per_round,
        },
        "ratios": {
            "relay_throughput_vs_raw": figure(relay_tp / raw_tp, 3),
            "end_to_end_throughput_vs_raw": figure(e2e_tp / raw_tp, 3),
            "p50_latency_vs_raw": round(out_lat["p50_ms"] / raw_lat["p50_ms"], 2),
            "p99_latency_vs_raw": round(out_lat["p99_ms"] / raw_lat["p99_ms"], 2),
        },
        "targets": {
            "relay_events_per_s>=3000": None if isnan(relay_tp) else relay_tp >= 3000,
            "hop_p50_ms<=25": out_lat["p50_ms"] <= 25,
            "hop_p99_ms<=100": out_lat["p99_ms"] <= 100,
        },
        "parameters": {
            "events": args.events,
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "hop_rounds": rounds,
        },
        "loadavg": {"before_latency": load_before, "after": loadavg()},
    }
    return results


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--events", type=int, default=20000)
    cli.add_argument("--rate", type=float, default=200.0)
    cli.add_argument("--seconds", type=float, default=15.0)
    cli.add_argument("--hop-only", action="store_true", help="only the two latencies")
    cli.add_argument(
        "--hop-rounds",
        type=int,
        default=1,
        help="rounds of the two latency hops, taking turns; each one's p99 over all its rounds",
    )
    cli.add_argument(
        "--relay-against",
        type=Path,
        help="only the relay's CPU per event, A/B against the referrals_common under this path",
    )
    cli.add_argument(
        "--consumer-against",
        type=Path,
        help="only the consumer's CPU per event and the hop's p99, A/B against the "
        "referrals_common under this path",
    )
    cli.add_argument(
        "--rounds", type=int, default=3, help="runs of each side (--relay/consumer-against)"
    )
    cli.add_argument("--write-to", type=Path, help=argparse.SUPPRESS)
    cli.add_argument("--consume-to", type=Path, help=argparse.SUPPRESS)
    cli.add_argument("--code-cpu", action="store_true", help=argparse.SUPPRESS)
    cli.add_argument("--bootstrap", help=argparse.SUPPRESS)
    cli.add_argument("--dsn", help=argparse.SUPPRESS)
    cli.add_argument("--topic", help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.write_to:  # the writer process of the latency hop
        asyncio.run(write_at_rate(args.dsn, args.topic, args.rate, args.seconds, args.write_to))
        return
    if args.code_cpu:  # a side's code CPU in --consumer-against
        asyncio.run(code_cpu_alone(args.dsn))
        return
    if args.consume_to:  # the consumer process of --consumer-against
        asyncio.run(consume_to(args.dsn, args.bootstrap, args.topic, args.events, args.consume_to))
        return
    if args.consumer_against:
        report("messaging-consumer-ab.json", asyncio.run(consumer_ab(args)))
        return
    if args.relay_against:
        report("messaging-relay-ab.json", asyncio.run(relay_ab(args)))
        return
    report("messaging.json", asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
    sys.exit(0)
