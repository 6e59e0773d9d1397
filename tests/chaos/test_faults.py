"""Faults under a steady flow of cases: every case must still reach its opinion exactly once.

The module runs the whole platform (every role of every service its own process, the mail sink,
no trace viewer) on a stack of its own, because its faults would break any other test's
platform, and a center process (`tests/chaos/center.py`) that accepts every offer and delivers
an opinion. A front end (`tests/chaos/flow.py`) starts a case every FLOW_INTERVAL seconds —
create, consents, an English pathology report and a German discharge summary, submit, for
Germany — retrying politely (with Idempotency-Keys) while a service is down.

The faults, one test per group, each with its own window of cases:

1. poison events (invalid JSON, an unknown type, a broken contract) on the documents topic, at
   the start: each consumer of the topic dead-letters each of them, once, and carries on;
2. each of the 15 service processes SIGKILLed in turn and started again a second later;
3. the Kafka broker SIGKILLed and started again (same port, same data);
4. MinIO away for MINIO_OUTAGE seconds;
5. PostgreSQL restarted, with a fast shutdown and then with a crash (every connection of every
   service is cut).

After each window the test waits (bounded) until every case of the window has its opinion and
its e-mails and nothing is left in flight, then counts, from every topic read from the
beginning and from the mail sink: every case reached `opinion_delivered` exactly once, its
patient was told each step exactly once (one `notification.sent` per trigger, one e-mail each),
no event id was published with two different contents, and the dead-letter topics hold exactly
the poison events. A table per fault (cases in, out, duplicates, losses) is printed (`-rA`
shows it) and written as JSON to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from devstack import faults
from devstack import platform as platform_mod
from devstack import stack as stack_mod
from devstack.pytest_plugin import stack_root
from devstack.stack import SERVICES
from referrals_common.contracts import topics
from referrals_common.messaging.kafka import ensure_topics

from .audit import (
    PATIENT_TRIGGERS,
    EventLog,
    Figures,
    Mailbox,
    case_history,
    figures,
    quiescent,
    table,
)
from .flow import CaseRecord, Flow, FrontEnd, Ledger

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[2]
FLOW_INTERVAL = float(os.environ.get("CHAOS_FLOW_INTERVAL", "1.0"))
"""Seconds between two new cases."""
WARM_UP = 2.0
"""Seconds of flow before a fault, and after it, so cases are caught at every stage."""
MINIO_OUTAGE = 20.0
DRAIN_TIMEOUT = 240.0
"""Seconds a window's cases get, after the flow stops, to reach their opinion and e-mails."""
DESTINATION = "DE"
CONSUMERS = {
    "intake": "referrals_intake.consumers",
    "records": "referrals_records.consumers",
    "translation": "referrals_translation.consumers",
    "partners": "referrals_partners.consumers",
    "notifications": "referrals_notifications.consumers",
}


@dataclass
class Chaos:
    stack: stack_mod.StackInfo
    platform: platform_mod.PlatformInfo
    log: EventLog
    flow: Flow
    ledger: Ledger
    mailbox: Mailbox
    groups: dict[str, tuple[str, ...]]
    """Each consumer group and the topics it reads."""
    center_log: Path
    poison: list[bytes] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------ fixture


