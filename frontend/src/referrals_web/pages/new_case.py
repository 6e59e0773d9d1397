"""The new case, one question per page, then "Check your answers" and the draft at intake.

Before the case exists the answers live in the session (sealed); "Create my case" sends them to
intake with an Idempotency-Key the session keeps for this form, so a double click (or a retry
after a lost answer) opens one case. Once the case exists, the same pages change it (PATCH).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from referrals_web import forms, icd10
from referrals_web.forms import STEP_BY_SLUG, STEPS, Step
from referrals_web.i18n import countries
from referrals_web.pages.common import (
    checked_form,
    current_session,
    ensure_session,
    locale_of,
    read_case,
    redirect,
    render,
    runtime,
    with_case,
)
from referrals_web.platform import PlatformProblem
from referrals_web.rendering import Form
from referrals_web.vocabulary import case_reference

router = APIRouter()

DRAFT = "draft"
DRAFT_KEY = "draft_key"
CREATED_WITH = "created_with_key"


def _draft(request: Request) -> dict[str, Any]:
    """The answers so far; a new draft gets the Idempotency-Key its case will be opened with,
    so every later click (two at once, or one again after a lost answer) carries the same."""
    session = ensure_session(request)
    draft = session.data.get(DRAFT)
    if not isinstance(draft, dict):
        draft = {}
        session.set(DRAFT, draft)
    if not session.data.get(DRAFT_KEY):
        session.set(DRAFT_KEY, str(uuid4()))
    return draft


def _previous(step: Step) -> str:
    index = STEPS.index(step)
    return "/" if index == 0 else f"/new/{STEPS[index - 1].slug}"


def _context(
    request: Request, step: Step, form: Form, *, editing: bool, back: str, action: str
) -> dict[str, Any]:
    return {
        "step": step,
        "form": form,
        "editing": editing,
        "back": back,
        "action": action,
        "step_number": STEPS.index(step) + 1,
        "step_count": len(STEPS),
        "countries": countries(locale_of(request)),
        "suggestions": icd10.suggest(form.value("icd10")) if step.slug == "diagnosis" else [],
    }


def _page(request: Request, step: Step, form: Form, *, status_code: int = 200) -> HTMLResponse:
    session = current_session(request)
    editing = session is not None and session.case_id is not None
    returning = request.query_params.get("return")
    back = "/case/submit" if editing else "/new/check" if returning == "check" else _previous(step)
    to_check = not editing and (returning == "check" or request.url.path == "/new/check")
    action = f"/new/{step.slug}" + ("?return=check" if to_check else "")
    return render(
        request,
        step.template,
        status_code=status_code,
        **_context(request, step, form, editing=editing, back=back, action=action),
    )


@router.get("/new")
async def new_case() -> Response:
    return redirect("/new/diagnosis")


@router.post("/new/start-again")
async def start_again(request: Request) -> Response:
    """Leave the case of this session (it stays at intake) and start another."""
    await checked_form(request)
    session = ensure_session(request)
    session.case_id = None
    session.case_token = None
    for key in (DRAFT, DRAFT_KEY, CREATED_WITH, "token_expires_at"):
        session.pop(key)
    session.changed = True
    return redirect("/new/diagnosis")


@router.get("/new/check")
async def check_answers(request: Request) -> Response:
    session = ensure_session(request)
    if session.case_id is not None:
        return redirect("/case/submit")
    draft = _draft(request)
    missing = forms.complete(draft)
    if missing is not None:
        return redirect(f"/new/{missing.slug}")
    return render(
        request,
        "new/check.html",
        answers=forms.case_request(draft, session.locale),
        change=lambda slug: f"/new/{slug}?return=check",
    )


@router.post("/new/check")
async def create_case(request: Request) -> Response:
    """Open the draft at intake with the session's Idempotency-Key: one case per form."""
    await checked_form(request)
    session = ensure_session(request)
    draft = _draft(request)
    key = session.data[DRAFT_KEY]
    if session.case_id is not None and session.data.get(CREATED_WITH) == key:
        return redirect("/case")  # the first click already opened it
    missing = forms.complete(draft)
    if missing is not None:
        return redirect(f"/new/{missing.slug}")
    platform = runtime(request).platform
    try:
        case, token = await platform.create_case(forms.case_request(draft, session.locale), key)
    except PlatformProblem as problem:
        if problem.status != 422:
            raise
        return _refused(request, problem, draft)
    case_id = UUID(case["id"])
    session.open_case(case_id, token.token, token.expires_at)
    session.set(CREATED_WITH, key)
    await runtime(request).directory.remember(case_id, case_reference(case_id))
    return redirect("/case")


