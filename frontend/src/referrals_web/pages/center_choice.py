"""The patient chooses the cancer center: when the case asked to choose and several centers can
give the opinion, partners proposes the best-ranked ones (why each, how long it usually takes,
its price) and the case waits for the patient's choice until a date; without one, the first is
asked. The choice goes to intake with an Idempotency-Key (a double click chooses once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from referrals_web.i18n import N_
from referrals_web.pages.case import flash
from referrals_web.pages.common import (
    checked_form,
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

router = APIRouter()

CLOSED = N_(
    "The time to choose is over, or a center was chosen already: the case goes on with the "
    "center shown on your case's page."
)


def proposals(case: dict[str, Any]) -> list[dict[str, Any]]:
    found = (case.get("center_proposal") or {}).get("proposals") or []
    return sorted(found, key=lambda p: p.get("rank", 0))


def may_choose(case: dict[str, Any]) -> bool:
    proposal = case.get("center_proposal") or {}
    return case["status"] == "choosing_center" and not proposal.get("chosen")


def _page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    form.anchors.setdefault("center_code", "center_code-0")
    return render(
        request,
        "status/choose_center.html",
        status_code=status_code,
        case=case,
        form=form,
        proposals=proposals(case),
        choose_by=(case.get("center_proposal") or {}).get("choose_by"),
        open=may_choose(case),
    )


@router.get("/case/choose-center")
async def choose_center(request: Request) -> Response:
    case = await read_case(request)
    if not case.get("center_proposal"):
        return redirect("/case/status")
    form = Form(values={"center_code": ""})
    if not may_choose(case):
        form.error("center_code", CLOSED)
        return _page(request, case, form, status_code=409)
    return _page(request, case, form)


@router.post("/case/choose-center")
async def chosen(request: Request) -> Response:
    posted = await checked_form(request)
    case = await read_case(request)
    code = text(posted, "center_code", 63)
    form = Form(values={"center_code": code})
    if code not in {p["center_code"] for p in proposals(case)}:
        form.error("center_code", N_("Choose one of the cancer centers"))
        return _page(request, case, form, status_code=422)
    body = {"center_code": code}
    key = idempotency_key(request, "center_choice", body)
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.case_action(case_id, token, "center-choice", body, key),
        )
    except PlatformProblem as problem:
        if problem.slug == "choice-closed":
            form.error("center_code", CLOSED)
        elif problem.slug == "center-not-proposed":
            form.error("center_code", N_("Choose one of the cancer centers"))
        elif problem.status in (409, 422):
            form.platform_error("center_code", problem.detail or problem.title)
        else:
            raise
        return _page(request, await read_case(request), form, status_code=problem.status)
    name = next(p["center_name"] for p in proposals(case) if p["center_code"] == code)
    flash(request, N_("You chose %(center)s. We are asking it to take your case."), center=name)
    return redirect("/case/status")