@pytest.fixture(scope="module")
async def chaos(request: pytest.FixtureRequest) -> AsyncIterator[Chaos]:
    """The platform on a stack of its own, the center process, the event log and the flow.

    The stack's directory (every process's log in `services/`, `chaos-summary.json`) is outside
    pytest's temporary root (see `devstack.pytest_plugin.stack_root`); it is removed after a
    clean run and kept, with its path printed, when a test of the module failed."""
    import importlib

    root = stack_root("chaos")
    failed_before = request.session.testsfailed
    console = Console(stderr=True)
    stack = await asyncio.to_thread(stack_mod.start, root, console)
    platform: platform_mod.PlatformInfo | None = None
    center: subprocess.Popen[bytes] | None = None
    stopped = False

    def stop() -> None:  # also at interpreter exit, should the session be interrupted
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if center is not None:
            center.terminate()
            try:
                center.wait(30)
            except subprocess.TimeoutExpired:
                center.kill()
                center.wait(10)
        if platform is not None:
            platform_mod.stop(platform)
        stack_mod.stop(stack)

    atexit.register(stop)
    log: EventLog | None = None
    front: FrontEnd | None = None
    try:
        # The platform's topics, as the kafka-topics job of docker-compose.yml and deploy/k8s
        # makes them before the services start. `devstack.platform.start` makes none: each
        # consumer makes the topics it reads, so `referrals.notifications.v1`, which no service
        # reads, would not exist and notifications' relay could never publish notification.sent.
        await ensure_topics(stack.kafka_bootstrap, list(topics.PLATFORM_TOPICS))
        platform = await asyncio.to_thread(
            platform_mod.start,
            stack,
            console,
            trace_viewer=False,
            timeout=240,
            web=False,
            # Every role its own process, as in Compose and Kubernetes: each fault kills one.
            processes="role",
        )
        await _raise_capacity(platform, DESTINATION)
        center, center_log = await _start_center(root)
        log = EventLog(stack.kafka_bootstrap)
        await log.start()
        groups = {}
        for module in CONSUMERS.values():
            consumers = importlib.import_module(module)
            groups |= {group: tuple(read) for group, read in consumers.GROUPS.items()}
        front = FrontEnd(platform)
        ledger = Ledger()
        yield Chaos(
            stack,
            platform,
            log,
            Flow(front, ledger),
            ledger,
            Mailbox(stack.mail_dir),
            groups,
            center_log,
        )
    finally:
        if front is not None:
            await front.close()
        if log is not None:
            await log.stop()
        await asyncio.to_thread(stop)
        atexit.unregister(stop)
        if request.session.testsfailed == failed_before:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nchaos: the stack's logs and chaos-summary.json are kept in {root}")


async def _raise_capacity(platform: platform_mod.PlatformInfo, country: str) -> None:
    """An operator raises the weekly capacity of the destination's centers: the sample centers
    take a few dozen referrals a week, the flow sends hundreds."""
    headers = {"X-Api-Key": str(platform.keys()["ops"])}
    async with httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30) as client:
        centers = (await client.get("/v1/ops/centers", headers=headers)).raise_for_status()
        for center in centers.json():
            profile = center["profile"]
            if profile["country"] == country:
                profile["weekly_capacity"] = 10_000
                put = await client.put(
                    f"/v1/ops/centers/{center['code']}", json=profile, headers=headers
                )
                put.raise_for_status()


async def _start_center(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The centers' process; returns once it reads its inboxes (actions in chaos-center.jsonl)."""
    actions = root / "services" / "chaos-center.jsonl"
    proc = await asyncio.to_thread(_spawn_center, root, actions)
    deadline = time.monotonic() + 120
    while '"ready"' not in actions.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the center process did not start: see {actions.parent}")
        await asyncio.sleep(0.2)
    return proc, actions


def _spawn_center(root: Path, actions: Path) -> subprocess.Popen[bytes]:
    with actions.open("wb") as out, (root / "services" / "chaos-center.log").open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.center", "--root", str(root)],
            stdout=out,
            stderr=err,
            cwd=REPO,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )


# ------------------------------------------------------------------------------------ helpers


async def run_window(
    chaos: Chaos,
    name: str,
    fault: Callable[[Flow], Awaitable[None]],
    warm_up: float = WARM_UP,
) -> list[str]:
    """Flow cases into `name`, run `fault` (it may move the flow into sub-windows), flow a little
    longer, stop; return the windows the cases went into."""
    chaos.flow.start(f"{name}: before", FLOW_INTERVAL)
    await asyncio.sleep(warm_up)
    await fault(chaos.flow)
    chaos.flow.move_to(f"{name}: after")
    await asyncio.sleep(warm_up)
    await chaos.flow.stop()
    return list(dict.fromkeys(c.window for c in chaos.ledger.cases if c.window.startswith(name)))


