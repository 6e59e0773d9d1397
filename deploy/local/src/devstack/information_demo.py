"""The longer journey: the center's council asks for more before it gives its opinion (seed 000).

`devstack demo --information` (and `make demo-information`) plays the partner front end and a
cancer center's staff over the public APIs only, on the running platform:

1. the front end opens a case (an English pathology report; an opinion from Germany) and submits;
2. the center that is offered the case accepts it, then asks for more: the biopsy material for a
   re-review (slides and a block), a HER2 re-review report, and the family history, with a due
   date; the case waits (`information_requested`) and the patient is told what, why, by when;
3. the front end uploads the HER2 re-review report, completes the family history, records the
   courier shipment of the slides and block, and sends the answer to the center;
4. the same center gets the case back, reads the new report, confirms it received the slides,
   and delivers its written opinion; the patient reads it.

The patient's e-mails come from the local mail sink and the FHIR export shows the request and
the answer. The building blocks (`CenterDesk`, `ask`, `answer`) also play the end-to-end tests'
other journeys: a request nobody answers, and a center that asks twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console

from devstack.demo import (
    EventWatcher,
    FrontEnd,
    Journey,
    _ok,
    read_emails,
    sample,
    status_is,
)
from devstack.platform import PlatformInfo, trace_environment
from devstack.sample_center import OPINION, polite_request
from devstack.stack import StackInfo

ASK = {
    "reason": "Our tumour board wants to re-review the biopsy and re-test HER2 on the original "
    "block before it answers the question about breast-conserving surgery.",
    "items": [
        {
            "kind": "pathology_review",
            "detail": "The stained slides and one paraffin block of the breast core biopsy",
        },
        {"kind": "pathology_report", "detail": "A HER2 immunohistochemistry re-review report"},
        {"kind": "family_history", "detail": "Breast or ovarian cancer in blood relatives"},
    ],
}
REVIEWED_OUTCOME = {
    # After the re-review: HER2-low, so the board proposes another plan and mentions a trial.
    "diagnosis": "refined",
    "icd10": "C50.4",
    "stage": "confirmed",
    "treatment": "alternative_proposed",
    "additional_tests": ["HER2 in situ hybridisation on block A2"],
    "clinical_trials": True,
    "clinical_trials_detail": "A HER2-low antibody-drug conjugate trial is recruiting.",
}
SHIPMENT = {
    "material": "slides_and_blocks",
    "carrier": "DHL Express",
    "tracking_number": "JD014600006281",
}


@dataclass
class InformationJourney(Journey):
    center: str = ""
    referral_id: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    case_view: dict[str, Any] = field(default_factory=dict)
    center_view: dict[str, Any] = field(default_factory=dict)
    extra_bytes: int = 0


class CenterDesk:
    """A cancer center's staff at its own system, calling the partner API and records with the
    center's key (every sample center's key: the desk acts as whichever center holds the case)."""

    def __init__(self, platform: PlatformInfo) -> None:
        self.keys: dict[str, str] = platform.keys()["centers"]
        self.partners = httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30)
        self.records = httpx.AsyncClient(base_url=platform.apis["records"], timeout=60)
        self.downloads = httpx.AsyncClient(timeout=60)

    async def close(self) -> None:
        for client in (self.partners, self.records, self.downloads):
            await client.aclose()

    async def call(
        self, center: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> Any:
        kw["headers"] = {"X-Api-Key": self.keys[center]}
        response = await polite_request(client, method, url, log={"center": center}, **kw)
        _ok(response)
        return response.json()

    async def call_object(
        self, center: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> dict[str, Any]:
        """`call` of an endpoint that answers one JSON object."""
        answer: dict[str, Any] = await self.call(center, client, method, url, **kw)
        return answer

    async def offer(
        self, case_id: str, timeout: float, *, not_from: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(center, referral) of the open offer of `case_id`, from whichever center holds it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for center in self.keys:
                if center == not_from:
                    continue
                listed = await self.call(
                    center, self.partners, "GET", "/v1/partner/referrals?status=offered"
                )
                for referral in listed:
                    if str(referral["case_id"]) == case_id:
                        return center, referral
            await asyncio.sleep(0.3)
        raise TimeoutError(f"no center was offered case {case_id} in {timeout:.0f} s")

    async def referral(self, center: str, referral_id: str) -> dict[str, Any]:
        return await self.call_object(
            center, self.partners, "GET", f"/v1/partner/referrals/{referral_id}"
        )

    async def wait(
        self,
        center: str,
        referral_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = await self.referral(center, referral_id)
            if predicate(view):
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; the referral: {view}")
            await asyncio.sleep(0.3)

    async def accept(self, center: str, referral_id: str) -> dict[str, Any]:
        due = datetime.now(UTC) + timedelta(days=10)
        return await self.call_object(
            center,
            self.partners,
            "POST",
            f"/v1/partner/referrals/{referral_id}/accept",
            json={"expected_opinion_at": due.isoformat()},
        )

    async def ask(
        self, center: str, referral_id: str, due_at: datetime, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Ask the patient for more; returns the request as the center sees it."""
        view = await self.call_object(
            center,
            self.partners,
            "POST",
            f"/v1/partner/referrals/{referral_id}/information-requests",
            json={**(body or ASK), "due_at": due_at.isoformat()},
        )
        request: dict[str, Any] = view["information_requests"][-1]
        return request

    async def read_document(self, center: str, referral_id: str, document_id: str) -> int:
        link = await self.call(
            center, self.records, "GET", f"/v1/referrals/{referral_id}/documents/{document_id}"
        )
        content = await self.downloads.get(link["url"])
        _ok(content)
        return len(content.content)

    async def confirm(self, center: str, referral_id: str, shipment_id: str) -> dict[str, Any]:
        return await self.call_object(
            center,
            self.partners,
            "POST",
            f"/v1/partner/referrals/{referral_id}/shipments/{shipment_id}/receipt",
        )

    async def deliver_opinion(
        self, center: str, referral_id: str, outcome: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        stored = await self.call(
            center,
            self.records,
            "POST",
            f"/v1/referrals/{referral_id}/opinion",
            files={"file": ("second-opinion.pdf", sample(OPINION), "application/pdf")},
        )
        return await self.call_object(
            center,
            self.partners,
            "POST",
            f"/v1/partner/referrals/{referral_id}/opinion",
            json={"document_id": stored["id"], "outcome": outcome or REVIEWED_OUTCOME},
        )


async def send_answer(
    front: FrontEnd, request_id: str, body: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """ "Send to the center", retried while a document is still being checked (409 with
    Retry-After), as a front end would."""
    deadline = time.monotonic() + timeout
    with front.step("send the answer to the center"):
        while True:
            response = await front.intake.post(
                f"/v1/cases/{front.journey.case_id}/information-requests/{request_id}/answer",
                json=body,
                headers={**front.auth, "Idempotency-Key": f"answer-{request_id}"},
            )
            if response.status_code != 409 or "retry-after" not in response.headers:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(float(response.headers["retry-after"]))
        _ok(response)
    answer: dict[str, Any] = response.json()
    return answer


async def wait_case(
    front: FrontEnd, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = await front.read_case()
        if predicate(view):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}; case is {view['status']}")
        await asyncio.sleep(0.3)


async def open_and_submit(front: FrontEnd, timeout: float) -> str:
    """A case with one English pathology report (accepted for Germany), submitted."""
    case_id = await front.create_case()
    await front.upload(
        "upload the pathology report (English)", "pathology_report", "pathology_report_en.pdf"
    )
    await front.wait_documents(1, timeout)
    await front.submit()
    return case_id


@contextlib.asynccontextmanager
async def actors(
    stack: StackInfo, platform: PlatformInfo, journey: Journey
) -> AsyncIterator[tuple[FrontEnd, CenterDesk, EventWatcher]]:
    """The front end, the center desk and a watcher of the case's events, for one journey."""
    from referrals_common.telemetry import configure_telemetry

    os.environ.update(trace_environment(platform.trace_viewer))
    provider = configure_telemetry("partner-front-end")
    began = time.monotonic()
    centers = sorted(platform.keys()["centers"])
    watcher = EventWatcher(stack.kafka_bootstrap, centers, began)
    await watcher.start()
    front = FrontEnd(platform, journey, began)
    desk = CenterDesk(platform)
    try:
        yield front, desk, watcher
    finally:
        await front.close()
        await desk.close()
        await watcher.stop()
        journey.events = list(watcher.seen)
        journey.seconds = time.monotonic() - began
        provider.force_flush()


async def collect_emails(
    journey: Journey, mail_dir: str, since: float, expected: int, timeout: float = 60
) -> None:
    """The case's e-mails (by its reference in the subject), waiting for `expected` of them."""
    deadline = time.monotonic() + timeout
    while True:
        journey.emails = read_emails(mail_dir, since, journey.case_id)
        if len(journey.emails) >= expected or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.25)


async def run_information_journey(
    stack: StackInfo,
    platform: PlatformInfo,
    *,
    console: Console | None = None,
    timeout: float = 180.0,
    expected_emails: int = 7,
) -> InformationJourney:
    """Play the longer journey (see the module doc); returns what it saw."""
    say = console.print if console else (lambda *a, **k: None)
    journey = InformationJourney(trace_viewer=platform.trace_viewer)
    wall_start = time.time()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        say("[bold]1.[/] the front end opens a case (opinion from Germany) and submits it")
        case_id = await open_and_submit(front, timeout)
        watcher.follow(case_id)
        say(f"   case {case_id}")
        center, offer = await desk.offer(case_id, timeout)
        journey.center, journey.referral_id = center, str(offer["id"])
        say(f"[bold]2.[/] cancer center [bold]{center}[/] accepts, then asks for more")
        await desk.accept(center, journey.referral_id)
        request = await desk.ask(
            center, journey.referral_id, datetime.now(UTC) + timedelta(days=14)
        )
        view = await wait_case(
            front,
            lambda v: v["status"] == "information_requested",
            timeout,
            "the case to wait for information",
        )
        shown = view["information_requests"][-1]
        say(f"   the patient reads: [italic]{shown['reason']}[/]")
        for item in shown["items"]:
            say(f"     • {item['kind'].replace('_', ' ')}: {item['detail']}")
        say(f"   due by {shown['due_at']}; still missing: {view['still_missing']}")
        say(
            "[bold]3.[/] the front end uploads the HER2 re-review, the family history, the shipment"
        )
        await front.upload(
            "upload the HER2 re-review report", "pathology_report", "her2_review_en.pdf"
        )
        await front.wait_documents(2, timeout)
        with front.step("complete the family history"):
            _ok(
                await front.intake.put(
                    f"/v1/cases/{case_id}/preparation",
                    json={"family_history": "Mother: breast cancer at 52. No ovarian cancer."},
                    headers=front.auth,
                )
            )
        answered = await send_answer(
            front,
            str(request["id"]),
            {
                "answer": "The slides and block A2 were sent today by courier.",
                "shipments": [{**SHIPMENT, "sent_on": datetime.now(UTC).date().isoformat()}],
            },
            timeout,
        )
        say(f"   sent; the case is [bold]{answered['status']}[/] again")
        say("[bold]4.[/] the same center reads the answer, confirms the slides, gives its opinion")
        back = await desk.wait(
            center,
            journey.referral_id,
            lambda v: (
                v["status"] == "accepted" and v["information_requests"][-1]["status"] == "answered"
            ),
            timeout,
            "the answer to reach the center",
        )
        answer = back["information_requests"][-1]
        for document_id in answer["new_document_ids"]:
            journey.extra_bytes += await desk.read_document(
                center, journey.referral_id, str(document_id)
            )
        await desk.confirm(center, journey.referral_id, str(answer["shipments"][0]["id"]))
        journey.center_view = await desk.deliver_opinion(center, journey.referral_id)
        await watcher.wait_for(status_is("opinion_delivered"), timeout, "the opinion")
        journey.opinion_bytes = await front.read_opinion()
        journey.case_view = await front.read_case()
        journey.requests = journey.case_view["information_requests"]
        journey.fhir = await front.fhir()
        await collect_emails(journey, stack.mail_dir, wall_start, expected_emails)
        await asyncio.sleep(1.0)
        await collect_emails(journey, stack.mail_dir, wall_start, expected_emails, timeout=0)
    return journey


def show_information(journey: InformationJourney, console: Console) -> None:
    from devstack.demo import show

    show(journey, console)
    for request in journey.requests:
        shipments = ", ".join(
            f"{s['carrier']} {s['tracking_number']} (received {s['received_at'] or 'not yet'})"
            for s in request["shipments"]
        )
        console.print(
            f"[bold]request[/] {request['id']}: {request['status']}, answered "
            f"{request['answered_at']}; documents {len(request['document_ids'])}; "
            f"shipments: {shipments or 'none'}"
        )


__all__ = [
    "ASK",
    "REVIEWED_OUTCOME",
    "CenterDesk",
    "InformationJourney",
    "actors",
    "collect_emails",
    "open_and_submit",
    "run_information_journey",
    "send_answer",
    "show_information",
    "wait_case",
]