def _refused(request: Request, problem: PlatformProblem, values: dict[str, Any]) -> HTMLResponse:
    """Intake refused the answers: the page of the first field it named, with its message
    beside the field and in the summary, and what was typed kept."""
    found = problem.fields(forms.POINTERS)
    if not found:
        step = STEPS[0]
        form = Form(values={n: values.get(n, "") for n in step.fields})
        form.platform_error("icd10", problem.detail or problem.title)
        return _page(request, step, form, status_code=422)
    first_field = next(iter(found))
    step = STEP_BY_SLUG[forms.FIELD_STEP[first_field]]
    form = Form(
        values={n: values.get(n, forms._empty(n)) for n in step.fields}, anchors=dict(forms.ANCHORS)
    )
    for name in found:
        if forms.FIELD_STEP.get(name) == step.slug:
            form.error(name, forms.FIELD_MESSAGES.get(name, found[name].message))
    return _page(request, step, form, status_code=422)


@router.get("/new/{slug}")
async def question(request: Request, slug: str) -> Response:
    step = STEP_BY_SLUG.get(slug)
    if step is None:
        return redirect("/new/diagnosis")
    session = ensure_session(request)
    if session.case_id is not None:
        case = await read_case(request)
        if case["status"] != "draft":
            return redirect("/case/status")
        values = forms.values_from_case(case)
    else:
        values = _draft(request)
    form = Form(values={n: values.get(n, forms._empty(n)) for n in step.fields})
    if step.slug == "contact" and not form.values.get("preferred_channel"):
        form.values["preferred_channel"] = "email"
    if step.slug == "destination" and not form.values.get("center_choice"):
        form.values["center_choice"] = "automatic"  # what routing does unless the patient asks
    return _page(request, step, form)


@router.post("/new/{slug}")
async def answer(request: Request, slug: str) -> Response:
    step = STEP_BY_SLUG.get(slug)
    if step is None:
        return redirect("/new/diagnosis")
    posted = await checked_form(request)
    session = ensure_session(request)
    form = forms.validate(step, forms.form_values(posted, step))
    if not form.ok:
        return _page(request, step, form, status_code=422)
    if session.case_id is not None:
        change = forms.part(step, form.values)
        platform = runtime(request).platform
        try:
            await with_case(
                request, lambda case_id, token: platform.edit_case(case_id, token, change)
            )
        except PlatformProblem as problem:
            if problem.status != 422:
                raise
            return _refused(request, problem, form.values)
        return redirect("/case/submit")
    draft = _draft(request)
    draft.update(form.values)
    session.changed = True
    if request.query_params.get("return") == "check":
        return redirect("/new/check")
    index = STEPS.index(step)
    return redirect(f"/new/{STEPS[index + 1].slug}" if index + 1 < len(STEPS) else "/new/check")


@router.get("/icd10/suggestions")
async def icd10_suggestions(request: Request, icd10_query: str = "") -> HTMLResponse:
    """`<option>`s for the diagnosis field's datalist (htmx fills it as the patient types)."""
    query = request.query_params.get("icd10") or icd10_query
    return render(request, "new/icd10_options.html", suggestions=icd10.suggest(query))
