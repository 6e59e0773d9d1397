"""The demo journey: one case from a patient in Kyiv to a written opinion from a center in Germany.

`devstack demo` (and `make demo`) plays the partner front end over the services' HTTP APIs while
a sample center process (`devstack.sample_center`) reads its inbox topic over Kafka:

1. create the case (destination Germany), give the two consents, upload a Ukrainian discharge
   summary and an English pathology report (`samples/`), submit;
2. translation asks for the discharge summary in English or German: the demo shows what the
   patient is told, then uploads the German translation linked to the original;
3. the case becomes ready; the patient asked to choose the center, so partners proposes the best
   ones (why, turnaround, price) and the front end chooses the first; that center declines,
   partners re-routes the case, the next center accepts, reads the documents and delivers its
   opinion;
4. the center offers times for the consultation meeting that explains its opinion; the patient
   books one (the confirmation e-mail carries a calendar file, `.ics`, in the mail sink);
5. the patient's e-mails (from the local mail sink), the timeline of every event with timings,
   each step's trace id (and its link in the trace viewer) and the FHIR export are shown.

`run_journey` returns everything it saw, so the end-to-end test asserts on the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dt_time
from email import policy
from email.message import Message
from email.parser import BytesParser
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from rich.console import Console
from rich.table import Table

from devstack.mailsink import list_messages
from devstack.platform import PlatformInfo, trace_environment
from devstack.sample_center import assign_at_end
from devstack.stack import StackInfo

tracer = trace.get_tracer("devstack.demo")

PATIENT_EMAIL = "olena.petrenko@example.org"
CASE = {
    "diagnosis": {
        "icd10": "C50.4",
        "text": "Carcinoma of the upper outer quadrant of the left breast",
        "histology": "Invasive carcinoma of no special type, grade 2, ER+/PR+, HER2 1+",
    },
    "stage": {"tnm": "cT2N1M0", "group": "IIB"},
    "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
    "questions": ["Is breast-conserving surgery possible after neoadjuvant chemotherapy?"],
    "destination": {"preference": "countries", "countries": ["DE"]},
    "locale": "uk",
    "date_of_birth": "1979-04-12",
    "contact": {"email": PATIENT_EMAIL, "phone": "+380501234567"},
}
CONSENT_VERSION = "2026-01"


@dataclass
class Step:
    name: str
    actor: str
    trace_id: str
    at: float
    """Seconds since the journey began."""
    seconds: float


@dataclass
class SeenEvent:
    at: float
    topic: str
    type: str
    trace_id: str
    data: dict[str, Any]
    id: str = ""


@dataclass
class Email:
    at: float
    to: str
    subject: str
    body: str
    trace_id: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    """Each attached file: its name, media type and bytes (a calendar file, say)."""


@dataclass
class Journey:
    case_id: str = ""
    steps: list[Step] = field(default_factory=list)
    events: list[SeenEvent] = field(default_factory=list)
    emails: list[Email] = field(default_factory=list)
    center_actions: list[dict[str, Any]] = field(default_factory=list)
    translation_required: list[dict[str, Any]] = field(default_factory=list)
    next_step: str | None = None
    fhir: dict[str, Any] = field(default_factory=dict)
    opinion_bytes: int = 0
    proposal: dict[str, Any] = field(default_factory=dict)
    """The centers proposed to the patient, and the one chosen (`chosen`)."""
    meeting: dict[str, Any] = field(default_factory=dict)
    """The consultation meeting as the patient's case shows it once booked."""
    seconds: float = 0.0
    trace_viewer: str = ""

    def statuses(self) -> list[str]:
        return [
            e.data["to_status"] for e in self.events if e.type == "referrals.case.status_changed.v1"
        ]

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def sample(name: str) -> bytes:
    return resources.files("devstack").joinpath(f"samples/{name}").read_bytes()


def _trace_id(headers: Any) -> str:
    for key, value in headers or ():
        if key == "traceparent":
            parts = value.decode().split("-")
            return parts[1] if len(parts) == 4 else ""
    return ""


