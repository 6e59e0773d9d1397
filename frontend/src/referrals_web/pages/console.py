"""The center console: a cancer center's staff member does the center's whole job in the browser.

- the inbox (`/center`): offers waiting for an answer (soonest deadline first), accepted
  referrals (soonest opinion first), referrals waiting for the patient's information, follow-up
  questions to answer, and closed ones;
- a referral (`/center/referrals/{id}`): the case summary as partners shows it to the center
  (no contact data), its documents (viewed or downloaded through this server with the center's
  key; records audits each), its requests, shipments, follow-up questions, the opinion, who did
  what here, and the actions allowed in its state only;
- the actions, each a page that says what it will do and to whom it goes: accept (with the
  expected opinion date), decline (with a reason), ask for information (items, the center's
  words, why, by when), confirm a shipment's receipt, upload and deliver the written opinion
  with its structured outcome, answer a follow-up question, offer times for the consultation
  meeting at which the doctors explain the opinion, offer it new times, cancel it with the
  center's words, and record after its start whether it took place.

Every call goes with the staff member's center's key (`staff.CenterKeys`), never shown: partners
and records decide what the center may see, so another center's referral is a 404 here too. A
problem (RFC 9457) from the platform comes back on the same form, in the error summary and
beside its field, with what was typed kept. Each action is recorded with the staff member's
name (`console_actions`): partners' audit names only the center.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from referrals_common.telemetry import note_request_case
from referrals_web.i18n import N_
from referrals_web.models import utcnow
from referrals_web.pages.case import (
    RESUMABLE_FROM,
    UPLOAD_MESSAGES,
    json_refused,
    relay_upload,
    script_checked,
)
from referrals_web.pages.common import (
    checked_form,
    current_session,
    end_session,
    ensure_session,
    gettext,
    idempotency_key,
    redirect,
    render,
    runtime,
    text,
)
from referrals_web.pages.common import idempotency_key as idempotency_key_of
from referrals_web.platform import PlatformProblem, PlatformUnavailable
from referrals_web.rendering import Form
from referrals_web.repository import ConsoleAction, StaffMember
from referrals_web.staff import CENTER_ROLE
from referrals_web.vocabulary import (
    CENTER_REQUESTED_ITEMS,
    DECLINE_REASONS,
    DIAGNOSIS_VERDICTS,
    MEETING_OUTCOMES,
    STAGE_VERDICTS,
    TREATMENT_VERDICTS,
    case_reference,
)

router = APIRouter()
log = logging.getLogger(__name__)

FLASH = "flash"
ITEM_ROWS = 3
"""Rows of requested items a request form offers (unused rows are left empty)."""
CLOSED_SHOWN = 50
OPINION_KEPT = "opinion_upload:{referral_id}"
"""Session data: the opinion uploaded for a referral but not yet delivered (id, name)."""
DELIVERY_TRIES = 6
"""Partners learns of an uploaded opinion from records' event a moment later (409
`opinion-not-stored` with Retry-After): the delivery is tried again this many times."""
INLINE_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "text/plain"})
"""What a browser may show in a tab (anything else is only downloaded)."""
OPEN_STATES = frozenset({"offered", "accepted", "info_requested"})


class NoStaff(Exception):
    """No staff member is signed in (or the account was disabled): to the console's sign-in."""


class CenterKeyMissing(Exception):
    """No API key (or none that opens) is kept for the staff member's center."""


@dataclass(frozen=True)
class Desk:
    """The signed-in staff member and their center's key (never leaves the server)."""

    member: StaffMember
    key: str


async def signed_in(request: Request) -> Desk:
    """The staff member of this session, checked again at every request (a disabled account
    is signed out at once)."""
    session = current_session(request)
    if session is None or session.staff_id is None:
        raise NoStaff
    rt = runtime(request)
    member = await rt.staff.get(session.staff_id)
    if member is None or not member.active or member.role != CENTER_ROLE:
        await rt.staff_sessions.end(session)
        end_session(request)
        raise NoStaff
    key = await rt.center_keys.get(member.center_code)
    if key is None:
        raise CenterKeyMissing(member.center_code)
    return Desk(member, key)


def page(request: Request, template: str, desk: Desk, **context: Any) -> HTMLResponse:
    status_code = context.pop("status_code", 200)
    return render(request, template, status_code=status_code, staff=desk.member, **context)


def flash(request: Request, message: str, **params: Any) -> None:
    ensure_session(request).set(FLASH, [message, params])


def take_flash(request: Request) -> tuple[str, dict[str, Any]] | None:
    found = ensure_session(request).pop(FLASH)
    return (found[0], found[1]) if found else None


async def audit(
    desk: Desk, request: Request, referral_id: UUID | None, action: str, outcome: str
) -> None:
    await runtime(request).console_audit.record(
        ConsoleAction(
            utcnow(), desk.member.id, desk.member.center_code, referral_id, action, outcome
        )
    )


# ------------------------------------------------------------------------------ the inbox


def _at(value: Any) -> datetime:
    return datetime.fromisoformat(str(value)) if value else datetime.max.replace(tzinfo=UTC)


def open_request(referral: dict[str, Any]) -> dict[str, Any] | None:
    info: dict[str, Any]
    for info in reversed(referral.get("information_requests") or []):
        if info.get("status") == "open":
            return info
    return None


def open_follow_ups(referral: dict[str, Any]) -> list[dict[str, Any]]:
    return [q for q in referral.get("follow_up_questions") or [] if not q.get("answer")]


