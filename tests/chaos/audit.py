"""What the platform did, read back from Kafka, PostgreSQL and the mail sink.

* `EventLog` reads every topic of the platform (the platform topics, the centers' inboxes and
  every `*.dlq`) from the beginning, in the background, for the whole module: the tests count
  from it.
* `quiescent` says when nothing is left in flight: every outbox published, every consumer group
  committed to the end of its topics, no notification waiting to be sent.
* `Mailbox` reads the mail sink's .eml files (each once) and counts them per case reference.
* `Figures` is what one window of cases came to: in, out, duplicates, losses, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from devstack.mailsink import read_message
from referrals_notifications.messages import case_reference

STATUS_CHANGED = "referrals.case.status_changed.v1"
NOTIFICATION_SENT = "referrals.notification.sent.v1"
PATIENT_TRIGGERS = (
    "case_submitted",
    "referral_requested",
    "referral_accepted",
    "opinion_delivered",
)
"""What the patient is told about a case that goes through without a hitch."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp: float
    """When Kafka took it (seconds since the epoch)."""
    event: dict[str, Any] | None
    """The value as JSON, if it is a JSON object."""


class EventLog:
    """Every record of every topic of the platform, read from the beginning in the background."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.records: list[Record] = []
        self.partitions: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            client_id="chaos-audit",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.consumer.start()
        cluster = await self.consumer._client.fetch_all_metadata()
        self.partitions = [
            TopicPartition(topic, p)
            for topic in sorted(cluster.topics())
            if topic.startswith("referrals.")
            for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batch.values():
                for r in records:
                    self.records.append(
                        Record(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value,
                            {k: v.decode(errors="replace") for k, v in r.headers or ()},
                            r.timestamp / 1000,
                            _json_object(r.value),
                        )
                    )

    async def caught_up(self) -> bool:
        """Whether every record now in Kafka has been read."""
        if self._task is not None and self._task.done():
            self._task.result()  # the reader died: say why
        try:
            ends = await asyncio.wait_for(self.consumer.end_offsets(self.partitions), 10)
        except Exception:  # the broker is away: not caught up
            return False
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def events(self, topic_prefix: str = "referrals.") -> list[Record]:
        return [
            r
            for r in self.records
            if r.topic.startswith(topic_prefix) and not r.topic.endswith(".dlq")
        ]

    def dead_letters(self) -> list[Record]:
        return [r for r in self.records if r.topic.endswith(".dlq")]

    def conflicting_ids(self) -> dict[str, list[str]]:
        """CloudEvents ids published more than once with different contents (anywhere)."""
        seen: dict[str, set[str]] = defaultdict(set)
        where: dict[str, list[str]] = defaultdict(list)
        for r in self.events():
            if r.event is None or "id" not in r.event:
                continue
            seen[str(r.event["id"])].add(json.dumps(r.event, sort_keys=True))
            where[str(r.event["id"])].append(f"{r.topic}[{r.partition}]@{r.offset}")
        return {i: where[i] for i, contents in seen.items() if len(contents) > 1}


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(value or b"")
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# ---------------------------------------------------------------------------------- quiescence


async def quiescent(
    bootstrap: str, dsns: dict[str, str], groups: dict[str, tuple[str, ...]]
) -> str:
    """What is still in flight ("" when nothing): unpublished outbox rows, consumer groups
    behind the end of their topics, notifications not yet sent."""
    import asyncpg
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.consumer import AIOKafkaConsumer

    busy: list[str] = []
    for service, dsn in dsns.items():
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            backlog = await conn.fetchval("select count(*) from outbox where sent_at is null")
            if backlog:
                busy.append(f"{service} outbox {backlog}")
            if service == "notifications":
                pending = await conn.fetchval(
                    "select count(*) from deliveries where status = 'pending'"
                )
                if pending:
                    busy.append(f"notifications deliveries pending {pending}")
        finally:
            await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        for group, topics in groups.items():
            committed = await admin.list_consumer_group_offsets(group)
            cluster = await probe._client.fetch_all_metadata()
            wanted = [
                TopicPartition(t, p) for t in topics for p in cluster.partitions_for_topic(t) or ()
            ]
            ends = await probe.end_offsets(wanted)
            behind = sum(
                end - (committed[tp].offset if tp in committed else 0)
                for tp, end in ends.items()
                if end > (committed[tp].offset if tp in committed else 0)
            )
            if behind:
                busy.append(f"{group} behind by {behind}")
    finally:
        await probe.stop()
        await admin.close()
    return ", ".join(busy)


# ------------------------------------------------------------------------------------ mail sink


class Mailbox:
    """The mail sink's messages, each file read once; counted per case reference."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.subjects: dict[Path, str] = {}

    def refresh(self) -> None:
        for path in sorted(self.directory.glob("*.eml")):
            if path not in self.subjects:
                self.subjects[path] = str(read_message(path)["Subject"])

    def per_case(self, case_ids: list[str]) -> dict[str, Counter[str]]:
        """For each case, its e-mails by subject (a subject twice is a message sent twice)."""
        self.refresh()
        references = {case_reference(UUID(c)): c for c in case_ids}
        found: dict[str, Counter[str]] = {c: Counter() for c in case_ids}
        for subject in self.subjects.values():
            for reference, case_id in references.items():
                if reference in subject:
                    found[case_id][subject.replace(reference, "<ref>")] += 1
        return found