class EventWatcher:
    """Reads every platform topic and the sample centers' inboxes from their current end, and
    keeps the events of one case, with when they were seen and the trace they carry."""

    def __init__(self, bootstrap: str, centers: list[str], began: float) -> None:
        self.bootstrap = bootstrap
        self.centers = centers
        self.began = began
        self.case_id: str | None = None
        self.seen: list[SeenEvent] = []
        self._early: list[tuple[float, Any]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from referrals_common.contracts import topics

        names = [*topics.PLATFORM_TOPICS, *(topics.partner_inbox(c) for c in self.centers)]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="demo-watcher"
        )
        await self.consumer.start()
        await assign_at_end(self.consumer, names)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self._take(time.monotonic() - self.began, record)

    def _take(self, at: float, record: Any) -> None:
        if self.case_id is None:
            self._early.append((at, record))
            return
        try:
            event = json.loads(record.value)
        except ValueError:
            return
        data = event.get("data") or {}
        if str(data.get("case_id")) != self.case_id:
            return
        trace_id = _trace_id(record.headers)
        self.seen.append(
            SeenEvent(at, record.topic, event["type"], trace_id, data, str(event.get("id", "")))
        )
        self._changed.set()

    def follow(self, case_id: str) -> None:
        self.case_id = case_id
        early, self._early = self._early, []
        for at, record in early:
            self._take(at, record)

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> SeenEvent:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.seen:
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; saw {self.types()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 1.0))

    def types(self) -> list[str]:
        return [e.type.removeprefix("referrals.").removesuffix(".v1") for e in self.seen]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.consumer.stop()


def _language(code: str) -> str:
    from babel import Locale

    try:
        return f"{Locale.parse(code).get_display_name('en')} ({code})"
    except (ValueError, LookupError):
        return code


def _count(watcher: EventWatcher, event_type: str) -> int:
    return sum(1 for e in watcher.seen if e.type == event_type)


def status_is(status: str) -> Any:
    return lambda e: e.type == "referrals.case.status_changed.v1" and e.data["to_status"] == status


