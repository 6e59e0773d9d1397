"""The case after it was sent: its status in words with the one next step, the timeline (newest
first; with JavaScript, live: pushed by Server-Sent Events as intake's stream of the case
tells of each change), the documents' verdicts, why this center; the answer to a center's
request for information; withdrawing the case."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from referrals_web.i18n import N_
from referrals_web.pages.case import documents_view, flash, take_flash
from referrals_web.pages.common import (
    case_id,
    case_token,
    checked_form,
    ensure_session,
    open_request,
    read_case,
    redirect,
    render,
    runtime,
    text,
    with_case,
)
from referrals_web.pages.meetings import open_meetings, patient_zone
from referrals_web.pages.opinion import has_opinion
from referrals_web.platform import PlatformProblem, PlatformUnavailable
from referrals_web.rendering import Form
from referrals_web.vocabulary import SHIPMENT_MATERIALS, WITHDRAWAL_REASONS, case_reference

router = APIRouter()

OPEN_STATUSES = frozenset(
    {
        "draft",
        "submitted",
        "action_required",
        "ready",
        "referred",
        "accepted",
        "information_requested",
    }
)
ROUTED_STATUSES = frozenset(
    {
        "referred",
        "accepted",
        "information_requested",
        "choosing_center",
        "opinion_delivered",
        "unroutable",
    }
)


async def _live(request: Request) -> dict[str, Any]:
    """What the status page shows: the case, its timeline (newest first), where it went."""
    platform = runtime(request).platform
    case = await read_case(request)
    timeline = await with_case(request, platform.timeline)
    timeline = sorted(timeline, key=lambda e: e["at"], reverse=True)
    routing = None
    if case["status"] in ROUTED_STATUSES:
        try:
            routing = await with_case(request, platform.routing)
        except (PlatformProblem, PlatformUnavailable):
            routing = None  # the explanation is a help; the case's status comes from intake
    latest = timeline[0]["reason_code"] if timeline else None
    return {
        "case": case,
        "reference": case_reference(case["id"]),
        "timeline": timeline,
        "routing": routing,
        "next_code": "draft" if case["status"] == "draft" else latest,
        "info_request": open_request(case),
        "can_withdraw": case["status"] in OPEN_STATUSES,
    }


@router.get("/case/status")
async def status(request: Request) -> Response:
    live = await _live(request)
    case = live["case"]
    rows = [r for r in await documents_view(request, case) if r["kind"] != "opinion"]
    return render(
        request,
        "status/status.html",
        documents=rows,
        flash=take_flash(request),
        meetings=open_meetings(case),
        zone=patient_zone(request),
        has_opinion=has_opinion(case),
        **live,
    )


@router.get("/case/status/events")
async def status_events(request: Request, seen: int = 0) -> Response:
    """The status page's live regions (Server-Sent Events): each time intake's stream of the
    case says its timeline grew, the status and the timeline rendered anew, as the page would
    show them. `seen` is how many entries the page already showed (those are not pushed); a
    reconnecting browser sends the last event's id instead. The stream lasts as long as intake's
    (until the case token expires); the browser then reconnects and a fresh token is used."""
    the_case = case_id(request)
    await case_token(request)  # no case in the session: the sign-in page, not a stream
    return EventSourceResponse(
        _pushes(request, the_case, request.headers.get("last-event-id"), max(seen, 0)),
        ping=LIVE_PING_SECONDS,
    )


LIVE_PING_SECONDS = 20
LIVE_RETRY_MS = 5000
"""How long the browser waits before reconnecting to a stream that ended."""


async def _pushes(
    request: Request, the_case: UUID, last_id: str | None, skip: int
) -> AsyncIterator[ServerSentEvent]:
    platform = runtime(request).platform
    skip = 0 if last_id else skip
    for attempt in range(2):  # once more with a renewed token if intake refuses this one
        token = await case_token(request, renew=attempt > 0)
        session = ensure_session(request)
        if session.changed:  # the answer's headers are gone: keep the new token by hand
            await runtime(request).sessions.save(session)
        try:
            async with platform.case_events(the_case, token, last_id) as events:
                async for event in events:
                    last_id = event.id or last_id
                    if skip:
                        skip -= 1
                        continue
                    live = await _live(request)
                    status = bytes(render(request, "status/_status.html", **live).body).decode()
                    timeline = bytes(render(request, "status/_timeline.html", **live).body).decode()
                    yield ServerSentEvent(data=status, event="status", retry=LIVE_RETRY_MS)
                    yield ServerSentEvent(data=timeline, event="timeline", id=last_id)
            return
        except PlatformProblem as problem:
            if problem.status != 401:
                return
        except PlatformUnavailable:
            return  # the browser reconnects after LIVE_RETRY_MS


# --------------------------------------------------------------- the center's request


def _answer_key(request_id: str) -> str:
    return f"answer:{request_id}"


def _shipments_key(request_id: str) -> str:
    return f"shipments:{request_id}"


async def _information_page(
    request: Request, case: dict[str, Any], form: Form | None = None, *, status_code: int = 200
) -> HTMLResponse:
    info = open_request(case)
    session = ensure_session(request)
    rows = await documents_view(request, case)
    if info is None:
        return render(request, "status/no_request.html", case=case, status_code=status_code)
    requested_at = datetime.fromisoformat(str(info["requested_at"]))
    added = [
        r
        for r in rows
        if r.get("uploaded_at") and datetime.fromisoformat(str(r["uploaded_at"])) >= requested_at
    ]
    form = form or Form(values={"answer": session.data.get(_answer_key(info["id"]), "")})
    return render(
        request,
        "status/information.html",
        status_code=status_code,
        case=case,
        info=info,
        form=form,
        added=added,
        shipments=session.data.get(_shipments_key(info["id"]), []),
        checklist_asked=any(
            i["kind"] in ("family_history", "medications", "allergies") for i in info["items"]
        ),
        flash=take_flash(request),
    )


@router.get("/case/information")
async def information(request: Request) -> Response:
    case = await read_case(request)
    return await _information_page(request, case)


@router.post("/case/information")
async def answer_information(request: Request) -> Response:
    """Keep the written answer, then go where the patient chose, or send everything."""
    posted = await checked_form(request)
    case = await read_case(request)
    info = open_request(case)
    if info is None:
        return redirect("/case/status")
    session = ensure_session(request)
    words = text(posted, "answer", 4100)
    session.set(_answer_key(info["id"]), words)
    action = text(posted, "action", 40)
    shipments = list(session.data.get(_shipments_key(info["id"]), []))
    if action == "documents":
        return redirect("/case/documents?for=information")
    if action == "shipment":
        return redirect("/case/information/shipment")
    if action == "checklist":
        return redirect("/case/preparation?for=information")
    if action.startswith("remove-"):
        index = action.removeprefix("remove-")
        if index.isdigit() and int(index) < len(shipments):
            shipments.pop(int(index))
            session.set(_shipments_key(info["id"]), shipments)
        return redirect("/case/information")
    form = Form(values={"answer": words})
    if len(words) > 4000:
        form.error("answer", N_("Your answer can be at most 4000 characters long"))
        return await _information_page(request, case, form, status_code=422)
    key_name = f"answer_key:{info['id']}"
    key = session.data.get(key_name) or str(uuid4())
    session.set(key_name, key)
    body = {"answer": words or None, "shipments": shipments}
    platform = runtime(request).platform
    request_id = UUID(info["id"])
    try:
        await with_case(
            request,
            lambda case_id, token: platform.answer_request(case_id, token, request_id, body, key),
        )
    except PlatformProblem as problem:
        _answer_refused(form, problem)
        return await _information_page(request, case, form, status_code=problem.status)
    for name in (key_name, _answer_key(info["id"]), _shipments_key(info["id"])):
        session.pop(name)
    flash(request, N_("Your answer was sent to the center."))
    return redirect("/case/status")


def _answer_refused(form: Form, problem: PlatformProblem) -> None:
    if problem.slug == "documents-being-checked":
        form.error(
            "answer",
            N_(
                "Your documents are still being checked. Try again in a moment: nothing you "
                "wrote is lost."
            ),
            anchor="send",
        )
    elif problem.slug == "documents-not-accepted":
        form.error(
            "answer",
            N_(
                "A document of your answer was not accepted. See what to do on the documents "
                "page, then send again."
            ),
            anchor="/case/documents?for=information",
        )
    elif problem.slug == "request-closed":
        form.error(
            "answer",
            N_("This request can no longer be answered: it was closed or its due date has passed."),
        )
    elif problem.slug == "empty-answer":
        form.error(
            "answer", N_("Write an answer, add a document or record a shipment before sending")
        )
    else:
        found = problem.fields(
            {"/answer": "answer", "/shipments": "answer", "/document_ids": "answer"}
        )
        for error in found.values():
            form.platform_error("answer", error.message)
        if not found:
            form.platform_error("answer", problem.detail or problem.title)


# ------------------------------------------------------------------------- shipments

_TRACKING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{3,39}$")


@router.get("/case/information/shipment")
async def shipment(request: Request) -> Response:
    case = await read_case(request)
    if open_request(case) is None:
        return redirect("/case/status")
    return render(request, "status/shipment.html", form=Form(values={"material": ""}))


@router.post("/case/information/shipment")
async def record_shipment(request: Request) -> Response:
    posted = await checked_form(request)
    case = await read_case(request)
    info = open_request(case)
    if info is None:
        return redirect("/case/status")
    names = ("material", "carrier", "tracking_number", "sent_day", "sent_month", "sent_year")
    form = Form(
        values={n: text(posted, n, 100) for n in names},
        anchors={"sent_on": "sent_day", "material": "material-0"},
    )
    v = form.values
    if v["material"] not in SHIPMENT_MATERIALS:
        form.error("material", N_("Choose what you sent"))
    if not 2 <= len(v["carrier"]) <= 80:
        form.error("carrier", N_("Enter the courier's name, for example DHL Express"))
    if not _TRACKING.match(v["tracking_number"]):
        form.error(
            "tracking_number",
            N_(
                "Enter the tracking number as the courier gave it: letters, numbers, spaces "
                "and dashes"
            ),
        )
    sent_on: date | None = None
    try:
        sent_on = date(int(v["sent_year"]), int(v["sent_month"]), int(v["sent_day"]))
    except ValueError:
        form.error("sent_on", N_("Enter the day you sent it, as a real date"))
    if sent_on is not None and sent_on > datetime.now(UTC).date() + timedelta(days=1):
        form.error("sent_on", N_("The day you sent it cannot be in the future"))
    if not form.ok or sent_on is None:
        return render(request, "status/shipment.html", form=form, status_code=422)
    session = ensure_session(request)
    shipments = list(session.data.get(_shipments_key(info["id"]), []))
    shipments.append(
        {
            "material": v["material"],
            "carrier": v["carrier"],
            "tracking_number": v["tracking_number"],
            "sent_on": sent_on.isoformat(),
        }
    )
    session.set(_shipments_key(info["id"]), shipments[:10])
    return redirect("/case/information")


# ---------------------------------------------------------------------------- withdraw


@router.get("/case/withdraw")
async def withdraw(request: Request) -> Response:
    case = await read_case(request)
    if case["status"] not in OPEN_STATUSES:
        return redirect("/case/status")
    return render(request, "status/withdraw.html", case=case, form=Form(values={"reason": ""}))


@router.post("/case/withdraw")
async def confirm_withdraw(request: Request) -> Response:
    posted = await checked_form(request)
    reason = text(posted, "reason", 40)
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.withdraw(
                case_id, token, reason if reason in WITHDRAWAL_REASONS else None
            ),
        )
    except PlatformProblem as problem:
        if problem.status != 409:
            raise
        case = await read_case(request)
        form = Form(values={"reason": reason})
        form.error("reason", N_("This case can no longer be withdrawn."), anchor="reason-0")
        return render(request, "status/withdraw.html", case=case, form=form, status_code=409)
    flash(request, N_("Your case was withdrawn. Nothing more will happen with it."))
    return redirect("/case/status")
