"""Benchmark: messages per second from event to SMTP acceptance, beside aiosmtplib alone.

Not a test: it prints figures and writes bench/results/notifications.json. On a stack it starts
itself, with an SMTP server (aiosmtpd) on loopback, in one run:

- baseline: aiosmtplib sends N messages (the same rendered e-mails) straight to the server, one
  connection per message as the e-mail channel does, `--concurrency` at a time;
- pipeline: N submitted cases are published to Kafka (each a sealed contact and a
  `case.submitted`, as intake would); `referrals-notifications consumer`, `sender` and `relay`
  run as their own processes; the clock stops when the server has accepted N messages.

It prints both rates and their ratio (target >= 0.5), and the pipeline's p50/p99 latency from
publishing the case to the server's acceptance.

    uv run python bench/notifications.py [--cases 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from _harness.results import parser, shown, write_results
from _harness.stack import QUIET, own_stack, service
from _harness.stats import pct_floor
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from rich.console import Console

from devstack.process import free_port, stop_group
from referrals_common.contracts import CaseContactShared, CaseSubmitted, new_event, topics
from referrals_common.crypto import SealedBox
from referrals_common.messaging.kafka import ensure_topics
from referrals_notifications.channels.email import SmtpSettings, SmtpTls, build_email
from referrals_notifications.messages import CaseSubmittedContext, case_reference
from referrals_notifications.rendering import Renderer

console = Console()


class Counter:
    """The SMTP server's side: when each message was accepted, and for which case."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        to = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self.accepted[to] = time.perf_counter()
        return "250 OK"


def sample_message(settings: SmtpSettings, renderer: Renderer, address: str):
    case_id = uuid.uuid4()
    context = CaseSubmittedContext(
        case_ref=case_reference(case_id), locale="uk", submitted_at=datetime.now(UTC)
    )
    from referrals_common.contracts.notifications import NotificationChannel, NotificationTrigger

    rendered = renderer.render(
        NotificationTrigger.CASE_SUBMITTED, context, NotificationChannel.EMAIL
    )
    return build_email(settings, address, rendered)


async def baseline(port: int, n: int, concurrency: int, counter: Counter) -> float:
    settings = SmtpSettings(host="127.0.0.1", port=port, tls=SmtpTls.NONE)
    renderer = Renderer()
    messages = [sample_message(settings, renderer, f"base{i}@example.org") for i in range(n)]
    gate = asyncio.Semaphore(concurrency)
    before = counter.count

    async def send(message) -> None:
        async with gate:
            await aiosmtplib.send(message, hostname="127.0.0.1", port=port, use_tls=False)

    started = time.perf_counter()
    await asyncio.gather(*(send(m) for m in messages))
    elapsed = time.perf_counter() - started
    assert counter.count - before == n
    return n / elapsed


async def pipeline(bootstrap: str, public: str, n: int, counter: Counter) -> dict[str, float]:
    box = SealedBox(public_key_b64=public)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    published: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for i in range(n):
            case_id = uuid.uuid4()
            address = f"case{i}@example.org"
            sealed = box.seal_json(
                {"email": address, "phone": None, "preferred_channel": "email"},
                bound_to=str(case_id),
            )
            events = [
                new_event(
                    CaseContactShared(
                        case_id=case_id, sealed_contact=sealed, locale="uk", front_end="bench"
                    )
                ),
                new_event(
                    CaseSubmitted(
                        case_id=case_id,
                        clinical={
                            "icd10": "C50.9",
                            "age_group": "adult",
                            "reasons": ["choose_treatment"],
                        },
                        destination={"preference": "countries", "countries": ["DE"]},
                        locale="uk",
                        processing_consent_version="2026-01",
                        cross_border_consent_version="2026-01",
                        submitted_at=datetime.now(UTC),
                    )
                ),
            ]
            published[address] = time.perf_counter()
            for event in events:
                await producer.send(
                    event.data.publish_topic(), event.to_json(), key=str(case_id).encode()
                )
        await producer.flush()
    finally:
        await producer.stop()
    deadline = time.monotonic() + 600
    while sum(1 for a in published if a in counter.accepted) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(counter.accepted)} of {n} messages arrived")
        await asyncio.sleep(0.05)
    last = max(counter.accepted[a] for a in published)
    latencies = sorted((counter.accepted[a] - published[a]) * 1000 for a in published)
    return {
        "per_second": n / (last - started),
        "p50_ms": statistics.median(latencies),
        "p99_ms": pct_floor(latencies, 0.99),
    }