class FrontEnd:
    """The partner clinic's web front end, as the demo plays it: each action a traced step."""

    def __init__(self, platform: PlatformInfo, journey: Journey, began: float) -> None:
        keys = platform.keys()
        self.api_key = str(keys["front_end"])
        self.intake = httpx.AsyncClient(base_url=platform.apis["intake"], timeout=30)
        self.records = httpx.AsyncClient(base_url=platform.apis["records"], timeout=60)
        self.journey = journey
        self.began = began
        self.token = ""

    @contextlib.contextmanager
    def step(self, name: str, actor: str = "front end") -> Iterator[None]:
        started = time.monotonic()
        with tracer.start_as_current_span(
            f"{actor}: {name}", context=otel_context.Context()
        ) as span:
            if self.journey.case_id:
                span.set_attribute("referrals.case_id", self.journey.case_id)
            yield
        trace_id = format(span.get_span_context().trace_id, "032x")
        self.journey.steps.append(
            Step(name, actor, trace_id, started - self.began, time.monotonic() - started)
        )

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def create_case(self, **extra: Any) -> str:
        with self.step("create the case"):
            response = await self.intake.post(
                "/v1/cases",
                json={**CASE, **extra},
                headers={"X-Api-Key": self.api_key, "Idempotency-Key": str(uuid.uuid4())},
            )
            _ok(response)
        created = response.json()
        self.token = created["access_token"]
        self.journey.case_id = created["case"]["id"]
        with self.step("give the consents"):
            for kind in ("processing", "cross_border"):
                _ok(
                    await self.intake.put(
                        f"/v1/cases/{self.journey.case_id}/consents/{kind}",
                        json={"version": CONSENT_VERSION},
                        headers=self.auth,
                    )
                )
        return self.journey.case_id

    async def upload(
        self, name: str, kind: str, file_name: str, translation_of: str | None = None
    ) -> str:
        with self.step(name):
            form = {"kind": kind, **({"translation_of": translation_of} if translation_of else {})}
            response = await self.records.post(
                f"/v1/cases/{self.journey.case_id}/documents",
                data=form,
                files={"file": (file_name, sample(file_name), "application/pdf")},
                headers=self.auth,
            )
            _ok(response)
        return str(response.json()["id"])

    async def wait_documents(self, count: int, timeout: float) -> None:
        """Until intake lists `count` documents: it learns of them from records' events, a
        moment after each upload (a front end shows them as "received" then)."""
        deadline = time.monotonic() + timeout
        while len((await self.read_case())["documents"]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"intake did not list {count} documents in {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def submit(self) -> None:
        with self.step("submit the case"):
            _ok(
                await self.intake.post(
                    f"/v1/cases/{self.journey.case_id}/submit",
                    headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
                )
            )

    async def read_case(self) -> dict[str, Any]:
        response = await self.intake.get(f"/v1/cases/{self.journey.case_id}", headers=self.auth)
        _ok(response)
        case: dict[str, Any] = response.json()
        return case

    async def read_opinion(self) -> int:
        with self.step("read the opinion"):
            docs = await self.records.get(
                f"/v1/cases/{self.journey.case_id}/documents", headers=self.auth
            )
            _ok(docs)
            opinion = next(d for d in docs.json() if d["kind"] == "opinion")
            link = await self.records.post(
                f"/v1/cases/{self.journey.case_id}/documents/{opinion['id']}/link",
                headers=self.auth,
            )
            _ok(link)
            async with httpx.AsyncClient(timeout=60) as plain:
                content = await plain.get(link.json()["url"])
                _ok(content)
        return len(content.content)

    async def choose_center(self, timeout: float) -> dict[str, Any]:
        """The patient chooses among the proposed centers: the first-ranked."""
        deadline = time.monotonic() + timeout
        while not (proposal := (await self.read_case()).get("center_proposal")):
            if time.monotonic() > deadline:
                raise TimeoutError("the case never showed the proposed centers")
            await asyncio.sleep(0.3)
        chosen = proposal["proposals"][0]["center_code"]
        with self.step("choose the center"):
            _ok(
                await self.intake.post(
                    f"/v1/cases/{self.journey.case_id}/center-choice",
                    json={"center_code": chosen},
                    headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
                )
            )
        return {**proposal, "chosen": chosen}

    async def book_meeting(self, timeout: float) -> dict[str, Any]:
        """Book the first time the center offered, in the patient's time zone (Kyiv)."""
        deadline = time.monotonic() + timeout
        while not (meetings := (await self.read_case())["meetings"]):
            if time.monotonic() > deadline:
                raise TimeoutError("the case never showed the meeting's times")
            await asyncio.sleep(0.3)
        meeting: dict[str, Any] = meetings[0]
        with self.step("book the consultation meeting"):
            _ok(
                await self.intake.post(
                    f"/v1/cases/{self.journey.case_id}/meetings/{meeting['id']}/booking",
                    json={"slot_id": meeting["slots"][0]["slot_id"], "time_zone": "Europe/Kyiv"},
                    headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
                )
            )
        while (meeting := (await self.read_case())["meetings"][0])["status"] != "booked":
            if time.monotonic() > deadline:
                raise TimeoutError("the meeting was never confirmed")
            await asyncio.sleep(0.3)
        return meeting

    async def fhir(self) -> dict[str, Any]:
        with self.step("export the case as FHIR"):
            response = await self.intake.get(
                f"/v1/cases/{self.journey.case_id}/fhir", headers=self.auth
            )
            _ok(response)
        bundle: dict[str, Any] = response.json()
        return bundle

    async def close(self) -> None:
        await self.intake.aclose()
        await self.records.aclose()


MEETING_PLACE = {
    "mode": "video",
    "join_url": "https://video.sample-centers.localhost/room/tumour-board",
    "time_zone": "Europe/Berlin",
    "language": "en",
}


async def offer_meeting(platform: PlatformInfo, center: str, referral_id: str) -> None:
    """The center offers two times, tomorrow and the day after at 10:00 its time, one hour each
    (what a center's staff does in the console or its own system through the partner API)."""
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    today = datetime.now(berlin).date()
    slots = []
    for days in (1, 2):
        start = datetime.combine(today + timedelta(days=days), dt_time(10), tzinfo=berlin)
        slots.append(
            {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()}
        )
    key = platform.keys()["centers"][center]
    async with httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30) as partners:
        _ok(
            await partners.post(
                f"/v1/partner/referrals/{referral_id}/meetings",
                json={
                    "place": MEETING_PLACE,
                    "slots": slots,
                    "note": "Please prepare your questions; the meeting takes about an hour.",
                },
                headers={"X-Api-Key": key, "Idempotency-Key": f"demo-meeting-{referral_id}"},
            )
        )


def _decoded(part: Message) -> bytes:
    """A leaf part's content, its transfer encoding undone (b"" for none)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _ok(response: httpx.Response) -> None:
    if response.is_error:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} → {response.status_code}: "
            f"{response.text[:500]}"
        )


def start_sample_center(root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The sample center process (its log: services/sample-center.log); returns once it reads
    its inboxes."""
    log = (root / "services" / "sample-center.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.sample_center", "--root", str(root), "--decline-first"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **env},
    )
    log.close()
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("action") == "ready":
            return proc
    raise RuntimeError("the sample center process exited before reading its inboxes")