# ---------------------------------------------------------------------------------- the figures


@dataclass
class Figures:
    """What one window of cases came to."""

    window: str
    cases_in: int = 0
    """Cases the front end created (and meant to submit)."""
    submitted: int = 0
    cases_out: int = 0
    """Cases whose opinion was delivered."""
    duplicates: int = 0
    """Effects that happened twice: a second opinion_delivered transition, a notification or an
    e-mail sent twice."""
    losses: int = 0
    """Cases created that never reached opinion_delivered, and notifications of cases out that
    were never sent."""
    republished: int = 0
    """Events of these cases published more than once with the same id and content (at-least-
    once publication, harmless: consumers' inboxes absorb them)."""
    retries: int = 0
    """Calls the front end had to retry."""
    seconds: list[float] = field(default_factory=list)
    """Per case out: from the front end's first call to opinion_delivered."""
    problems: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        return [
            self.window,
            str(self.cases_in),
            str(self.cases_out),
            str(self.duplicates),
            str(self.losses),
            str(self.republished),
            str(self.retries),
            f"{statistics.median(self.seconds):.0f}" if self.seconds else "-",
            f"{max(self.seconds):.0f}" if self.seconds else "-",
        ]


HEADER = [
    "fault",
    "cases in",
    "cases out",
    "duplicates",
    "losses",
    "republished",
    "retries",
    "p50 s",
    "max s",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)), line]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def case_history(log: EventLog, case_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Per case: the ids of its opinion_delivered transitions, its last status, the ids of its
    patient notifications per trigger, and how many of its records repeat an earlier one."""
    history: dict[str, dict[str, Any]] = {
        c: {
            "delivered": set(),
            "delivered_at": 0.0,
            "statuses": [],
            "notified": defaultdict(set),
            "repeats": 0,
        }
        for c in case_ids
    }
    seen: set[tuple[str, str]] = set()
    for r in log.events():
        event = r.event
        if event is None:
            continue
        case_id = str((event.get("data") or {}).get("case_id", ""))
        if case_id not in history:
            continue
        h = history[case_id]
        key = (r.topic, str(event.get("id")))
        if key in seen:
            h["repeats"] += 1
            continue
        seen.add(key)
        if event.get("type") == STATUS_CHANGED:
            to_status = event["data"]["to_status"]
            h["statuses"].append(to_status)
            if to_status == "opinion_delivered":
                h["delivered"].add(str(event["id"]))
                h["delivered_at"] = h["delivered_at"] or r.timestamp
        elif event.get("type") == NOTIFICATION_SENT:
            h["notified"][event["data"]["trigger"]].add(str(event["id"]))
    return history


def figures(
    window: str,
    cases: list[Any],
    log: EventLog,
    mail: dict[str, Counter[str]],
) -> Figures:
    """Count one window: every case must reach opinion_delivered once, its patient be told each
    step once (one notification.sent per trigger, one e-mail each), nothing else twice."""
    f = Figures(window, cases_in=len(cases))
    f.submitted = sum(1 for c in cases if c.submitted)
    f.retries = sum(c.retries.total for c in cases)
    ids = {c.case_id for c in cases if c.case_id}
    history = case_history(log, ids)
    for c in cases:
        if not c.case_id:
            f.losses += 1
            f.problems.append(f"case #{c.number} was never created: {c.error}")
            continue
        h = history[c.case_id]
        f.republished += h["repeats"]
        delivered = len(h["delivered"])
        if delivered == 0:
            f.losses += 1
            last = h["statuses"][-1] if h["statuses"] else "draft"
            why = f"; front end: {c.error}" if c.error else ""
            f.problems.append(
                f"case {c.case_id} (#{c.number}) lost: stuck at {last} ({h['statuses']}){why}"
            )
            continue
        f.cases_out += 1
        f.seconds.append(h["delivered_at"] - c.started_wall)
        if delivered > 1:
            f.duplicates += delivered - 1
            f.problems.append(f"case {c.case_id}: opinion_delivered {delivered} times")
        for trigger in PATIENT_TRIGGERS:
            sent = len(h["notified"].get(trigger, ()))
            if sent != 1:
                f.duplicates += max(0, sent - 1)
                f.losses += 0 if sent else 1
                f.problems.append(f"case {c.case_id}: {trigger} notified {sent} times")
        extra = set(h["notified"]) - set(PATIENT_TRIGGERS)
        if extra:
            f.problems.append(f"case {c.case_id}: unexpected notifications {sorted(extra)}")
        emails = mail.get(c.case_id, Counter())
        if sum(emails.values()) != len(PATIENT_TRIGGERS) or len(emails) != len(PATIENT_TRIGGERS):
            f.duplicates += sum(n - 1 for n in emails.values() if n > 1)
            f.problems.append(f"case {c.case_id}: e-mails {dict(emails)}")
    return f


async def wait_until(what: str, check: Any, timeout: float, interval: float = 1.0) -> float:
    """Poll the async `check` (true or "" when done; else a description of what is missing)
    until it is done; return the seconds it took, or fail with the last description."""
    began = time.monotonic()
    last: Any = None
    while True:
        last = await check()
        if last is True or last == "":
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not done after {timeout:.0f} s: {last}")
        await asyncio.sleep(interval)