async def settle(chaos: Chaos, cases: list[CaseRecord]) -> tuple[float, str]:
    """Wait until every case of `cases` has its opinion, its notifications and its e-mails, then
    until nothing is in flight anywhere and the event log has read everything. Returns the
    seconds it took and, if DRAIN_TIMEOUT passed first, what was still missing."""
    began = time.monotonic()
    ids = [c.case_id for c in cases if c.submitted]

    def missing() -> str:
        history = case_history(chaos.log, set(ids))
        mail = chaos.mailbox.per_case(ids)
        waiting = Counter()
        for case_id in ids:
            h = history[case_id]
            if not h["delivered"]:
                waiting[f"at {h['statuses'][-1] if h['statuses'] else 'submitted'}"] += 1
            elif any(not h["notified"].get(t) for t in PATIENT_TRIGGERS):
                waiting["notifications"] += 1
            elif sum(mail[case_id].values()) < len(PATIENT_TRIGGERS):
                waiting["e-mails"] += 1
        return ", ".join(f"{n} {what}" for what, n in waiting.items())

    deadline = began + DRAIN_TIMEOUT
    while (left := missing()) and time.monotonic() < deadline:
        if dead_letter_problems(chaos):
            # A good event was dead-lettered: its case cannot go through without an operator's
            # replay. Give the rest a little longer, not the whole drain timeout.
            deadline = min(deadline, time.monotonic() + 20)
        await asyncio.sleep(1.0)
    if left:
        return time.monotonic() - began, f"cases not through: {left}"
    # The five services' databases (each has an outbox); the web app's has none.
    dsns = {s: dsn for s, dsn in chaos.stack.database_dsns.items() if s in SERVICES}
    busy = "starting"
    while time.monotonic() - began < DRAIN_TIMEOUT:
        busy = await quiescent(chaos.stack.kafka_bootstrap, dsns, chaos.groups)
        if not busy and await chaos.log.caught_up():
            # Once more: a relay may publish between our looks at the outbox and at Kafka.
            busy = await quiescent(chaos.stack.kafka_bootstrap, dsns, chaos.groups)
            if not busy and await chaos.log.caught_up():
                return time.monotonic() - began, ""
        await asyncio.sleep(1.0)
    return time.monotonic() - began, f"still in flight: {busy}"


def dead_letter_problems(chaos: Chaos) -> list[str]:
    """The dead-letter topics must hold the poison events, once per consumer that reads their
    topic, and nothing else."""
    readers = [g for g, t in chaos.groups.items() if topics.DOCUMENTS in t]
    expected = Counter((p, g, topics.DOCUMENTS) for p in chaos.poison for g in readers)
    found = Counter(
        (r.value, r.headers.get("dlq.consumer", "?"), r.headers.get("dlq.original_topic", "?"))
        for r in chaos.log.dead_letters()
    )
    problems = []
    for (value, group, topic), n in (found - expected).items():
        problems.append(f"unexpected dead letter ×{n} from {group} on {topic}: {value[:200]!r}")
    for (value, group, _), n in (expected - found).items():
        problems.append(f"poison event not dead-lettered by {group} ({n}×): {value[:80]!r}")
    return problems


