"""A steady flow of cases through the partner front end, politely retried through outages.

Each case, as a partner clinic's front end makes it: create (with an Idempotency-Key, so a
retried create is one case), the two consents, an English pathology report and a German
discharge summary (text-layer PDFs: no translation is needed for Germany), wait until intake
lists both documents (it learns of them from records' events), submit (with an Idempotency-Key).
A case is started every `interval` seconds by `Flow.run`, each in its own task, so a slow or
stuck case never slows the flow; every case is written down in the `Ledger` with its window (the
fault it ran under), what it reached and how often its calls were retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

import httpx

from devstack.demo import CASE, CONSENT_VERSION, sample
from devstack.platform import PlatformInfo

from .polite import Retries, call, expect

DOCUMENTS = (
    ("pathology_report", "pathology_report_en.pdf"),
    ("discharge_summary", "discharge_summary_de.pdf"),
)
CASE_DEADLINE = 300.0
"""Seconds the front end keeps trying to get one case submitted."""


@dataclass
class CaseRecord:
    window: str
    number: int
    started_at: float
    """time.monotonic() when the front end began the case."""
    started_wall: float = field(default_factory=time.time)
    case_id: str = ""
    submitted: bool = False
    seconds_to_submit: float = 0.0
    error: str = ""
    retries: Retries = field(default_factory=Retries)


@dataclass
class Ledger:
    cases: list[CaseRecord] = field(default_factory=list)

    def of(self, window: str) -> list[CaseRecord]:
        return [c for c in self.cases if c.window == window]


class FrontEnd:
    """The partner clinic's front end: its API key, and one HTTP client per service."""

    def __init__(self, platform: PlatformInfo) -> None:
        self.api_key = str(platform.keys()["front_end"])
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self.intake = httpx.AsyncClient(base_url=platform.apis["intake"], timeout=30, limits=limits)
        self.records = httpx.AsyncClient(
            base_url=platform.apis["records"], timeout=60, limits=limits
        )
        self.documents = {name: sample(name) for _, name in DOCUMENTS}

    async def close(self) -> None:
        await self.intake.aclose()
        await self.records.aclose()

    async def make_case(self, record: CaseRecord) -> None:
        """Create, consent, upload, wait for intake to list the documents, submit."""
        deadline = record.started_at + CASE_DEADLINE
        retries = record.retries

        async def polite(client: httpx.AsyncClient, method: str, url: str, **kw: object):  # type: ignore[no-untyped-def]
            label = f"{method} {url.split('/')[-1] if record.case_id else url}"
            return await call(
                client, method, url, retries=retries, deadline=deadline, label=label, **kw
            )

        created = expect(
            await polite(
                self.intake,
                "POST",
                "/v1/cases",
                json=CASE,
                headers={"X-Api-Key": self.api_key, "Idempotency-Key": str(uuid.uuid4())},
            ),
            200,
            201,
        ).json()
        record.case_id = created["case"]["id"]
        auth = {"Authorization": f"Bearer {created['access_token']}"}
        for kind in ("processing", "cross_border"):
            expect(
                await polite(
                    self.intake,
                    "PUT",
                    f"/v1/cases/{record.case_id}/consents/{kind}",
                    json={"version": CONSENT_VERSION},
                    headers=auth,
                ),
                200,
            )
        for kind, name in DOCUMENTS:
            expect(
                await polite(
                    self.records,
                    "POST",
                    f"/v1/cases/{record.case_id}/documents",
                    data={"kind": kind},
                    files={"file": (name, self.documents[name], "application/pdf")},
                    headers=auth,
                ),
                200,
                201,
            )
        while True:
            case = expect(
                await polite(self.intake, "GET", f"/v1/cases/{record.case_id}", headers=auth), 200
            ).json()
            if len(case["documents"]) >= len(DOCUMENTS):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"intake lists {len(case['documents'])} documents")
            await asyncio.sleep(0.3)
        expect(
            await polite(
                self.intake,
                "POST",
                f"/v1/cases/{record.case_id}/submit",
                headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
            ),
            200,
        )
        record.submitted = True
        record.seconds_to_submit = time.monotonic() - record.started_at


class Flow:
    """Starts a case every `interval` seconds until stopped; `drain()` waits for the last."""

    def __init__(self, front: FrontEnd, ledger: Ledger) -> None:
        self.front = front
        self.ledger = ledger
        self.tasks: set[asyncio.Task[None]] = set()
        self.window = ""
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, window: str, interval: float) -> None:
        self.window = window
        self._stop.clear()
        self._runner = asyncio.create_task(self._run(interval))

    def move_to(self, window: str) -> None:
        """Cases started from now on belong to `window` (the next fault)."""
        self.window = window

    async def stop(self) -> None:
        """Stop starting cases and wait until every started case is submitted or given up."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        if self.tasks:
            await asyncio.wait(self.tasks)

    async def _run(self, interval: float) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            record = CaseRecord(self.window, len(self.ledger.cases) + 1, time.monotonic())
            self.ledger.cases.append(record)
            task = asyncio.create_task(self._one(record))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))

    async def _one(self, record: CaseRecord) -> None:
        try:
            await self.front.make_case(record)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