def read_emails(mail_dir: str, since: float, case_id: str | None = None) -> list[Email]:
    """The patient's e-mails the mail sink received after `since` (a wall-clock time); only
    those about `case_id` (its reference in the subject) when given: the same sample patient
    may have other cases in flight."""
    from referrals_notifications.messages import case_reference

    reference = case_reference(uuid.UUID(case_id)) if case_id else ""
    found = []
    for stored in list_messages(Path(mail_dir)):
        received = stored.received_at.timestamp()
        if received < since or PATIENT_EMAIL not in stored.recipients:
            continue
        if reference not in stored.subject:
            continue
        message = BytesParser(policy=policy.default).parsebytes(stored.path.read_bytes())
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        attached = [
            (a.get_filename() or "", a.get_content_type(), _decoded(a))
            for a in message.iter_attachments()
        ]
        found.append(
            Email(
                received - since,
                PATIENT_EMAIL,
                str(message["Subject"]),
                body,
                attachments=attached,
            )
        )
    return found


async def run_journey(
    stack: StackInfo,
    platform: PlatformInfo,
    *,
    console: Console | None = None,
    timeout: float = 180.0,
    expected_emails: int = 10,
) -> Journey:
    """Play the journey on a running platform (see the module doc); returns what it saw."""
    from referrals_common.telemetry import configure_telemetry

    say = console.print if console else (lambda *a, **k: None)
    trace_env = trace_environment(platform.trace_viewer)
    os.environ.update(trace_env)
    provider = configure_telemetry("partner-front-end")
    journey = Journey(trace_viewer=platform.trace_viewer)
    wall_start = time.time()
    began = time.monotonic()
    centers = sorted(platform.keys()["centers"])
    watcher = EventWatcher(stack.kafka_bootstrap, centers, began)
    await watcher.start()
    center = start_sample_center(Path(platform.root), trace_env)
    front = FrontEnd(platform, journey, began)
    try:
        say(
            "[bold]1.[/] the front end opens a case for a patient in Kyiv who asks for an opinion "
            "in Germany"
        )
        case_id = await front.create_case(patient_chooses_center=True)
        watcher.follow(case_id)
        say(f"   case {case_id} (the patient asked to choose the center)")
        original = await front.upload(
            "upload the discharge summary (Ukrainian)",
            "discharge_summary",
            "discharge_summary_uk.pdf",
        )
        await front.upload(
            "upload the pathology report (English)", "pathology_report", "pathology_report_en.pdf"
        )
        await front.wait_documents(2, timeout)
        await front.submit()
        say("[bold]2.[/] submitted; translation reads the documents…")
        await watcher.wait_for(status_is("action_required"), timeout, "action_required")
        journey.translation_required = [
            e.data for e in watcher.seen if e.type == "referrals.document.translation_required.v1"
        ]
        journey.next_step = (await front.read_case()).get("next_step")
        for required in journey.translation_required:
            say(
                f"   [yellow]translation required[/]: document {required['document_id']} is in "
                f"{_language(required['detected_language'])}; accepted for Germany: "
                + " or ".join(_language(code) for code in required["acceptable_languages"])
            )
        say(f"   the patient is told: [italic]{journey.next_step}[/]")
        say("[bold]3.[/] the front end uploads the German translation of the discharge summary")
        await front.upload(
            "upload the German translation", "translation", "discharge_summary_de.pdf", original
        )
        await watcher.wait_for(status_is("choosing_center"), timeout, "the centers proposed")
        journey.proposal = await front.choose_center(timeout)
        say("   ready; partners proposes the best centers, and the patient chooses:")
        for proposed in journey.proposal["proposals"]:
            price = proposed.get("price")
            say(
                f"   {proposed['rank']}. {proposed.get('center_name') or proposed['center_code']}"
                f" ({proposed['center_country']}): opinion in {proposed['turnaround_days']} days"
                + (f", {price['amount']:.0f} {price['currency']}" if price else "")
                + (
                    "  [bold]← chosen[/]"
                    if proposed["center_code"] == journey.proposal["chosen"]
                    else ""
                )
            )
        await watcher.wait_for(status_is("referred"), timeout, "the case to be referred")
        say("   referred; the sample center answers…")
        await watcher.wait_for(status_is("opinion_delivered"), timeout, "the opinion")
        say("[bold]4.[/] the opinion is delivered; the patient reads it")
        journey.opinion_bytes = await front.read_opinion()
        opinion = next(
            e for e in watcher.seen if e.type == "referrals.referral.opinion_delivered.v1"
        )
        say("[bold]5.[/] the center offers times for the consultation meeting; the patient books")
        with front.step("offer times for the consultation meeting", actor="sample center"):
            await offer_meeting(platform, opinion.data["center_code"], opinion.data["referral_id"])
        journey.meeting = await front.book_meeting(timeout)
        say(
            f"   booked for {journey.meeting['booked_slot']['starts_at']} (the confirmation "
            "carries a calendar file)"
        )
        journey.fhir = await front.fhir()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            journey.emails = read_emails(stack.mail_dir, wall_start, journey.case_id)
            if len(journey.emails) >= expected_emails:
                break
            await asyncio.sleep(0.25)
        # Each e-mail is recorded as `notification.sent`, through the sender's outbox: wait
        # for those events too, then a moment more, so anything late or doubled is seen.
        journey.emails = read_emails(stack.mail_dir, wall_start, journey.case_id)
        with contextlib.suppress(TimeoutError):
            await watcher.wait_for(
                lambda _: _count(watcher, "referrals.notification.sent.v1") >= len(journey.emails),
                30,
                "notification.sent for every e-mail",
            )
        await asyncio.sleep(1.0)
        journey.emails = read_emails(stack.mail_dir, wall_start, journey.case_id)
        journey.seconds = time.monotonic() - began
    finally:
        center.terminate()
        out, _ = center.communicate(timeout=30)
        journey.center_actions = [json.loads(line) for line in out.splitlines() if line.strip()]
        await front.close()
        await watcher.stop()
        journey.events = list(watcher.seen)
        provider.force_flush()
    for action in journey.center_actions:
        if action.get("trace_id"):
            journey.steps.append(
                Step(
                    f"center {action['center']}: {action['action']}",
                    "sample center",
                    action["trace_id"],
                    0.0,
                    0.0,
                )
            )
    return journey