def report(
    chaos: Chaos, name: str, windows: list[str], drain: tuple[float, str], tmp_path: Path
) -> tuple[list[Figures], list[str]]:
    """Count every window, print the table, write the JSON summary; return the figures and every
    problem found (empty when the platform came through)."""
    ids = [c.case_id for c in chaos.ledger.cases if c.case_id]
    mail = chaos.mailbox.per_case(ids)
    rows = [figures(w, chaos.ledger.of(w), chaos.log, mail) for w in windows]
    total = Figures(f"{name}: all")
    for f in rows:
        for attr in ("cases_in", "submitted", "cases_out", "duplicates", "losses"):
            setattr(total, attr, getattr(total, attr) + getattr(f, attr))
        total.republished += f.republished
        total.retries += f.retries
        total.seconds += f.seconds
        total.problems += f.problems
    problems = list(total.problems)
    if drain[1]:
        problems.insert(0, f"after {drain[0]:.0f} s: {drain[1]}")
    conflicts = chaos.log.conflicting_ids()
    problems += [
        f"event {i} published with different contents at {w}" for i, w in conflicts.items()
    ]
    problems += dead_letter_problems(chaos)
    unsubmitted = [c for w in windows for c in chaos.ledger.of(w) if not c.submitted]
    ours = {c.case_id for w in windows for c in chaos.ledger.of(w)}
    actions = [json.loads(line) for line in chaos.center_log.read_text().splitlines() if line]
    actions = [a for a in actions if a.get("case_id") in ours]
    problems += [
        f"center gave up on case {a['case_id']}: {a['error']}"
        for a in actions
        if a["action"] == "gave up"
    ]
    unknown = {a["case_id"] for a in actions if a["action"] == "referral unknown to records"}
    problems += [f"case #{c.number} not submitted by the front end: {c.error}" for c in unsubmitted]
    print(f"\n{name} (drained in {drain[0]:.0f} s)")
    print(table([f.row() for f in [*rows, total]]))
    retried = Counter()
    for w in windows:
        for c in chaos.ledger.of(w):
            retried.update(c.retries.by_cause)
    if unknown:
        print(
            f"center: {len(unknown)} offered referrals were not yet known to records (409"
            " referral-not-known-yet, retried, until records' consumer read referral.requested)"
        )
    if retried:
        print("front end retries: " + ", ".join(f"{k} ×{n}" for k, n in retried.most_common(8)))
    for problem in problems[:40]:
        print("  ✗ " + problem)
    summary = {
        "fault": name,
        "at": datetime.now(UTC).isoformat(),
        "drain_seconds": round(drain[0], 1),
        "windows": [{k: v for k, v in asdict(f).items()} for f in [*rows, total]],
        "conflicting_event_ids": conflicts,
        "dead_letters": len(chaos.log.dead_letters()),
        "front_end_retries": dict(retried),
        "referrals_unknown_to_records": len(unknown),
        "problems": problems,
    }
    chaos.summary.append(summary)
    (tmp_path / "chaos-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (Path(chaos.stack.root) / "chaos-summary.json").write_text(
        json.dumps(chaos.summary, indent=2, default=str)
    )
    return [*rows, total], problems


async def run_fault(
    chaos: Chaos,
    name: str,
    fault: Callable[[Flow], Awaitable[None]],
    tmp_path: Path,
    warm_up: float = WARM_UP,
) -> None:
    began = time.monotonic()
    windows = await run_window(chaos, name, fault, warm_up)
    cases = [c for w in windows for c in chaos.ledger.of(w)]
    drain = await settle(chaos, cases)
    _, problems = report(chaos, name, windows, drain, tmp_path)
    print(f"{name}: {len(cases)} cases, {time.monotonic() - began:.0f} s in all")
    assert not problems, f"{name}: {len(problems)} problems:\n" + "\n".join(problems[:40])


# -------------------------------------------------------------------------------------- tests


