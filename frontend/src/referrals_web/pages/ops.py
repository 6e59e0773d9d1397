"""The ops screen (/ops): an operator finds one stuck case fast.

- sign-in (`/ops/sign-in`): an operator's e-mail address, then a 6-digit code sent to it (the
  console's mechanism, with a namespace of its own); the answer is the same for any address;
- the overview (`/ops`): find a case by the reference the patient sees (`3F0F-6C7D`) or its id;
  what is past one of partners' deadlines (offers not answered, opinions late, requests for
  information unanswered, choices not made); the dead letters per platform topic;
- a case (`/ops/cases/{id}`): its timeline across the services (partners' ops API: the trace
  viewer's spans by case id, partners' offers, answers, requests and webhook deliveries, its dead
  letters), each step with a link into the trace viewer, errors marked in words;
- a topic's dead letters (`/ops/dead-letters/{topic}`) and a replay of one, after a page that
  says what will be sent where (the replay's Idempotency-Key is kept in the session for "the
  n-th replay of this letter", so a double click or a retry sends it once).

The web application's operator key of partners stays on this server; every call and its outcome
is recorded with the operator's identity (`ops_actions`), partners' audit naming only the key.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from referrals_common.telemetry import note_request_case
from referrals_web.i18n import N_
from referrals_web.models import utcnow
from referrals_web.ops_api import OpsApi
from referrals_web.pages import staff_signin
from referrals_web.pages.common import (
    checked_form,
    current_session,
    end_session,
    ensure_session,
    idempotency_key,
    redirect,
    render,
    runtime,
    text,
)
from referrals_web.platform import PlatformProblem
from referrals_web.rendering import Form
from referrals_web.repository import OpsAction, StaffMember
from referrals_web.staff import OPS_ROLE

router = APIRouter()
log = logging.getLogger(__name__)

FLASH = "ops_flash"
REFERENCE = re.compile(r"^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$")
OVERDUE_WHAT = {
    "answer": N_("The center has not answered the offer by its deadline"),
    "opinion": N_("The opinion is later than the center said"),
    "information": N_("The patient has not answered the center's request by its due time"),
    "choice": N_("The patient has not chosen a center by the deadline"),
}
SOURCES = {
    "trace": N_("Trace"),
    "partners": N_("Partners' records"),
    "dead_letter": N_("Dead letter"),
}


class NoOperator(Exception):
    """No operator is signed in (or the account was disabled): to the ops sign-in."""


async def operator(request: Request) -> StaffMember:
    """The operator of this session, checked again at every request."""
    session = current_session(request)
    if session is None or session.staff_id is None:
        raise NoOperator
    rt = runtime(request)
    member = await rt.staff.get(session.staff_id)
    if member is None or not member.active or member.role != OPS_ROLE:
        await rt.ops_sessions.end(session)
        end_session(request)
        raise NoOperator
    return member


def ops_api(request: Request) -> OpsApi:
    rt = runtime(request)
    return OpsApi(rt.platform, rt.settings.ops_api_key.get_secret_value())


async def audit(
    request: Request, member: StaffMember, action: str, target: str, outcome: str = "ok"
) -> None:
    await runtime(request).ops_audit.record(OpsAction(utcnow(), member.id, action, target, outcome))


def page(request: Request, template: str, member: StaffMember, **context: Any) -> HTMLResponse:
    status_code = context.pop("status_code", 200)
    flash = ensure_session(request).pop(FLASH)
    return render(
        request, template, status_code=status_code, operator=member, flash=flash, **context
    )


# --------------------------------------------------------------------------- sign-in


async def _signed_in(request: Request, member: StaffMember) -> None:
    await audit(request, member, "sign_in", "")


REALM = staff_signin.StaffRealm(
    role=OPS_ROLE,
    prefix="/ops",
    templates="ops",
    pending_key="ops_signin",
    namespace="ops-code",
    purpose="ops",
    signed_in=_signed_in,
)


router.include_router(staff_signin.router_for(REALM))


# --------------------------------------------------------------------------- overview


async def _overview(request: Request, member: StaffMember, form: Form, **extra: Any) -> Response:
    api = ops_api(request)
    overdue = await api.overdue()
    topics = await api.dead_letter_topics()
    status_code = extra.pop("status_code", 200)
    return page(
        request,
        "ops/home.html",
        member,
        form=form,
        overdue=overdue,
        overdue_what=OVERDUE_WHAT,
        topics=topics,
        status_code=status_code,
        **extra,
    )


@router.get("/ops")
async def home(request: Request) -> Response:
    member = await operator(request)
    return await _overview(request, member, Form(values={"q": ""}))


@router.get("/ops/find")
async def find(request: Request) -> Response:
    """A case by its id or by the reference the patient sees."""
    member = await operator(request)
    typed = (request.query_params.get("q") or "").strip()[:64]
    form = Form(values={"q": typed})
    if not typed:
        form.error("q", N_("Enter the case's reference or its id"))
        return await _overview(request, member, form, status_code=422)
    try:
        return redirect(f"/ops/cases/{UUID(typed)}")
    except ValueError:
        pass
    if not REFERENCE.match(typed):
        form.error(
            "q",
            N_("Enter a reference like 3F0F-6C7D, or a case id like 3f0f6c7d-…"),
        )
        return await _overview(request, member, form, status_code=422)
    found = await ops_api(request).cases_by_reference(typed)
    await audit(request, member, "find_case", typed, f"{len(found)} found")
    if len(found) == 1:
        return redirect(f"/ops/cases/{found[0]['id']}")
    if not found:
        form.error("q", N_("No case has the reference %(reference)s"), reference=typed.upper())
        return await _overview(request, member, form, status_code=404)
    return await _overview(request, member, form, matches=found)


# ------------------------------------------------------------------------------- case


@router.get("/ops/cases/{case_id}")
async def case(request: Request, case_id: UUID) -> Response:
    member = await operator(request)
    note_request_case(case_id)  # this page and its calls are found by the case id
    try:
        timeline = await ops_api(request).timeline(case_id)
    except PlatformProblem as problem:
        await audit(request, member, "view_timeline", str(case_id), problem.slug)
        if problem.status != 404:
            raise
        form = Form(values={"q": str(case_id)})
        form.error("q", N_("Nothing is known of this case"))
        return await _overview(request, member, form, status_code=404)
    await audit(request, member, "view_timeline", str(case_id))
    entries = list(reversed(timeline["entries"]))  # newest first, as the patient's timeline
    errors = sum(1 for e in entries if e["error"])
    return page(
        request,
        "ops/case.html",
        member,
        case_id=case_id,
        timeline=timeline,
        entries=entries,
        errors=errors,
        sources=SOURCES,
    )


# ----------------------------------------------------------------------- dead letters


@router.get("/ops/dead-letters/{topic}")
async def dead_letters(request: Request, topic: str) -> Response:
    member = await operator(request)
    letters = await ops_api(request).dead_letters(topic)
    await audit(request, member, "view_dead_letters", topic)
    return page(request, "ops/dead_letters.html", member, topic=topic, letters=letters)


async def _letter(request: Request, topic: str, partition: int, offset: int) -> dict[str, Any]:
    letters = await ops_api(request).dead_letters(topic)
    found = [d for d in letters if d["partition"] == partition and d["offset"] == offset]
    if not found:
        raise PlatformProblem(status=404, slug="not-found")
    return found[0]


@router.get("/ops/dead-letters/{topic}/{partition}/{offset}/replay")
async def confirm_replay(request: Request, topic: str, partition: int, offset: int) -> Response:
    """What the replay will send, and where, before it is sent."""
    member = await operator(request)
    letter = await _letter(request, topic, partition, offset)
    return page(request, "ops/replay.html", member, topic=topic, letter=letter)


@router.post("/ops/dead-letters/{topic}/{partition}/{offset}/replay")
async def replay(request: Request, topic: str, partition: int, offset: int) -> Response:
    member = await operator(request)
    posted = await checked_form(request)
    target = f"{topic} {partition}:{offset}"
    # The intended request is "the n-th replay of this letter" (n: the replays the confirmation
    # page saw): a double click or a retry sends the same key, a later replay a new one.
    seen = text(posted, "replays", 6)
    key = idempotency_key(
        request, "replay_dead_letter", [topic, partition, offset, seen if seen.isdigit() else ""]
    )
    try:
        await ops_api(request).replay(topic, partition, offset, key)
    except PlatformProblem as problem:
        await audit(request, member, "replay_dead_letter", target, problem.slug)
        raise
    await audit(request, member, "replay_dead_letter", target)
    ensure_session(request).set(
        FLASH,
        [
            N_("The dead letter %(where)s was sent back to %(topic)s."),
            {"where": target, "topic": topic},
        ],
    )
    return redirect(f"/ops/dead-letters/{topic}")
