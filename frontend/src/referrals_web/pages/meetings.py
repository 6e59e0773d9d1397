"""The consultation meeting at which the center's doctors explain their opinion: the times the
center offers, shown on the patient's own clock (the browser's time zone, which a small script
puts in the form and the address; Kyiv's without JavaScript) and on the center's; booking one,
moving to another, and cancelling with a reason chosen from a list (the center is told the
reason, never words).

A meeting that is not on the session's case is not shown, nor said to exist (404).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from referrals_web.i18n import KYIV, N_, known_zone
from referrals_web.pages.case import flash, take_flash
from referrals_web.pages.common import (
    checked_form,
    ensure_session,
    idempotency_key,
    read_case,
    redirect,
    render,
    runtime,
    text,
    with_case,
)
from referrals_web.platform import PlatformProblem
from referrals_web.rendering import Form
from referrals_web.vocabulary import MEETING_CANCEL_REASONS

router = APIRouter()

TIME_ZONE = "time_zone"
"""Session data: the patient's time zone, as their browser said it."""
DEFAULT_ZONE = str(KYIV.key)
OPEN = frozenset({"offered", "booking", "booked"})

CLOSED_MESSAGE = N_(
    "This meeting can no longer be changed: it took place, was missed or was cancelled."
)
NOT_OFFERED_MESSAGE = N_("That time is no longer offered. Choose another of the times below")


class MeetingNotFound(Exception):
    """The meeting is not on the session's case."""


def _meeting(case: dict[str, Any], meeting_id: UUID) -> dict[str, Any]:
    meeting: dict[str, Any]
    for meeting in case.get("meetings") or []:
        if meeting["id"] == str(meeting_id):
            return meeting
    raise MeetingNotFound(str(meeting_id))


def open_meetings(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The meetings the patient may still act on, oldest first."""
    return [m for m in case.get("meetings") or [] if m["status"] in OPEN]


def patient_zone(request: Request, meeting: dict[str, Any] | None = None) -> str:
    """The zone to show times in: the browser's (from the address, then as remembered), the one
    the meeting was booked in, or Kyiv's."""
    session = ensure_session(request)
    asked = known_zone(request.query_params.get("tz"))
    if asked is not None:
        if session.data.get(TIME_ZONE) != asked:
            session.set(TIME_ZONE, asked)
        return asked
    remembered = known_zone(session.data.get(TIME_ZONE))
    if remembered is not None:
        return remembered
    booked_in = known_zone((meeting or {}).get("patient_time_zone"))
    return booked_in or DEFAULT_ZONE


def _chosen(meeting: dict[str, Any]) -> str:
    if meeting.get("chosen_slot_id"):
        return str(meeting["chosen_slot_id"])
    booked = meeting.get("booked_slot") or {}
    return str(booked.get("slot_id") or "")


def _meeting_page(
    request: Request,
    meeting: dict[str, Any],
    form: Form | None = None,
    *,
    zone: str | None = None,
    status_code: int = 200,
    template: str = "meetings/meeting.html",
) -> HTMLResponse:
    zone = zone or patient_zone(request, meeting)
    form = form or Form(values={"slot_id": _chosen(meeting), TIME_ZONE: zone})
    form.anchors.setdefault("slot_id", "slot_id-0")
    return render(
        request,
        template,
        status_code=status_code,
        meeting=meeting,
        form=form,
        zone=zone,
        center_zone=meeting["place"]["time_zone"],
        flash=take_flash(request),
    )


async def _case_and_meeting(
    request: Request, meeting_id: UUID
) -> tuple[dict[str, Any], dict[str, Any]] | HTMLResponse:
    case = await read_case(request)
    try:
        return case, _meeting(case, meeting_id)
    except MeetingNotFound:
        return render(request, "errors/not_found.html", status_code=404)


@router.get("/case/meetings/{meeting_id}")
async def meeting(request: Request, meeting_id: UUID) -> Response:
    found = await _case_and_meeting(request, meeting_id)
    if isinstance(found, HTMLResponse):
        return found
    return _meeting_page(request, found[1])


@router.get("/case/meetings/{meeting_id}/live")
async def meeting_state(request: Request, meeting_id: UUID) -> Response:
    """The meeting's state alone, for htmx while a chosen time waits for the center's calendar."""
    found = await _case_and_meeting(request, meeting_id)
    if isinstance(found, HTMLResponse):
        return found
    return _meeting_page(request, found[1], template="meetings/_state.html")


@router.post("/case/meetings/{meeting_id}/booking")
async def book(request: Request, meeting_id: UUID) -> Response:
    """Book one of the offered times (or move to another), on the patient's clock."""
    posted = await checked_form(request)
    found = await _case_and_meeting(request, meeting_id)
    if isinstance(found, HTMLResponse):
        return found
    _, the_meeting = found
    slot = text(posted, "slot_id", 40)
    zone = known_zone(text(posted, TIME_ZONE, 64)) or patient_zone(request, the_meeting)
    ensure_session(request).set(TIME_ZONE, zone)
    form = Form(values={"slot_id": slot, TIME_ZONE: zone})
    offered = {str(s["slot_id"]) for s in the_meeting.get("slots") or []}
    if the_meeting["status"] not in OPEN:
        form.error("slot_id", CLOSED_MESSAGE)
    elif not slot:
        form.error("slot_id", N_("Choose a time for the meeting"))
    elif slot not in offered:
        form.error("slot_id", NOT_OFFERED_MESSAGE)
    if not form.ok:
        return _meeting_page(request, the_meeting, form, zone=zone, status_code=422)
    if slot == _chosen(the_meeting):  # sent again (a double click, the back button): done
        return redirect(f"/case/meetings/{meeting_id}")
    body = {"slot_id": slot, "time_zone": zone}
    # Moving back to a time booked before is a new request: the key names the time it leaves.
    key = idempotency_key(
        request, f"meeting_booking:{meeting_id}", {**body, "from": _chosen(the_meeting)}
    )
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.case_action(
                case_id, token, f"meetings/{meeting_id}/booking", body, key
            ),
        )
    except PlatformProblem as problem:
        if problem.status == 404:
            return render(request, "errors/not_found.html", status_code=404)
        _refused(form, problem)
        _, fresh = await _fresh(request, meeting_id, the_meeting)
        return _meeting_page(request, fresh, form, zone=zone, status_code=problem.status)
    flash(
        request,
        N_("Your time was sent to the center. We tell you as soon as its calendar confirms it."),
    )
    return redirect(f"/case/meetings/{meeting_id}")