@pytest.mark.timeout(600)
async def test_poison_events_are_dead_lettered_once_and_consumers_carry_on(
    chaos: Chaos, tmp_path: Path
) -> None:
    """Malformed records on the documents topic, while cases flow: each consumer of the topic
    dead-letters each of them once; the cases around them are not disturbed."""
    from aiokafka import AIOKafkaProducer

    case_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    chaos.poison = [
        b'{"specversion": "1.0", "id": "not json at all',
        json.dumps(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/referrals/records",
                "type": "referrals.document.shredded.v1",
                "subject": case_id,
                "time": now,
                "datacontenttype": "application/json",
                "data": {"case_id": case_id},
            }
        ).encode(),
        json.dumps(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/referrals/records",
                "type": "referrals.document.stored.v1",
                "subject": case_id,
                "time": now,
                "datacontenttype": "application/json",
                "data": {"case_id": case_id, "document_id": "not-a-uuid"},
            }
        ).encode(),
    ]

    async def inject(flow: Flow) -> None:
        flow.move_to("poison events")
        producer = AIOKafkaProducer(bootstrap_servers=chaos.stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for value in chaos.poison:
                await producer.send_and_wait(topics.DOCUMENTS, value, key=case_id.encode())
        finally:
            await producer.stop()
        readers = sum(topics.DOCUMENTS in t for t in chaos.groups.values())
        deadline = time.monotonic() + 120
        while len(chaos.log.dead_letters()) < readers * len(chaos.poison):
            assert time.monotonic() < deadline, f"dead letters: {dead_letter_problems(chaos)}"
            await asyncio.sleep(0.5)

    await run_fault(chaos, "poison events", inject, tmp_path, warm_up=1.0)


@pytest.mark.timeout(900)
async def test_every_service_process_killed_in_turn(chaos: Chaos, tmp_path: Path) -> None:
    """SIGKILL each of the 15 service processes in turn (a crash, no clean shutdown), start it
    again a second later; the cases started while each was down are that fault's window."""

    async def kill_each(flow: Flow) -> None:
        down: dict[str, float] = {}
        for service, roles in platform_mod.ROLES.items():
            for role in roles:
                name = f"{service}-{role}"
                flow.move_to(f"kill {name}")
                began = time.monotonic()
                await asyncio.to_thread(platform_mod.kill, chaos.platform, name)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(platform_mod.restart, chaos.platform, name, timeout=180)
                down[name] = time.monotonic() - began
        print("down (s): " + ", ".join(f"{n} {s:.1f}" for n, s in down.items()))

    await run_fault(chaos, "kill", kill_each, tmp_path)


@pytest.mark.timeout(600)
async def test_kafka_broker_restarted(chaos: Chaos, tmp_path: Path) -> None:
    """SIGKILL the broker and start it again on the same port and data: every producer and
    consumer of the platform (and the centers) must reconnect and lose nothing."""

    async def restart(flow: Flow) -> None:
        flow.move_to("kafka restart")
        away = await asyncio.to_thread(faults.restart_kafka, chaos.stack, hard=True)
        print(f"kafka was away {away:.1f} s")

    await run_fault(chaos, "kafka", restart, tmp_path)


@pytest.mark.timeout(600)
async def test_minio_away(chaos: Chaos, tmp_path: Path) -> None:
    """MinIO stopped for MINIO_OUTAGE seconds: uploads fail (the front end retries), translation
    cannot read documents (its consumer retries), centers cannot download; nothing is lost."""

    async def outage(flow: Flow) -> None:
        flow.move_to("minio outage")
        away = await asyncio.to_thread(faults.minio_outage, chaos.stack, seconds=MINIO_OUTAGE)
        print(f"minio was away {away:.1f} s")

    await run_fault(chaos, "minio", outage, tmp_path)


@pytest.mark.timeout(600)
async def test_postgres_restarted(chaos: Chaos, tmp_path: Path) -> None:
    """PostgreSQL restarted twice: a fast shutdown (SIGINT), then a crash (SIGKILL, WAL recovery
    at start). Every service's connections are cut at once, and for a moment new ones are
    refused with "the database system is shutting down" / "starting up" (SQLSTATE 57P03); APIs,
    consumers, relays, the scheduler and the sender must wait it out and lose nothing."""

    async def restart(flow: Flow) -> None:
        flow.move_to("postgres fast shutdown")
        away = await asyncio.to_thread(faults.restart_postgres, chaos.stack)
        print(f"postgres (fast shutdown) was away {away:.1f} s")
        await asyncio.sleep(WARM_UP)
        flow.move_to("postgres crash")
        away = await asyncio.to_thread(faults.restart_postgres, chaos.stack, hard=True)
        print(f"postgres (SIGKILL, recovery at start) was away {away:.1f} s")

    await run_fault(chaos, "postgres", restart, tmp_path)
