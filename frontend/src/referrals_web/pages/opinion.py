"""After the opinion: reading it (the written document through this server, the structured
outcome in words), asking the center a follow-up question, and asking another center for a
further opinion (the reason, then the consent to share the earlier opinion as its own question,
then a check before it is sent).

Every action goes to intake with the case's token and an Idempotency-Key that stays the same
while the same request is sent again; intake's refusals come back on the same page, in the error
summary and beside the field, with what was typed kept.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from referrals_web.i18n import N_
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
from referrals_web.platform import PlatformProblem, PlatformUnavailable
from referrals_web.rendering import Form
from referrals_web.vocabulary import FURTHER_OPINION_REASONS, case_reference

router = APIRouter()

QUESTION_MAX = 2000
FURTHER = "further_opinion"
"""Session data: the further opinion being asked ({reason, share}) until it is sent."""

FOLLOW_UP_REFUSED = {
    "no-opinion": N_("Questions can be asked only about an opinion you received."),
    "window-closed": N_(
        "The time to ask questions about this opinion is over. Talk it over with your doctor."
    ),
    "no-questions-left": N_("You have asked all the questions you may ask about this opinion."),
}
FURTHER_REFUSED = {
    "no-opinion": N_("A further opinion can be asked for only once you have an opinion."),
    "no-opinions-left": N_("Your case has had all the opinions it may get."),
}


def has_opinion(case: dict[str, Any]) -> bool:
    """Whether the case has (or had, before a further opinion) a delivered opinion."""
    return case["status"] == "opinion_delivered" or case.get("opinion_outcome") is not None


async def _centers_documents(request: Request) -> list[dict[str, Any]]:
    """The documents the centers gave the case (kind `opinion`: the written opinions and the
    documents answering follow-up questions), newest first, as records lists them."""
    platform = runtime(request).platform
    try:
        stored = await with_case(request, platform.documents)
    except (PlatformProblem, PlatformUnavailable):
        return []
    found = [d for d in stored if d.get("kind") == "opinion"]
    return sorted(found, key=lambda d: d.get("created_at") or "", reverse=True)


def answer_documents(
    questions: list[dict[str, Any]], documents: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Each answered follow-up question's documents (by question id), in the order the center
    attached them; one records does not list (yet) is left out until it does."""
    by_id = {str(d["id"]): d for d in documents}
    return {
        str(q["id"]): [by_id[str(i)] for i in q.get("document_ids") or [] if str(i) in by_id]
        for q in questions
        if q.get("answer")
    }


def written_opinions(
    questions: list[dict[str, Any]], documents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The written opinions: the centers' documents but those attached to an answer."""
    attached = {str(i) for q in questions for i in q.get("document_ids") or []}
    return [d for d in documents if str(d["id"]) not in attached]


async def opinion_documents(request: Request, case: dict[str, Any]) -> list[dict[str, Any]]:
    """The written opinions of the case, newest first (without the documents that answer a
    follow-up question)."""
    questions = case.get("follow_up_questions") or []
    return written_opinions(questions, await _centers_documents(request))


async def _center(request: Request, case: dict[str, Any]) -> dict[str, Any] | None:
    """Who gave the opinion, from partners' routing (a help: None when it cannot be read)."""
    try:
        return await with_case(request, runtime(request).platform.routing)
    except (PlatformProblem, PlatformUnavailable):
        return None


# ------------------------------------------------------------------------- the opinion


@router.get("/case/opinion")
async def opinion(request: Request) -> Response:
    case = await read_case(request)
    if not has_opinion(case):
        return redirect("/case/status")
    questions = case.get("follow_up_questions") or []
    documents = await _centers_documents(request)
    return render(
        request,
        "opinion/opinion.html",
        case=case,
        reference=case_reference(case["id"]),
        outcome=case.get("opinion_outcome"),
        opinions=written_opinions(questions, documents),
        answer_documents=answer_documents(questions, documents),
        routing=await _center(request, case),
        questions=questions,
        meetings=[m for m in case.get("meetings") or [] if m["status"] != "cancelled"],
        flash=take_flash(request),
    )


# ------------------------------------------------------------------ a follow-up question


def _question_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "opinion/question.html",
        status_code=status_code,
        case=case,
        form=form,
        left=case.get("follow_up_questions_left") or 0,
        max_length=QUESTION_MAX,
    )


@router.get("/case/opinion/question")
async def question(request: Request) -> Response:
    case = await read_case(request)
    if not has_opinion(case):
        return redirect("/case/status")
    form = Form(values={"question": ""})
    if not case.get("follow_up_questions_left"):
        form.error("question", _follow_up_closed(case))
        return _question_page(request, case, form, status_code=409)
    return _question_page(request, case, form)


def _follow_up_closed(case: dict[str, Any]) -> str:
    if case.get("follow_up_questions"):
        return FOLLOW_UP_REFUSED["no-questions-left"]
    return FOLLOW_UP_REFUSED["window-closed"]


@router.post("/case/opinion/question")
async def ask_question(request: Request) -> Response:
    posted = await checked_form(request)
    case = await read_case(request)
    words = text(posted, "question", QUESTION_MAX + 100)
    form = Form(values={"question": words})
    if not words:
        form.error("question", N_("Write your question"))
    elif len(words) > QUESTION_MAX:
        form.error("question", N_("Your question can be at most 2000 characters long"))
    if not form.ok:
        return _question_page(request, case, form, status_code=422)
    body = {"question": words}
    key = idempotency_key(request, "follow_up", body)
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.case_action(
                case_id, token, "follow-up-questions", body, key
            ),
        )
    except PlatformProblem as problem:
        if problem.slug == "follow-up-refused":
            reason = str(problem.extensions.get("reason") or "")
            message = FOLLOW_UP_REFUSED.get(reason)
            if message:
                form.error("question", message)
            else:
                form.platform_error("question", problem.detail or problem.title)
        elif problem.status == 422:
            found = problem.fields({"/question": "question"})
            form.platform_error(
                "question", found["question"].message if found else problem.detail or problem.title
            )
        else:
            raise
        return _question_page(request, case, form, status_code=problem.status)
    flash(request, N_("Your question was sent to the center. We will tell you when it answers."))
    return redirect("/case/opinion")