async def _fresh(
    request: Request, meeting_id: UUID, known: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case and the meeting as they are now (after a refusal the meeting may have moved
    on); the one known before if it is gone."""
    case = await read_case(request)
    try:
        return case, _meeting(case, meeting_id)
    except MeetingNotFound:
        return case, known


def _refused(form: Form, problem: PlatformProblem, field: str = "slot_id") -> None:
    if problem.slug == "meeting-closed":
        form.error(field, CLOSED_MESSAGE)
    elif problem.slug == "slot-not-offered":
        form.error(field, NOT_OFFERED_MESSAGE)
    elif problem.status in (409, 422):
        found = problem.fields({"/slot_id": field, "/reason": field, "/time_zone": field})
        message = found[field].message if field in found else problem.detail or problem.title
        form.platform_error(field, message)
    else:
        raise problem


# ----------------------------------------------------------------------------- cancel


@router.get("/case/meetings/{meeting_id}/cancel")
async def cancel_page(request: Request, meeting_id: UUID) -> Response:
    found = await _case_and_meeting(request, meeting_id)
    if isinstance(found, HTMLResponse):
        return found
    _, the_meeting = found
    if the_meeting["status"] not in OPEN:
        return redirect(f"/case/meetings/{meeting_id}")
    form = Form(values={"reason": ""}, anchors={"reason": "reason-0"})
    return _meeting_page(request, the_meeting, form, template="meetings/cancel.html")


@router.post("/case/meetings/{meeting_id}/cancel")
async def cancel(request: Request, meeting_id: UUID) -> Response:
    posted = await checked_form(request)
    found = await _case_and_meeting(request, meeting_id)
    if isinstance(found, HTMLResponse):
        return found
    _, the_meeting = found
    reason = text(posted, "reason", 40)
    form = Form(values={"reason": reason}, anchors={"reason": "reason-0"})
    if reason not in MEETING_CANCEL_REASONS:
        form.error("reason", N_("Choose why you cancel the meeting"))
        return _meeting_page(
            request, the_meeting, form, template="meetings/cancel.html", status_code=422
        )
    body = {"reason": reason}
    key = idempotency_key(request, f"meeting_cancellation:{meeting_id}", body)
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.case_action(
                case_id, token, f"meetings/{meeting_id}/cancellation", body, key
            ),
        )
    except PlatformProblem as problem:
        if problem.status == 404:
            return render(request, "errors/not_found.html", status_code=404)
        _refused(form, problem, "reason")
        _, fresh = await _fresh(request, meeting_id, the_meeting)
        return _meeting_page(
            request, fresh, form, template="meetings/cancel.html", status_code=problem.status
        )
    flash(request, N_("The meeting was cancelled. We told the center."))
    return redirect(f"/case/meetings/{meeting_id}")