def show(journey: Journey, console: Console) -> None:
    """The timeline, the steps with their traces, and the patient's e-mails."""
    table = Table(title=f"Timeline of case {journey.case_id}", show_lines=False)
    table.add_column("+s", justify="right")
    table.add_column("what")
    table.add_column("topic / actor")
    table.add_column("trace")
    rows: list[tuple[float, str, str, str]] = []
    for step in journey.steps:
        if step.actor == "front end":
            rows.append(
                (
                    step.at,
                    f"[bold]{step.name}[/] ({step.seconds * 1000:.0f} ms)",
                    step.actor,
                    step.trace_id[:12],
                )
            )
    for event in journey.events:
        label = event.type.removeprefix("referrals.").removesuffix(".v1")
        if label == "case.status_changed":
            label += f" → [bold]{event.data['to_status']}[/]"
        rows.append((event.at, label, event.topic.removeprefix("referrals."), event.trace_id[:12]))
    for at, what, where, trace_id in sorted(rows, key=lambda r: r[0]):
        table.add_row(f"{at:7.2f}", what, where, trace_id)
    console.print(table)
    console.print(f"[bold]journey[/]: {journey.seconds:.1f} s, {len(journey.events)} events")
    console.print(
        "[bold]steps and their traces[/]"
        + (
            f" (open them in the trace viewer: {journey.trace_viewer}/zipkin/)"
            if journey.trace_viewer
            else ""
        )
    )
    for step in journey.steps:
        link = (
            f"{journey.trace_viewer}/zipkin/traces/{step.trace_id}"
            if journey.trace_viewer
            else step.trace_id
        )
        console.print(f"  {step.actor:>13}: {step.name:<48} {link}", highlight=False)
    console.print(f"[bold]e-mails to the patient[/] ({len(journey.emails)}):")
    for email in journey.emails:
        lines = [line.strip() for line in email.body.splitlines() if line.strip()]
        gist = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        console.print(
            f"  ✉ +{email.at:5.1f} s  {email.subject}\n     {gist[:110]}", highlight=False
        )
    resources_in_bundle = [e["resource"]["resourceType"] for e in journey.fhir.get("entry", [])]
    console.print(f"[bold]FHIR export[/]: Bundle of {', '.join(resources_in_bundle)}")