# ------------------------------------------------------------------- a further opinion


def _further(request: Request) -> dict[str, Any]:
    found = ensure_session(request).data.get(FURTHER)
    return dict(found) if isinstance(found, dict) else {}


def _may_ask_further(case: dict[str, Any]) -> bool:
    return bool(case.get("further_opinions_left")) and case["status"] == "opinion_delivered"


def _no_further(request: Request, case: dict[str, Any]) -> HTMLResponse:
    form = Form()
    form.error(
        "reason",
        FURTHER_REFUSED["no-opinions-left" if has_opinion(case) else "no-opinion"],
        anchor="main",
    )
    return render(request, "opinion/further_closed.html", case=case, form=form, status_code=409)


@router.get("/case/further-opinion")
async def further_reason(request: Request) -> Response:
    case = await read_case(request)
    if not _may_ask_further(case):
        return _no_further(request, case)
    form = Form(
        values={"reason": _further(request).get("reason", "")}, anchors={"reason": "reason-0"}
    )
    return _reason_page(request, case, form)


def _reason_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "opinion/further_reason.html",
        status_code=status_code,
        case=case,
        form=form,
        left=case.get("further_opinions_left") or 0,
        back="/case/further-opinion/check"
        if request.query_params.get("return")
        else "/case/opinion",
        action=request.url.path + ("?return=check" if request.query_params.get("return") else ""),
    )


@router.post("/case/further-opinion")
async def choose_reason(request: Request) -> Response:
    posted = await checked_form(request)
    reason = text(posted, "reason", 40)
    case = await read_case(request)
    form = Form(values={"reason": reason}, anchors={"reason": "reason-0"})
    if reason not in FURTHER_OPINION_REASONS:
        form.error("reason", N_("Choose why you want a further opinion"))
        return _reason_page(request, case, form, status_code=422)
    ensure_session(request).set(FURTHER, {**_further(request), "reason": reason})
    if request.query_params.get("return") or "share" in _further(request):
        return redirect("/case/further-opinion/check")
    return redirect("/case/further-opinion/sharing")


def _sharing_page(
    request: Request,
    case: dict[str, Any],
    form: Form,
    opinions: list[dict[str, Any]],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "opinion/further_sharing.html",
        status_code=status_code,
        case=case,
        form=form,
        opinions=opinions,
    )


@router.get("/case/further-opinion/sharing")
async def sharing(request: Request) -> Response:
    case = await read_case(request)
    if not _may_ask_further(case):
        return _no_further(request, case)
    if "reason" not in _further(request):
        return redirect("/case/further-opinion")
    share = _further(request).get("share")
    form = Form(
        values={"share": "" if share is None else ("yes" if share else "no")},
        anchors={"share": "share-0"},
    )
    return _sharing_page(request, case, form, await opinion_documents(request, case))


@router.post("/case/further-opinion/sharing")
async def choose_sharing(request: Request) -> Response:
    """The consent to share the earlier opinion: asked on its own, never answered for the
    patient (no choice is made in advance)."""
    posted = await checked_form(request)
    answer = text(posted, "share", 10)
    form = Form(values={"share": answer}, anchors={"share": "share-0"})
    if answer not in ("yes", "no"):
        case = await read_case(request)
        form.error(
            "share", N_("Choose whether the next center may read the opinion you already have")
        )
        return _sharing_page(
            request, case, form, await opinion_documents(request, case), status_code=422
        )
    ensure_session(request).set(FURTHER, {**_further(request), "share": answer == "yes"})
    return redirect("/case/further-opinion/check")


def _check_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "opinion/further_check.html",
        status_code=status_code,
        case=case,
        form=form,
        further=_further(request),
    )


@router.get("/case/further-opinion/check")
async def check_further(request: Request) -> Response:
    case = await read_case(request)
    if not _may_ask_further(case):
        return _no_further(request, case)
    further = _further(request)
    if "reason" not in further:
        return redirect("/case/further-opinion")
    if "share" not in further:
        return redirect("/case/further-opinion/sharing")
    return _check_page(request, case, Form())


@router.post("/case/further-opinion/check")
async def ask_further(request: Request) -> Response:
    await checked_form(request)
    further = _further(request)
    if "reason" not in further or "share" not in further:
        return redirect("/case/further-opinion")
    body = {"reason": further["reason"], "share_earlier_opinions": bool(further["share"])}
    key = idempotency_key(request, "further_opinion", body)
    platform = runtime(request).platform
    try:
        await with_case(
            request,
            lambda case_id, token: platform.case_action(
                case_id, token, "further-opinion", body, key
            ),
        )
    except PlatformProblem as problem:
        if problem.status not in (409, 422):
            raise
        case = await read_case(request)
        form = Form()
        message = FURTHER_REFUSED.get(str(problem.extensions.get("reason") or ""))
        if message:
            form.error("send", message, anchor="main")
        else:
            form.platform_error("send", problem.detail or problem.title, anchor="main")
        return _check_page(request, case, form, status_code=problem.status)
    session = ensure_session(request)
    session.pop(FURTHER)
    flash(
        request,
        N_(
            "You asked for a further opinion. We are choosing another cancer center and will "
            "tell you."
        ),
    )
    return redirect("/case/status")