def start_services(info, tmp: Path, smtp_port: int, private: str) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "REFERRALS_NOTIFICATIONS_POSTGRES__DSN": info.database_dsns["notifications"],
        "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": info.kafka_bootstrap,
        "REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY": private,
        "REFERRALS_NOTIFICATIONS_SMTP__HOST": "127.0.0.1",
        "REFERRALS_NOTIFICATIONS_SMTP__PORT": str(smtp_port),
        "REFERRALS_NOTIFICATIONS_SMTP__TLS": "none",
        **QUIET,
    }
    subprocess.run(
        [sys.executable, "-m", "referrals_notifications.cli", "migrate"], env=env, check=True
    )
    return [
        service("notifications", role, env, tmp / f"notifications-{role}.log")
        for role in ("consumer", "sender", "relay")
    ]


async def stages(dsn: str, n: int) -> dict[str, float]:
    """How long the consumer took to write the last `n` rows, and the sender to send them."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "select extract(epoch from max(created_at) - min(created_at)) as written,"
            " extract(epoch from max(sent_at) - min(created_at)) as sent from ("
            " select created_at, sent_at from deliveries where audience = 'patient'"
            " order by created_at desc limit $1) last",
            n,
        )
    finally:
        await conn.close()
    return {
        "consumer_rows_per_second": n / float(row["written"]),
        "rows_to_sent_s": float(row["sent"]),
    }


async def run(args: argparse.Namespace, info, tmp: Path) -> dict[str, object]:
    counter = Counter()
    smtp = Controller(counter, hostname="127.0.0.1", port=free_port())
    smtp.start()
    procs: list[subprocess.Popen] = []
    try:
        await ensure_topics(info.kafka_bootstrap, topics.PLATFORM_TOPICS)
        private, public = SealedBox.generate_keypair_base64()
        procs = start_services(info, tmp, smtp.port, private)
        # Warm-up: one case through, so the consumer group has joined and pools are open.
        await pipeline(info.kafka_bootstrap, public, 5, counter)
        base = await baseline(smtp.port, args.cases, args.concurrency, counter)
        piped = await pipeline(info.kafka_bootstrap, public, args.cases, counter)
        piped.update(await stages(info.database_dsns["notifications"], args.cases))
    finally:
        for proc in procs:
            stop_group(proc.pid)
        smtp.stop()
    ratio = piped["per_second"] / base
    console.print(f"aiosmtplib direct : {base:8.1f} messages/s (concurrency {args.concurrency})")
    console.print(
        f"event → SMTP      : {piped['per_second']:8.1f} messages/s "
        f"(p50 {piped['p50_ms']:.0f} ms, p99 {piped['p99_ms']:.0f} ms)"
    )
    console.print(f"ratio             : {ratio:8.2f} (target >= 0.5)")
    console.print(
        f"stages            : consumer wrote {piped['consumer_rows_per_second']:.1f} rows/s; "
        f"first row to last sent {piped['rows_to_sent_s']:.1f} s"
    )
    return {
        "cases": args.cases,
        "baseline_messages_per_second": round(base, 1),
        "pipeline_messages_per_second": round(piped["per_second"], 1),
        "pipeline_p50_ms": round(piped["p50_ms"], 1),
        "pipeline_p99_ms": round(piped["p99_ms"], 1),
        "ratio": round(ratio, 3),
        "concurrency": args.concurrency,
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--cases", type=int, default=400)
    cli.add_argument("--concurrency", type=int, default=4)
    args = cli.parse_args()
    with own_stack("bench-notifications-", ("notifications",)) as (tmp, info):
        result = asyncio.run(run(args, info, tmp))
    out = write_results(
        "notifications.json", {"measured_at": datetime.now(UTC).isoformat(), **result}
    )
    console.print(f"written to {shown(out)}")


if __name__ == "__main__":
    main()