def inbox_groups(referrals: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The inbox's parts, each in the order a doctor works through it: offers by their answer
    deadline, accepted referrals by the expected opinion date, waiting ones by the patient's due
    date, unanswered follow-up questions by when they were asked, closed ones newest first."""
    groups: dict[str, list[dict[str, Any]]] = {
        "offered": [],
        "accepted": [],
        "info_requested": [],
        "follow_ups": [],
        "closed": [],
    }
    for referral in referrals:
        status = referral["status"]
        if status in ("offered", "accepted", "info_requested"):
            groups[status].append(referral)
        else:
            groups["closed"].append(referral)
        if status == "completed" and open_follow_ups(referral):
            groups["follow_ups"].append(referral)
    groups["offered"].sort(key=lambda r: _at(r.get("answer_due_at")))
    groups["accepted"].sort(key=lambda r: _at(r.get("expected_opinion_at")))
    groups["info_requested"].sort(key=lambda r: _at((open_request(r) or {}).get("due_at")))
    groups["follow_ups"].sort(key=lambda r: _at(open_follow_ups(r)[0].get("asked_at")))
    groups["closed"].sort(
        key=lambda r: _at(r.get("answered_at") or r.get("offered_at")), reverse=True
    )
    groups["closed"] = groups["closed"][:CLOSED_SHOWN]
    return groups


def summary(referral: dict[str, Any]) -> dict[str, Any]:
    """What a row and the referral's page say of the case: the offer's clinical summary."""
    clinical = (referral.get("offer") or {}).get("clinical") or {}
    return {
        "reference": case_reference(referral["case_id"]),
        "icd10": clinical.get("icd10"),
        "morphology": clinical.get("morphology"),
        "stage": {k: (clinical.get("stage") or {}).get(k) for k in ("tnm", "group")},
        "age_group": clinical.get("age_group"),
        "reasons": clinical.get("reasons") or [],
        "documents": len((referral.get("offer") or {}).get("documents") or []),
    }


@router.get("/center")
async def inbox(request: Request) -> Response:
    desk = await signed_in(request)
    referrals = await runtime(request).platform.center_referrals(desk.key)
    return page(
        request,
        "center/inbox.html",
        desk,
        groups=inbox_groups(referrals),
        summaries={r["id"]: summary(r) for r in referrals},
        open_request=open_request,
        open_follow_ups=open_follow_ups,
        flash=take_flash(request),
        now=datetime.now(UTC),
    )


# --------------------------------------------------------------------------- a referral


async def _referral(request: Request, desk: Desk, referral_id: UUID) -> dict[str, Any]:
    """The referral as the center sees it; another center's (or none) is the 404 page. The rest
    of the request is traced as about the referral's case."""
    referral = await runtime(request).platform.center_referral(desk.key, referral_id)
    if referral.get("case_id"):
        note_request_case(referral["case_id"])
    return referral


async def _documents(
    request: Request, desk: Desk, referral: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """(the referral's documents from records, whether records has not heard of it yet)."""
    if referral["status"] not in OPEN_STATES and referral["status"] != "completed":
        return [], False
    try:
        docs = await runtime(request).platform.referral_documents(desk.key, UUID(referral["id"]))
    except PlatformProblem as problem:
        if problem.status == 409:  # records has not yet heard of the referral
            return [], True
        if problem.status == 404:  # the referral ended at records (declined, expired…)
            return [], False
        raise
    return sorted(docs, key=lambda d: d.get("created_at") or ""), False


def answer_documents(referral: dict[str, Any]) -> set[str]:
    """The ids of the documents the center attached to its follow-up answers (records lists
    them, like the opinion, as the center's own uploads of kind `opinion`)."""
    return {
        str(d)
        for q in referral.get("follow_up_questions") or []
        for d in q.get("document_ids") or []
    }


def allowed_actions(referral: dict[str, Any]) -> set[str]:
    """What the center may do with the referral in its state (partners has the last word)."""
    status = referral["status"]
    accepted = referral.get("expected_opinion_at") is not None
    found: set[str] = set()
    if status == "offered":
        found |= {"accept", "decline", "request_information"}
    elif status == "accepted":
        found |= {"request_information", "opinion"}
    elif status == "info_requested" and not accepted:
        found.add("decline")
    return found


async def _referral_page(
    request: Request, desk: Desk, referral: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    documents, documents_pending = await _documents(request, desk, referral)
    actions = await runtime(request).console_audit.of_referral(UUID(referral["id"]))
    names = {desk.member.id: desk.member.name}
    for action in actions:
        if action.staff_id not in names:
            other = await runtime(request).staff.get(action.staff_id)
            names[action.staff_id] = other.name if other else "?"
    return page(
        request,
        "center/referral.html",
        desk,
        status_code=status_code,
        referral=referral,
        case=summary(referral),
        documents=documents,
        documents_pending=documents_pending,
        document_names={d["id"]: d.get("file_name") for d in documents},
        answer_document_ids=answer_documents(referral),
        allowed=allowed_actions(referral) | ({"meeting"} if may_offer_meeting(referral) else set()),
        meeting_actions={m["id"]: meeting_actions(m) for m in referral.get("meetings") or []},
        open_request=open_request(referral),
        actions=[a for a in actions if a.action != "download"],
        staff_names=names,
        inline_types=INLINE_TYPES,
        flash=take_flash(request),
    )


@router.get("/center/referrals/{referral_id}")
async def referral_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    return await _referral_page(request, desk, referral)


@router.get("/center/referrals/{referral_id}/documents/{document_id}")
async def document(request: Request, referral_id: UUID, document_id: UUID) -> Response:
    """The document's bytes through this server (the key stays here); records audits it.
    `?view=1` shows a PDF, an image or a text in the browser; otherwise it is downloaded."""
    desk = await signed_in(request)
    platform = runtime(request).platform
    link, body, upstream = await platform.referral_download(desk.key, referral_id, document_id)
    await audit(desk, request, referral_id, "download", "ok")
    name = str(link.get("file_name") or "document").replace('"', "")
    media_type = link.get("media_type") or "application/octet-stream"
    inline = request.query_params.get("view") == "1" and media_type in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store",
        },
        background=BackgroundTask(upstream.aclose),
    )


# -------------------------------------------------------------------------- the actions


def _day(form: Form, prefix: str, error: str, message: str) -> date | None:
    """The day typed in the three fields `<prefix>_day|month|year`, or None with an error."""
    parts = [form.values.get(f"{prefix}_{p}", "") for p in ("day", "month", "year")]
    try:
        if not all(p.isdigit() for p in parts) or len(parts[2]) != 4:
            raise ValueError
        return date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        form.error(error, message, anchor=f"{prefix}_day")
        return None


def end_of_day(day: date) -> datetime:
    """A day the staff member chose, as the moment partners takes: its end, in UTC."""
    return datetime.combine(day, time(23, 59), tzinfo=UTC)


def _refused(form: Form, problem: PlatformProblem, pointers: dict[str, str], default: str) -> None:
    """The platform's problem on the form: each field error beside its field, else the
    problem's detail on `default` (a 409 says the referral's state changed)."""
    found = problem.fields(pointers)
    for name, error in found.items():
        form.platform_error(name, error.message, anchor=form.anchors.get(name))
    if not found:
        form.platform_error(
            default, problem.detail or problem.title, anchor=form.anchors.get(default)
        )


async def _act(
    request: Request,
    desk: Desk,
    referral_id: UUID,
    action: str,
    path: str,
    body: dict[str, Any] | None,
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """One action through partners, recorded with its outcome. Every action sends an
    Idempotency-Key: the same one for the same request sent again (a double click, the back
    button, a retry after a lost answer), so partners does it once."""
    if idempotency_key is None:
        idempotency_key = idempotency_key_of(request, f"center:{action}:{referral_id}:{path}", body)
    try:
        result = await runtime(request).platform.center_action(
            desk.key, referral_id, path, body, idempotency_key=idempotency_key
        )
    except PlatformProblem as problem:
        await audit(desk, request, referral_id, action, problem.slug)
        raise
    await audit(desk, request, referral_id, action, "ok")
    return result


# ----------------------------------------------------------------------------- accept

ACCEPT_FIELDS = ("opinion_day", "opinion_month", "opinion_year")


@router.get("/center/referrals/{referral_id}/accept")
async def accept_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    if "accept" not in allowed_actions(referral):
        return redirect(f"/center/referrals/{referral_id}")
    form = Form(values=dict.fromkeys(ACCEPT_FIELDS, ""))
    return page(
        request, "center/accept.html", desk, referral=referral, case=summary(referral), form=form
    )


@router.post("/center/referrals/{referral_id}/accept")
async def accept(request: Request, referral_id: UUID) -> Response:
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    form = Form(
        values={n: text(posted, n, 4) for n in ACCEPT_FIELDS},
        anchors={"expected_opinion_at": "opinion_day"},
    )
    day = _day(
        form,
        "opinion",
        "expected_opinion_at",
        N_("Enter the day you expect to deliver the opinion, as a real date"),
    )
    status_code = 422
    if day is not None:
        body = {"expected_opinion_at": end_of_day(day).isoformat()}
        try:
            await _act(request, desk, referral_id, "accept", "accept", body)
        except PlatformProblem as problem:
            pointers = {"/expected_opinion_at": "expected_opinion_at"}
            _refused(form, problem, pointers, "expected_opinion_at")
            status_code = problem.status
    if not form.ok:
        return page(
            request,
            "center/accept.html",
            desk,
            referral=referral,
            case=summary(referral),
            form=form,
            status_code=status_code,
        )
    flash(
        request, N_("You accepted the referral. The patient is told when to expect your opinion.")
    )
    return redirect(f"/center/referrals/{referral_id}")


# ----------------------------------------------------------------------------- decline


@router.get("/center/referrals/{referral_id}/decline")
async def decline_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    if "decline" not in allowed_actions(referral):
        return redirect(f"/center/referrals/{referral_id}")
    form = Form(values={"reason": "", "detail": ""}, anchors={"reason": "reason-0"})
    return page(
        request, "center/decline.html", desk, referral=referral, case=summary(referral), form=form
    )


@router.post("/center/referrals/{referral_id}/decline")
async def decline(request: Request, referral_id: UUID) -> Response:
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    form = Form(
        values={"reason": text(posted, "reason", 40), "detail": text(posted, "detail", 1100)},
        anchors={"reason": "reason-0"},
    )
    if form.values["reason"] not in DECLINE_REASONS:
        form.error("reason", N_("Choose why your center declines"))
    if form.values["reason"] == "other" and not form.values["detail"]:
        form.error("detail", N_("Say in a few words why your center declines"))
    status_code = 422
    if form.ok:
        body = {"reason": form.values["reason"], "detail": form.values["detail"] or None}
        try:
            await _act(request, desk, referral_id, "decline", "decline", body)
        except PlatformProblem as problem:
            _refused(form, problem, {"/reason": "reason", "/detail": "detail"}, "reason")
            status_code = problem.status
    if not form.ok:
        return page(
            request,
            "center/decline.html",
            desk,
            referral=referral,
            case=summary(referral),
            form=form,
            status_code=status_code,
        )
    flash(request, N_("You declined the referral. The case goes to another center."))
    return redirect("/center")


# ----------------------------------------------------------------- ask for information

REQUEST_FIELDS = (
    "reason",
    "due_day",
    "due_month",
    "due_year",
    *(f"item_{i}_{part}" for i in range(1, ITEM_ROWS + 1) for part in ("kind", "detail")),
)


def _request_pointers() -> dict[str, str]:
    pointers = {"/reason": "reason", "/due_at": "due_at", "/items": "item_1_kind"}
    for i in range(ITEM_ROWS):
        pointers[f"/items/{i}"] = f"item_{i + 1}_kind"
        pointers[f"/items/{i}/kind"] = f"item_{i + 1}_kind"
        pointers[f"/items/{i}/detail"] = f"item_{i + 1}_detail"
    return pointers


def _request_page(
    request: Request, desk: Desk, referral: dict[str, Any], form: Form, status_code: int = 200
) -> HTMLResponse:
    return page(
        request,
        "center/information.html",
        desk,
        referral=referral,
        case=summary(referral),
        form=form,
        rows=range(1, ITEM_ROWS + 1),
        status_code=status_code,
    )


@router.get("/center/referrals/{referral_id}/information")
async def information_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    if "request_information" not in allowed_actions(referral):
        return redirect(f"/center/referrals/{referral_id}")
    return _request_page(request, desk, referral, Form(values=dict.fromkeys(REQUEST_FIELDS, "")))


@router.post("/center/referrals/{referral_id}/information")
async def request_information(request: Request, referral_id: UUID) -> Response:
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    form = Form(
        values={n: text(posted, n, 4100) for n in REQUEST_FIELDS},
        anchors={"due_at": "due_day"},
    )
    v = form.values
    items = []
    for i in range(1, ITEM_ROWS + 1):
        kind, detail = v[f"item_{i}_kind"], v[f"item_{i}_detail"]
        if not kind and not detail:
            continue
        if kind not in CENTER_REQUESTED_ITEMS:
            form.error(f"item_{i}_kind", N_("Choose what kind of information you need"))
        elif not detail:
            form.error(f"item_{i}_detail", N_("Say exactly what you need, in a few words"))
        elif len(detail) > 1000:
            form.error(f"item_{i}_detail", N_("Say it in at most 1000 characters"))
        else:
            items.append({"kind": kind, "detail": detail})
    if not items and not form.errors:
        form.error("item_1_kind", N_("Say at least one thing you need"))
    if not v["reason"]:
        form.error("reason", N_("Say why your center needs it: the patient reads it"))
    elif len(v["reason"]) > 4000:
        form.error("reason", N_("Say it in at most 4000 characters"))
    day = _day(
        form, "due", "due_at", N_("Enter the day the patient must answer by, as a real date")
    )
    status_code = 422
    if form.ok and day is not None:
        body = {"reason": v["reason"], "items": items, "due_at": end_of_day(day).isoformat()}
        try:
            await _act(
                request, desk, referral_id, "request_information", "information-requests", body
            )
        except PlatformProblem as problem:
            _refused(form, problem, _request_pointers(), "reason")
            status_code = problem.status
    if not form.ok:
        return _request_page(request, desk, referral, form, status_code)
    flash(request, N_("Your request was sent. The patient is told what you need, why and by when."))
    return redirect(f"/center/referrals/{referral_id}")


# --------------------------------------------------------------------------- shipments


@router.post("/center/referrals/{referral_id}/shipments/{shipment_id}/receipt")
async def confirm_shipment(request: Request, referral_id: UUID, shipment_id: UUID) -> Response:
    await checked_form(request)
    desk = await signed_in(request)
    try:
        await _act(
            request, desk, referral_id, "confirm_shipment", f"shipments/{shipment_id}/receipt", None
        )
    except PlatformProblem as problem:
        referral = await _referral(request, desk, referral_id)  # another center's: 404 page
        flash(request, N_("The receipt could not be confirmed: %(why)s"), why=problem.detail)
        return await _referral_page(request, desk, referral, status_code=problem.status)
    flash(request, N_("You confirmed the receipt. The patient is told."))
    return redirect(f"/center/referrals/{referral_id}")


# ----------------------------------------------------------------------- follow-up questions


def _question(referral: dict[str, Any], question_id: UUID) -> dict[str, Any] | None:
    return next(
        (q for q in referral.get("follow_up_questions") or [] if q["id"] == str(question_id)), None
    )


FOLLOW_UP_KEPT = "follow_up_files:{question_id}"
"""Session data: the documents uploaded to records for a follow-up answer not yet sent (id,
name), so a refused answer does not make the staff member choose the files again."""
FOLLOW_UP_FILES_MAX = 5
"""Documents an answer may carry (partners takes up to 5)."""


def _kept_files(request: Request, question_id: UUID) -> list[dict[str, str]]:
    found = ensure_session(request).data.get(FOLLOW_UP_KEPT.format(question_id=question_id))
    return list(found) if isinstance(found, list) else []


def chosen_files(posted: Any, name: str) -> list[UploadFile]:
    """The files chosen in the form's file input `name` (an input left empty sends one
    nameless, empty part: not a file)."""
    return [f for f in posted.getlist(name) if isinstance(f, UploadFile) and f.filename]


def attachment_name(file: UploadFile) -> str:
    """A file's name as records is given it (no path, no control or markup characters)."""
    base = re.split(r"[\\/]", file.filename or "")[-1]
    return re.sub(r"[^\w.\- ]", "_", base)[:120].strip() or "document"


def _follow_up_page(
    request: Request,
    desk: Desk,
    referral: dict[str, Any],
    question: dict[str, Any],
    form: Form,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "center/follow_up.html",
        desk,
        referral=referral,
        case=summary(referral),
        question=question,
        form=form,
        attached=_kept_files(request, UUID(question["id"])),
        files_max=FOLLOW_UP_FILES_MAX,
        status_code=status_code,
    )


@router.get("/center/referrals/{referral_id}/follow-up/{question_id}")
async def follow_up_page(request: Request, referral_id: UUID, question_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    question = _question(referral, question_id)
    if question is None or question.get("answer"):
        return redirect(f"/center/referrals/{referral_id}")
    return _follow_up_page(request, desk, referral, question, Form(values={"answer": ""}))


async def _attach(
    request: Request,
    desk: Desk,
    referral_id: UUID,
    question_id: UUID,
    files: list[UploadFile],
    form: Form,
) -> None:
    """Store each chosen file at records as part of the answer (kept in the session until the
    answer is sent); the first refusal goes beside the file input, naming the file."""

    session = ensure_session(request)
    key = FOLLOW_UP_KEPT.format(question_id=question_id)
    platform = runtime(request).platform
    for file in files:
        name = attachment_name(file)
        content_type = file.content_type or "application/octet-stream"
        try:
            stored = await platform.upload_follow_up_document(
                desk.key, referral_id, question_id, name, file.file, content_type
            )
        except PlatformProblem as problem:
            await audit(desk, request, referral_id, "upload_follow_up_document", problem.slug)
            known = UPLOAD_MESSAGES.get(problem.slug)
            form.error(
                "files",
                N_("%(file)s could not be attached: %(why)s"),
                anchor="files",
                file=name,
                why=gettext(request)(known) if known else problem.detail or problem.title,
            )
            return
        finally:
            await file.close()
        await audit(desk, request, referral_id, "upload_follow_up_document", "ok")
        session.set(key, [*_kept_files(request, question_id), {"id": stored["id"], "name": name}])


async def _send_answer(
    request: Request, desk: Desk, referral_id: UUID, question_id: UUID, body: dict[str, Any]
) -> None:
    """The answer through partners, tried again while partners has not yet heard from records
    of a document just uploaded (409 `opinion-not-stored`, with Retry-After)."""
    path = f"follow-up-questions/{question_id}/answer"
    for attempt in range(DELIVERY_TRIES):
        try:
            await _act(request, desk, referral_id, "answer_follow_up", path, body)
            return
        except PlatformProblem as problem:
            if problem.slug != "opinion-not-stored" or attempt + 1 == DELIVERY_TRIES:
                raise
            await asyncio.sleep(min(problem.retry_after or 1, 3))


@router.post("/center/referrals/{referral_id}/follow-up/{question_id}")
async def answer_follow_up(request: Request, referral_id: UUID, question_id: UUID) -> Response:
    """The answer in words, with up to five documents: each file is stored at records first
    (once: kept while the answer is corrected), then the answer goes to partners with their
    ids."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > runtime(request).settings.upload_max_bytes:
        desk = await signed_in(request)
        referral = await _referral(request, desk, referral_id)
        question = _question(referral, question_id)
        if question is None:
            return redirect(f"/center/referrals/{referral_id}")
        form = Form(values={"answer": ""}, anchors={"files": "files"})
        form.error("files", UPLOAD_MESSAGES["upload-too-large"])
        response = _follow_up_page(request, desk, referral, question, form, 413)
        response.headers["Connection"] = "close"
        return response
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    question = _question(referral, question_id)
    if question is None:
        return redirect(f"/center/referrals/{referral_id}")
    form = Form(values={"answer": text(posted, "answer", 1100)}, anchors={"files": "files"})
    if not form.values["answer"]:
        form.error("answer", N_("Write your answer to the patient's question"))
    elif len(form.values["answer"]) > 1000:
        form.error("answer", N_("Say it in at most 1000 characters"))
    files = chosen_files(posted, "files")
    if len(_kept_files(request, question_id)) + len(files) > FOLLOW_UP_FILES_MAX:
        form.error("files", N_("Attach at most 5 documents to one answer"))
    elif files and not question.get("answer"):
        await _attach(request, desk, referral_id, question_id, files, form)
    status_code = 422
    if form.ok:
        kept = _kept_files(request, question_id)
        body = {"answer": form.values["answer"], "document_ids": [f["id"] for f in kept]}
        try:
            await _send_answer(request, desk, referral_id, question_id, body)
        except PlatformProblem as problem:
            status_code = problem.status
            if problem.slug == "opinion-not-stored":
                form.error(
                    "files",
                    N_(
                        "The platform is still checking your documents. Wait a minute, then "
                        "send the answer again: your words and documents are kept."
                    ),
                )
            else:
                pointers = {"/answer": "answer", "/document_ids": "files"}
                _refused(form, problem, pointers, "answer")
    if not form.ok:
        return _follow_up_page(request, desk, referral, question, form, status_code)
    ensure_session(request).pop(FOLLOW_UP_KEPT.format(question_id=question_id))
    flash(request, N_("Your answer was sent. The patient reads it with the opinion."))
    return redirect(f"/center/referrals/{referral_id}")


# --------------------------------------------------------------------------- the opinion

OUTCOME_FIELDS = (
    "diagnosis",
    "icd10",
    "stage",
    "new_tnm",
    "new_group",
    "treatment",
    "additional_tests",
    "clinical_trials",
    "clinical_trials_detail",
)
OUTCOME_POINTERS = {
    "/document_id": "file",
    "/outcome": "diagnosis",
    "/outcome/diagnosis": "diagnosis",
    "/outcome/icd10": "icd10",
    "/outcome/stage": "stage",
    "/outcome/new_stage": "new_tnm",
    "/outcome/new_stage/tnm": "new_tnm",
    "/outcome/new_stage/group": "new_group",
    "/outcome/treatment": "treatment",
    "/outcome/additional_tests": "additional_tests",
    "/outcome/clinical_trials": "clinical_trials",
    "/outcome/clinical_trials_detail": "clinical_trials_detail",
}
OUTCOME_ANCHORS = {
    "diagnosis": "diagnosis-0",
    "stage": "stage-0",
    "treatment": "treatment-0",
    "clinical_trials": "clinical_trials-0",
}


def outcome_of(form: Form) -> dict[str, Any]:
    """The opinion's outcome as partners takes it, from the form as typed (partners checks
    that it holds together: a changed diagnosis names its code, and so on)."""
    v = form.values
    outcome: dict[str, Any] = {
        "diagnosis": v["diagnosis"],
        "stage": v["stage"],
        "treatment": v["treatment"],
        "clinical_trials": v["clinical_trials"] == "yes",
    }
    if v["icd10"]:
        outcome["icd10"] = v["icd10"].upper()
    if v["new_tnm"] or v["new_group"]:
        outcome["new_stage"] = {
            k: value
            for k, value in (("tnm", v["new_tnm"]), ("group", v["new_group"].upper()))
            if value
        }
    tests = [line.strip() for line in v["additional_tests"].splitlines() if line.strip()]
    if tests:
        outcome["additional_tests"] = tests
    if v["clinical_trials_detail"]:
        outcome["clinical_trials_detail"] = v["clinical_trials_detail"]
    return outcome


def _opinion_page(
    request: Request,
    desk: Desk,
    referral: dict[str, Any],
    form: Form,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    kept = ensure_session(request).data.get(OPINION_KEPT.format(referral_id=referral["id"]))
    return page(
        request,
        "center/opinion.html",
        desk,
        referral=referral,
        case=summary(referral),
        form=form,
        uploaded=kept,
        resumable_from=RESUMABLE_FROM,
        status_code=status_code,
    )


@router.get("/center/referrals/{referral_id}/opinion")
async def opinion_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    if "opinion" not in allowed_actions(referral):
        return redirect(f"/center/referrals/{referral_id}")
    form = Form(values=dict.fromkeys(OUTCOME_FIELDS, ""), anchors=dict(OUTCOME_ANCHORS))
    return _opinion_page(request, desk, referral, form)


def opinion_file_name(name: str) -> str:
    """The opinion's file name as the console keeps and sends it (no markup or path)."""
    return re.sub(r"[^\w.\- ]", "_", name)[:120] or "opinion.pdf"


async def _upload_opinion(
    request: Request, desk: Desk, referral_id: UUID, file: UploadFile, form: Form
) -> dict[str, Any] | None:
    """The PDF stored at records for this referral (kept in the session until delivered)."""
    head = await file.read(5)
    await file.seek(0)
    if head != b"%PDF-":
        form.error("file", N_("The opinion must be a PDF file"))
        return None
    name = opinion_file_name(file.filename or "")
    try:
        stored = await runtime(request).platform.upload_opinion(
            desk.key, referral_id, name, file.file
        )
    except PlatformProblem as problem:
        await audit(desk, request, referral_id, "upload_opinion", problem.slug)
        form.platform_error("file", problem.detail or problem.title)
        return None
    await audit(desk, request, referral_id, "upload_opinion", "ok")
    kept = {"id": stored["id"], "name": name}
    ensure_session(request).set(OPINION_KEPT.format(referral_id=referral_id), kept)
    return kept


# An opinion of RESUMABLE_FROM bytes or more goes in parts, as a patient's large document does
# (static/upload.js): the page's script opens an upload here, sends each part here, and this
# server passes it on to records' resumable opinion upload with the center's key (never in the
# browser); after a dropped connection the script asks where to resume. Once complete, the
# opinion is kept in the session like a one-shot upload and the script sends the form (the
# outcome) without the file.


@router.post("/center/referrals/{referral_id}/opinion/uploads")
async def start_opinion_upload(request: Request, referral_id: UUID) -> Response:
    """Open a resumable upload of the opinion the page's script is about to send."""

    script_checked(request)
    desk = await signed_in(request)
    _ = gettext(request)
    try:
        posted = await request.json()
        size = int(posted.get("size_bytes"))
        name = str(posted.get("file_name") or "")[:255]
    except (ValueError, TypeError, AttributeError):
        return json_refused(request, None, 422)
    if not name.lower().endswith(".pdf"):
        return JSONResponse({"message": _(N_("The opinion must be a PDF file"))}, 422)
    key = request.headers.get("idempotency-key", "")
    if not 8 <= len(key) <= 128:
        return json_refused(request, None, 422)
    body = {"file_name": opinion_file_name(name), "size_bytes": size}
    platform = runtime(request).platform
    return await relay_upload(
        request, platform.start_opinion_upload(desk.key, referral_id, body, key)
    )


@router.get("/center/referrals/{referral_id}/opinion/uploads/{upload_id}")
async def opinion_upload_progress(request: Request, referral_id: UUID, upload_id: UUID) -> Response:
    """Where to resume: the parts records received."""

    desk = await signed_in(request)
    platform = runtime(request).platform
    return await relay_upload(
        request, platform.opinion_upload_progress(desk.key, referral_id, upload_id)
    )


@router.put("/center/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{number}")
async def opinion_upload_part(
    request: Request, referral_id: UUID, upload_id: UUID, number: int
) -> Response:
    """One part, streamed on to records as it arrives."""

    script_checked(request)
    desk = await signed_in(request)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or not 1 <= number <= 10000:
        return json_refused(request, None, 422)
    platform = runtime(request).platform
    try:
        return await relay_upload(
            request,
            platform.opinion_upload_part(
                desk.key, referral_id, upload_id, number, request.stream(), int(declared)
            ),
        )
    except ClientDisconnect:
        return Response(status_code=499)  # the browser is gone: it resumes from records' offset


@router.post("/center/referrals/{referral_id}/opinion/uploads/{upload_id}/complete")
async def complete_opinion_upload(request: Request, referral_id: UUID, upload_id: UUID) -> Response:
    """The parts become the opinion at records, kept in the session until it is delivered
    (audited as the one-shot upload is); the script then sends the form with the outcome."""

    script_checked(request)
    desk = await signed_in(request)
    platform = runtime(request).platform
    try:
        stored = await platform.complete_opinion_upload(desk.key, referral_id, upload_id)
    except PlatformProblem as problem:
        await audit(desk, request, referral_id, "upload_opinion", problem.slug)
        return json_refused(request, problem, problem.status)
    except PlatformUnavailable:
        return json_refused(request, None, 503)
    await audit(desk, request, referral_id, "upload_opinion", "ok")
    kept = {"id": stored["id"], "name": opinion_file_name(str(stored.get("file_name") or ""))}
    ensure_session(request).set(OPINION_KEPT.format(referral_id=referral_id), kept)
    return JSONResponse({"uploaded": kept["name"]}, headers={"Cache-Control": "no-store"})


@router.post("/center/referrals/{referral_id}/opinion")
async def deliver_opinion(request: Request, referral_id: UUID) -> Response:
    """Store the PDF at records (once: kept while the outcome is being corrected), then
    deliver it through partners with the structured outcome."""
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    form = Form(
        values={n: text(posted, n, 4100) for n in OUTCOME_FIELDS}, anchors=dict(OUTCOME_ANCHORS)
    )
    v = form.values
    if v["diagnosis"] not in DIAGNOSIS_VERDICTS:
        form.error("diagnosis", N_("Say what your opinion says of the diagnosis"))
    if v["stage"] not in STAGE_VERDICTS:
        form.error("stage", N_("Say what your opinion says of the stage"))
    if v["treatment"] not in TREATMENT_VERDICTS:
        form.error("treatment", N_("Say what your opinion says of the treatment plan"))
    session = ensure_session(request)
    kept = session.data.get(OPINION_KEPT.format(referral_id=referral_id))
    upload = posted.get("file")
    chosen = isinstance(upload, UploadFile) and bool(upload.filename)
    if chosen:
        assert isinstance(upload, UploadFile)
        kept = await _upload_opinion(request, desk, referral_id, upload, form) or kept
    elif kept is None:
        form.error("file", N_("Choose the PDF of your written opinion"))
    if not form.ok or kept is None:
        return _opinion_page(request, desk, referral, form, status_code=422)
    body = {"document_id": kept["id"], "outcome": outcome_of(form)}
    for attempt in range(DELIVERY_TRIES):
        try:
            await _act(request, desk, referral_id, "deliver_opinion", "opinion", body)
            break
        except PlatformProblem as problem:
            if problem.slug == "opinion-not-stored" and attempt + 1 < DELIVERY_TRIES:
                await asyncio.sleep(min(problem.retry_after or 1, 3))
                continue
            _refused(form, problem, OUTCOME_POINTERS, "diagnosis")
            return _opinion_page(request, desk, referral, form, status_code=problem.status)
    session.pop(OPINION_KEPT.format(referral_id=referral_id))
    flash(request, N_("Your opinion was delivered. The patient is told and can read it now."))
    return redirect(f"/center/referrals/{referral_id}")


# ------------------------------------------------------------------- the consultation meeting

MEETING_ROWS = 5
"""Rows of times the meeting form offers (unused rows are left empty)."""
MEETING_LENGTHS = (30, 45, 60, 90, 120)
"""Minutes a meeting may be offered for (partners takes 15 minutes to 3 hours)."""
MEETING_ZONES = (
    "Europe/Kyiv",
    "Europe/Warsaw",
    "Europe/Berlin",
    "Europe/Vienna",
    "Europe/Prague",
    "Europe/Paris",
    "Europe/London",
    "Europe/Istanbul",
    "Asia/Jerusalem",
    "UTC",
)
MEETING_LANGUAGES = ("en", "uk", "de", "pl", "he", "tr", "fr", "ru")
MEETING_KEY = "meeting_key:{referral_id}"
"""Session data: the Idempotency-Key of the meeting being offered (one per offer, kept until
partners took it, so a form sent twice offers one meeting)."""
MEETING_FIELDS = (
    "mode",
    "join_url",
    "center_address",
    "time_zone",
    "language",
    "note",
    *(
        f"slot_{i}_{part}"
        for i in range(1, MEETING_ROWS + 1)
        for part in ("day", "month", "year", "time", "minutes")
    ),
)


def open_meeting(referral: dict[str, Any]) -> dict[str, Any] | None:
    meeting: dict[str, Any]
    for meeting in reversed(referral.get("meetings") or []):
        if meeting.get("status") in ("offered", "booked"):
            return meeting
    return None


def may_offer_meeting(referral: dict[str, Any]) -> bool:
    """A center that accepted (before or after its opinion) offers one meeting at a time."""
    accepted = referral.get("expected_opinion_at") is not None
    state = referral["status"] in ("accepted", "completed") or (
        referral["status"] == "info_requested" and accepted
    )
    return state and open_meeting(referral) is None


def _meeting_pointers() -> dict[str, str]:
    pointers = {
        "/place": "mode",
        "/place/mode": "mode",
        "/place/join_url": "join_url",
        "/place/center_address": "center_address",
        "/place/time_zone": "time_zone",
        "/place/language": "language",
        "/note": "note",
        "/slots": "slot_1_day",
    }
    for i in range(MEETING_ROWS):
        pointers[f"/slots/{i}"] = f"slot_{i + 1}_day"
    return pointers


def meeting_slots(form: Form) -> list[dict[str, str]]:
    """The times typed, as partners takes them (the zone's local time, with its offset)."""
    from zoneinfo import ZoneInfo

    v = form.values
    zone = ZoneInfo(v["time_zone"]) if v["time_zone"] in MEETING_ZONES else UTC
    slots = []
    for i in range(1, MEETING_ROWS + 1):
        parts = [v[f"slot_{i}_{p}"] for p in ("day", "month", "year", "time")]
        if not any(parts):
            continue
        anchor = f"slot_{i}_day"
        name = f"slot_{i}"
        form.anchors[name] = anchor
        clock = re.fullmatch(r"([01]?\d|2[0-3])[:.]([0-5]\d)", parts[3])
        try:
            if not all(p.isdigit() for p in parts[:3]) or clock is None:
                raise ValueError
            day = date(int(parts[2]), int(parts[1]), int(parts[0]))
        except ValueError:
            form.error(name, N_("Enter the day and the time, like 27 4 2026 and 14:30"))
            continue
        minutes = int(v[f"slot_{i}_minutes"] or 60)
        if minutes not in MEETING_LENGTHS:
            minutes = 60
        starts = datetime.combine(day, time(int(clock[1]), int(clock[2])), tzinfo=zone)
        ends = starts + timedelta(minutes=minutes)
        slots.append({"starts_at": starts.isoformat(), "ends_at": ends.isoformat()})
    if not slots and not any(n.startswith("slot_") for n in form.errors):
        form.error("slot_1", N_("Offer at least one time"), anchor="slot_1_day")
    return slots


def _meeting_page(
    request: Request, desk: Desk, referral: dict[str, Any], form: Form, status_code: int = 200
) -> HTMLResponse:
    return page(
        request,
        "center/meeting.html",
        desk,
        referral=referral,
        case=summary(referral),
        form=form,
        rows=range(1, MEETING_ROWS + 1),
        lengths=MEETING_LENGTHS,
        zones=MEETING_ZONES,
        languages=MEETING_LANGUAGES,
        status_code=status_code,
    )


@router.get("/center/referrals/{referral_id}/meeting")
async def meeting_page(request: Request, referral_id: UUID) -> Response:
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    if not may_offer_meeting(referral):
        return redirect(f"/center/referrals/{referral_id}")
    values = dict.fromkeys(MEETING_FIELDS, "")
    values |= {"mode": "video", "time_zone": "Europe/Berlin", "language": "en"}
    values |= {f"slot_{i}_minutes": "60" for i in range(1, MEETING_ROWS + 1)}
    return _meeting_page(request, desk, referral, Form(values=values, anchors={"mode": "mode-0"}))


@router.post("/center/referrals/{referral_id}/meeting")
async def offer_meeting(request: Request, referral_id: UUID) -> Response:
    posted = await checked_form(request)
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    form = Form(
        values={n: text(posted, n, 1100) for n in MEETING_FIELDS}, anchors={"mode": "mode-0"}
    )
    v = form.values
    if v["mode"] not in ("video", "in_person"):
        form.error("mode", N_("Choose how the patient meets your doctors"))
    elif v["mode"] == "video" and not v["join_url"].startswith("https://"):
        form.error("join_url", N_("Enter the video call's link, starting with https://"))
    elif v["mode"] == "in_person" and not v["center_address"]:
        form.error("center_address", N_("Enter where at your center the meeting is"))
    if v["time_zone"] not in MEETING_ZONES:
        form.error("time_zone", N_("Choose the time zone of the times you offer"))
    slots = meeting_slots(form)
    status_code = 422
    if form.ok:
        place: dict[str, Any] = {"mode": v["mode"], "time_zone": v["time_zone"]}
        if v["mode"] == "video":
            place["join_url"] = v["join_url"]
        else:
            place["center_address"] = v["center_address"]
        if v["language"] in MEETING_LANGUAGES:
            place["language"] = v["language"]
        body = {"place": place, "slots": slots, "note": v["note"] or None}
        session = ensure_session(request)
        key_name = MEETING_KEY.format(referral_id=referral_id)
        key = session.data.get(key_name) or str(uuid4())
        session.set(key_name, key)
        try:
            await _act(
                request, desk, referral_id, "offer_meeting", "meetings", body, idempotency_key=key
            )
        except PlatformProblem as problem:
            _refused(form, problem, _meeting_pointers(), "slot_1")
            status_code = problem.status
        else:
            session.pop(key_name)
    if not form.ok:
        return _meeting_page(request, desk, referral, form, status_code)
    flash(request, N_("The times were sent. The patient is asked to choose one."))
    return redirect(f"/center/referrals/{referral_id}")


# ------------------------------------------------------------- the meeting, after the offer

MEETING_TIME_FIELDS = (
    "time_zone",
    *(
        f"slot_{i}_{part}"
        for i in range(1, MEETING_ROWS + 1)
        for part in ("day", "month", "year", "time", "minutes")
    ),
)
CANCEL_MAX = 1000


def meeting_actions(meeting: dict[str, Any], now: datetime | None = None) -> set[str]:
    """What the center may do with a meeting it offered (partners has the last word): new
    times or a cancellation while it is open; once the booked time has started, record
    whether it took place."""
    if meeting.get("status") not in ("offered", "booked"):
        return set()
    found = {"times", "cancel"}
    booked = meeting.get("booked_slot")
    if meeting["status"] == "booked" and booked and _at(booked["starts_at"]) <= (now or utcnow()):
        found.add("outcome")
    return found


def _the_meeting(referral: dict[str, Any], meeting_id: UUID) -> dict[str, Any] | None:
    return next((m for m in referral.get("meetings") or [] if m["id"] == str(meeting_id)), None)


async def _meeting_of(
    request: Request, referral_id: UUID, meeting_id: UUID, action: str
) -> tuple[Desk, dict[str, Any], dict[str, Any]] | Response:
    """(the desk, the referral, the meeting) when `action` is allowed on it; the 404 page for a
    meeting not on the referral, the referral's page for an action not allowed now."""
    desk = await signed_in(request)
    referral = await _referral(request, desk, referral_id)
    meeting = _the_meeting(referral, meeting_id)
    if meeting is None:
        return render(request, "errors/not_found.html", status_code=404)
    if action not in meeting_actions(meeting):
        return redirect(f"/center/referrals/{referral_id}")
    return desk, referral, meeting


def _meeting_action_page(
    request: Request,
    desk: Desk,
    referral: dict[str, Any],
    meeting: dict[str, Any],
    template: str,
    form: Form,
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        template,
        desk,
        referral=referral,
        meeting=meeting,
        case=summary(referral),
        form=form,
        rows=range(1, MEETING_ROWS + 1),
        lengths=MEETING_LENGTHS,
        zones=MEETING_ZONES,
        status_code=status_code,
    )


@router.get("/center/referrals/{referral_id}/meetings/{meeting_id}/times")
async def new_times_page(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    found = await _meeting_of(request, referral_id, meeting_id, "times")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    values = dict.fromkeys(MEETING_TIME_FIELDS, "")
    zone = meeting["place"]["time_zone"]
    values |= {"time_zone": zone if zone in MEETING_ZONES else "UTC"}
    values |= {f"slot_{i}_minutes": "60" for i in range(1, MEETING_ROWS + 1)}
    return _meeting_action_page(
        request, desk, referral, meeting, "center/meeting_times.html", Form(values=values)
    )


@router.post("/center/referrals/{referral_id}/meetings/{meeting_id}/times")
async def offer_new_times(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    """New times replace the offered ones; a time the patient booked is released and the
    patient is asked to choose again. With an Idempotency-Key: a form sent twice offers once."""
    posted = await checked_form(request)
    found = await _meeting_of(request, referral_id, meeting_id, "times")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    form = Form(values={n: text(posted, n, 100) for n in MEETING_TIME_FIELDS})
    if form.values["time_zone"] not in MEETING_ZONES:
        form.error("time_zone", N_("Choose the time zone of the times you offer"))
    slots = meeting_slots(form)
    status_code = 422
    if form.ok:
        body = {"slots": slots}
        key = idempotency_key(request, f"meeting_slots:{meeting_id}", body)
        try:
            await _act(
                request,
                desk,
                referral_id,
                "reschedule_meeting",
                f"meetings/{meeting_id}/slots",
                body,
                idempotency_key=key,
            )
        except PlatformProblem as problem:
            _refused(form, problem, _meeting_pointers(), "slot_1")
            status_code = problem.status
    if not form.ok:
        return _meeting_action_page(
            request, desk, referral, meeting, "center/meeting_times.html", form, status_code
        )
    flash(request, N_("The new times were sent. The patient is asked to choose one."))
    return redirect(f"/center/referrals/{referral_id}")


@router.get("/center/referrals/{referral_id}/meetings/{meeting_id}/cancel")
async def cancel_meeting_page(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    found = await _meeting_of(request, referral_id, meeting_id, "cancel")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    return _meeting_action_page(
        request, desk, referral, meeting, "center/meeting_cancel.html", Form(values={"reason": ""})
    )


@router.post("/center/referrals/{referral_id}/meetings/{meeting_id}/cancel")
async def cancel_meeting(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    """Cancel with the center's words (the patient reads them). Partners takes no
    Idempotency-Key here: a second cancellation changes nothing."""
    posted = await checked_form(request)
    found = await _meeting_of(request, referral_id, meeting_id, "cancel")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    form = Form(values={"reason": text(posted, "reason", CANCEL_MAX + 100)})
    reason = form.values["reason"]
    if not reason:
        form.error("reason", N_("Say why you cancel: the patient reads it"))
    elif len(reason) > CANCEL_MAX:
        form.error("reason", N_("The reason can be at most 1000 characters long"))
    return await _send_meeting_action(
        request,
        (desk, referral, meeting),
        form,
        ("cancel_meeting", "cancellation", "reason"),
        "center/meeting_cancel.html",
        N_("The meeting was cancelled. The patient is told, with your words."),
    )


async def _send_meeting_action(
    request: Request,
    found: tuple[Desk, dict[str, Any], dict[str, Any]],
    form: Form,
    action: tuple[str, str, str],
    template: str,
    done: str,
) -> Response:
    """Send one meeting action (`action`: the audit name, the path after the meeting, and the
    form's one field, sent as is) if the form is valid; partners' problem goes beside the
    field with what was typed kept; done, back to the referral with `done` said."""
    desk, referral, meeting = found
    name, path, field = action
    status_code = 422
    if form.ok:
        try:
            await _act(
                request,
                desk,
                UUID(str(referral["id"])),
                name,
                f"meetings/{meeting['id']}/{path}",
                {field: form.values[field]},
            )
        except PlatformProblem as problem:
            _refused(form, problem, {f"/{field}": field}, field)
            status_code = problem.status
    if not form.ok:
        return _meeting_action_page(request, desk, referral, meeting, template, form, status_code)
    flash(request, done)
    return redirect(f"/center/referrals/{referral['id']}")


@router.get("/center/referrals/{referral_id}/meetings/{meeting_id}/outcome")
async def meeting_outcome_page(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    found = await _meeting_of(request, referral_id, meeting_id, "outcome")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    form = Form(values={"outcome": ""}, anchors={"outcome": "outcome-0"})
    return _meeting_action_page(
        request, desk, referral, meeting, "center/meeting_outcome.html", form
    )


@router.post("/center/referrals/{referral_id}/meetings/{meeting_id}/outcome")
async def record_meeting_outcome(request: Request, referral_id: UUID, meeting_id: UUID) -> Response:
    """Held, or missed: once the booked time has started, once (the same answer again changes
    nothing at partners)."""
    posted = await checked_form(request)
    found = await _meeting_of(request, referral_id, meeting_id, "outcome")
    if isinstance(found, Response):
        return found
    desk, referral, meeting = found
    outcome = text(posted, "outcome", 20)
    form = Form(values={"outcome": outcome}, anchors={"outcome": "outcome-0"})
    if outcome not in MEETING_OUTCOMES:
        form.error("outcome", N_("Choose whether the meeting took place"))
    return await _send_meeting_action(
        request,
        (desk, referral, meeting),
        form,
        ("record_meeting", "outcome", "outcome"),
        "center/meeting_outcome.html",
        N_("Recorded. Thank you."),
    )
