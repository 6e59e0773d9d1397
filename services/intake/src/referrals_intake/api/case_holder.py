"""The case holder's routes, with the case's access token (`Authorization: Bearer`): read the
case, edit the draft, record consents, submit or withdraw it, complete the checklist, answer a
center's request, choose a center, ask a follow-up question or a further opinion, book or cancel
the meeting, read the timeline and the FHIR export. A token opens its own case only: another
case is a 404, as if it did not exist. The live timeline is `case_events`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from referrals_common.api.idempotency import request_fingerprint as request_hash
from referrals_common.api.problems import (
    Conflict,
    FieldError,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
)
from referrals_common.contracts.information import Shipment
from referrals_common.contracts.intake import Preparation
from referrals_common.db import UnitOfWork
from referrals_common.edge.principals import CaseAccess
from referrals_common.i18n import case_texts
from referrals_intake import meetings as meeting_use_cases
from referrals_intake import rendering
from referrals_intake.api.case_view import (
    claim_or_replay,
    key_claim,
    load,
    public_case,
    replayed_case,
    to_public,
)
from referrals_intake.api.deps import (
    CaseAccessDep,
    IdempotencyKey,
    RuntimeDep,
    UowDep,
    audit,
    single_statements,
)
from referrals_intake.bootstrap import Runtime
from referrals_intake.fhir import case_bundle
from referrals_intake.fhir_view import case_for_fhir
from referrals_intake.lifecycle import CONTACT_MISSING, MISSING_CODES, IllegalTransition
from referrals_intake.rendering import AcceptLanguage
from referrals_intake.repository import Audited, CaseRepository, KeyClaimedBefore, case_view
from referrals_intake.schemas import (
    AnswerIn,
    CasePublic,
    CaseUpdate,
    CenterChoiceIn,
    ConsentIn,
    FollowUpIn,
    FurtherOpinionIn,
    MeetingCancelIn,
    MeetingChoiceIn,
    TimelineEntryPublic,
    WithdrawIn,
)
from referrals_intake.service import (
    AnswerInvalid,
    CaseNotEditable,
    CaseNotFound,
    ChoiceRefused,
    ConsentVersionUnknown,
    DocumentsNotReady,
    FollowUpRefused,
    FurtherOpinionRefused,
    RequestClosed,
    RequestNotFound,
    SubmissionIncomplete,
)

router = APIRouter(prefix="/v1")
CASE_ERRORS = problem_responses(401, 404, 409, 422)


async def refused(
    request: Request, actor: str, action: str, case_id: UUID, conflict: ProblemError
) -> ProblemError:
    """Audit a refused change (its transaction rolls back, so in a transaction of its own) and
    return the problem to raise: every 409 leaves a row naming the case it was about."""
    await audit(request, actor, action, outcome="conflict", case_id=case_id)
    return conflict


async def replay_for_case(
    uow: UnitOfWork,
    runtime: Runtime,
    access: CaseAccess,
    operation: str,
    key: str | None,
    fingerprint: str,
    response: Response,
) -> CasePublic | None:
    """A case action's `Idempotency-Key`: the case as it is when the key was used before for
    the same request (marked `Idempotent-Replayed`, status 200), or None after claiming it."""
    replayed = await claim_or_replay(
        uow, access.client_id, operation, key, fingerprint, access.case_id
    )
    if replayed is None:
        return None
    response.status_code = status.HTTP_200_OK
    response.headers["Idempotent-Replayed"] = "true"
    repo = CaseRepository(uow.session)
    return await to_public(runtime, repo, await load(repo, replayed))


# ------------------------------------------------------------------------------- routes


@router.get(
    "/cases/{case_id}", response_model=CasePublic, responses=CASE_ERRORS, summary="Read a case"
)
async def read_case(
    access: CaseAccessDep,
    runtime: RuntimeDep,
    response: Response,
    accept_language: AcceptLanguage = None,
) -> CasePublic:
    """The case as the patient sees it: what they entered, its status and the next step, its
    documents, the center's requests and answers, the opinion and meetings, with its texts in
    the case's language (or the one `Accept-Language` asks for). Audited."""
    # Front ends poll this read: the case, its parts and the access audit row are one statement
    # that commits by itself (`case_view`), no transaction around it.
    async with single_statements(runtime.db) as connection:
        found = await case_view(connection, access.case_id, Audited(access.actor, "read_case"))
    if found is None:
        raise NotFound(f"There is no case {access.case_id}.")
    case, parts = found
    locale = rendering.text_locale(case, accept_language, response)
    return public_case(runtime, case, parts, locale)


@router.patch(
    "/cases/{case_id}", response_model=CasePublic, responses=CASE_ERRORS, summary="Edit a draft"
)
async def edit_case(
    body: CaseUpdate, request: Request, access: CaseAccessDep, runtime: RuntimeDep, uow: UowDep
) -> CasePublic:
    """Change the fields given (a field left out stays as it is) while the case is a draft;
    after submission the case no longer changes (409). A field it requires cannot be emptied
    (422, field by field)."""
    repo = CaseRepository(uow.session)
    try:
        case = await runtime.intake.edit_case(uow, access.case_id, body)
    except ValidationError as exc:
        # An edit that leaves the case incomplete (null for a field it requires): the same
        # 422 as a request that failed validation, field by field.
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except CaseNotEditable as exc:
        raise await refused(
            request, access.actor, "edit_case", access.case_id, Conflict(str(exc))
        ) from None
    public = await to_public(runtime, repo, case, audited=Audited(access.actor, "edit_case"))
    await uow.commit()
    return public


@router.put(
    "/cases/{case_id}/consents/{kind}",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Record the patient's consent",
)
async def give_consent(
    kind: Literal["processing", "cross_border"],
    body: ConsentIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
) -> CasePublic:
    """Consent to the processing of health data, or to the transfer of the case abroad, to the
    given version of the text shown to the patient; the time is recorded by the server."""
    # The consent, the case's change, its audit row and the case read back are one statement
    # that commits by itself (`repository.give_consent`), no transaction around it.
    try:
        async with single_statements(runtime.db) as connection:
            case, parts = await runtime.intake.give_consent_now(
                connection,
                access.case_id,
                kind,
                body.version,
                audited=Audited(access.actor, f"consent_{kind}"),
            )
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except CaseNotEditable as exc:
        raise await refused(
            request, access.actor, f"consent_{kind}", access.case_id, Conflict(str(exc))
        ) from None
    except ConsentVersionUnknown as exc:
        raise Unprocessable(
            str(exc),
            errors=[
                FieldError(
                    pointer="/version",
                    location="body",
                    message=str(exc),
                    code="unknown_version",
                )
            ],
        ) from None
    return public_case(runtime, case, parts)


@router.post(
    "/cases/{case_id}/submit",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Submit the case",
)
async def submit_case(
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """Submit a draft. Refused (422, with the list in `missing`) while it lacks evidence of the
    diagnosis or a consent it needs."""
    operation = f"submit_case:{access.case_id}"
    # The key is claimed in the statement that locks the case (a key used before: the first
    # request's case read back instead), and the transaction runs on asyncpg itself.
    claim = (
        None
        if idempotency_key is None
        else key_claim(
            access.client_id, operation, idempotency_key, request_hash(operation), access.case_id
        )
    )
    try:
        # The access audit row is written with the case (`submit_case`), and the answer's
        # parts were read with it: nothing is read again for the answer.
        case = await runtime.intake.submit_case(
            uow, access.case_id, claim=claim, audited=Audited(access.actor, "submit_case")
        )
    except KeyClaimedBefore:
        assert claim is not None
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
        repo = CaseRepository(uow.session)
        return await to_public(runtime, repo, await load(repo, await replayed_case(uow, claim)))
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except SubmissionIncomplete as exc:
        fields = (
            [
                FieldError(
                    pointer="/contact",
                    location="body",
                    code="unreachable",
                    message="no e-mail address nor phone number, and the front end takes no "
                    "webhooks: the patient could not be told what happens",
                )
            ]
            if CONTACT_MISSING in exc.missing
            else []
        )
        case = await load(CaseRepository(uow.session), access.case_id)
        raise Unprocessable(
            "The case cannot be submitted yet.",
            type_slug="submission-incomplete",
            title="The case is incomplete",
            errors=fields or None,
            extensions={
                "missing": exc.missing,
                "missing_items": [
                    {"code": code, "text": case_texts.missing(code, case.locale)}
                    for code in (MISSING_CODES[m] for m in exc.missing)
                ],
            },
        ) from None
    except IllegalTransition as exc:
        raise await refused(
            request,
            access.actor,
            "submit_case",
            access.case_id,
            Conflict(f"The case is {exc.current}: it was submitted already."),
        ) from None
    public = await to_public(runtime, runtime.intake.repository(uow), case)
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/withdraw",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Withdraw the case",
)
async def withdraw_case(
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    body: Annotated[WithdrawIn | None, Body()] = None,
) -> CasePublic:
    """The patient no longer wants the opinion (a reason is optional): the case closes, its
    open requests are cancelled, and the other services are told. A case already closed cannot
    be withdrawn (409)."""
    repo = CaseRepository(uow.session)
    try:
        case = await runtime.intake.withdraw_case(
            uow, access.case_id, body.reason if body else None
        )
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except IllegalTransition as exc:
        raise await refused(
            request,
            access.actor,
            "withdraw_case",
            access.case_id,
            Conflict(f"The case is {exc.current} and can no longer be withdrawn."),
        ) from None
    public = await to_public(runtime, repo, case, audited=Audited(access.actor, "withdraw_case"))
    await uow.commit()
    return public


@router.put(
    "/cases/{case_id}/preparation",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Complete the preparation checklist",
)
async def set_preparation(
    body: Preparation, request: Request, access: CaseAccessDep, runtime: RuntimeDep, uow: UowDep
) -> CasePublic:
    """Family history, current medications with doses, allergies: replaced as a whole, at any
    time until the case is closed. A center that asked for them (`still_missing`) reads them
    once the answer is sent; an accepting center reads them with the case."""
    repo = CaseRepository(uow.session)
    try:
        case = await runtime.intake.set_preparation(uow, access.case_id, body)
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except CaseNotEditable as exc:
        raise await refused(
            request,
            access.actor,
            "set_preparation",
            access.case_id,
            Conflict(f"The case is {exc.status}: its checklist can no longer change."),
        ) from None
    public = await to_public(runtime, repo, case, audited=Audited(access.actor, "set_preparation"))
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/information-requests/{request_id}/answer",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Send the answer to a center's request",
)
async def answer_request(
    request_id: UUID,
    body: AnswerIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """ "Send to the center": the written answer, the documents (uploaded to records first,
    each stored and accepted by the language check) and the shipments of slides or blocks go
    to the center that asked, and the case goes back to it. Refused with nothing changed: a
    request that is not open or is past due (409 `request-closed`), a document still being
    checked (409 `documents-being-checked`, with `Retry-After`) or refused by its check (409
    `documents-not-accepted`), a document that is not the patient's of this case or an empty
    answer (422)."""
    repo = CaseRepository(uow.session)
    operation = f"answer:{request_id}"  # request ids are unique across cases
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        # The case is in the fingerprint: another case's token replaying it is refused.
        request_hash(operation, str(access.case_id), body.model_dump(mode="json")),
        response,
    )
    if replayed is not None:
        return replayed
    try:
        case = await runtime.intake.answer_request(
            uow,
            access.case_id,
            request_id,
            answer=body.answer,
            document_ids=body.document_ids,
            shipments=[Shipment(shipment_id=uuid4(), **s.model_dump()) for s in body.shipments],
        )
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except RequestNotFound:
        raise NotFound(f"There is no information request {request_id} on this case.") from None
    except RequestClosed as exc:
        raise await refused(
            request,
            access.actor,
            "answer_request",
            access.case_id,
            ProblemError(
                str(exc),
                status=409,
                title="The request can no longer be answered",
                type_slug="request-closed",
                extensions={"request_status": exc.status},
            ),
        ) from None
    except DocumentsNotReady as exc:
        problem = (
            ProblemError(
                f"A document of the answer is {exc}. Replace it (a translation, a clearer copy), "
                "then send the answer again.",
                status=409,
                title="A document of the answer was not accepted",
                type_slug="documents-not-accepted",
                extensions={"documents": exc.refused},
            )
            if exc.refused
            else ProblemError(
                f"A document of the answer is {exc}; send the answer again in a few seconds.",
                status=409,
                title="A document of the answer is still being checked",
                type_slug="documents-being-checked",
                headers={"Retry-After": "5"},
                extensions={"documents": exc.pending},
            )
        )
        raise await refused(
            request, access.actor, "answer_request", access.case_id, problem
        ) from None
    except AnswerInvalid as exc:
        if not exc.pointer:
            raise Unprocessable(
                str(exc), type_slug="empty-answer", title="The answer is empty"
            ) from None
        raise Unprocessable(
            str(exc),
            type_slug="answer-invalid",
            title="The answer names a document it may not",
            errors=[
                FieldError(pointer=exc.pointer, location="body", code=exc.code, message=str(exc))
            ],
        ) from None
    public = await to_public(runtime, repo, case, audited=Audited(access.actor, "answer_request"))
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/center-choice",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Choose one of the proposed cancer centers",
)
async def choose_center(
    body: CenterChoiceIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """While the case is `choosing_center` and before `center_proposal.choose_by`: partners
    offers the case to that center. Refused with nothing changed: 409 `choice-closed` (not
    choosing, or too late: the first-ranked center was offered it), 422 `center-not-proposed`."""
    repo = CaseRepository(uow.session)
    operation = f"choose_center:{access.case_id}"
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        request_hash(operation, body.center_code),
        response,
    )
    if replayed is not None:
        return replayed
    try:
        case = await runtime.intake.choose_center(uow, access.case_id, body.center_code)
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except ChoiceRefused as exc:
        if exc.reason == "unknown":
            raise Unprocessable(
                str(exc),
                type_slug="center-not-proposed",
                title="That center was not proposed",
                errors=[
                    FieldError(
                        pointer="/center_code",
                        location="body",
                        code="not_proposed",
                        message=str(exc),
                    )
                ],
            ) from None
        raise await refused(
            request,
            access.actor,
            "choose_center",
            access.case_id,
            ProblemError(
                str(exc), status=409, title="The choice is closed", type_slug="choice-closed"
            ),
        ) from None
    public = await to_public(runtime, repo, case, audited=Audited(access.actor, "choose_center"))
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/follow-up-questions",
    response_model=CasePublic,
    status_code=status.HTTP_201_CREATED,
    responses=CASE_ERRORS,
    summary="Ask the center a follow-up question on its opinion",
)
async def ask_follow_up(
    body: FollowUpIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """After the opinion, within the window (30 days by default) and up to the allowed number
    (3 by default, `follow_up_questions_left`): the center that gave the opinion answers in
    writing, and the patient is told. Refused with nothing changed: 409 `follow-up-refused`
    (`reason`: no-opinion, window-closed, no-questions-left)."""
    operation = f"follow_up:{access.case_id}"
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        request_hash(operation, body.question),
        response,
    )
    if replayed is not None:
        return replayed
    return await _case_action(
        request,
        runtime,
        uow,
        access,
        "ask_follow_up",
        runtime.intake.ask_follow_up(uow, access.case_id, body.question),
        {
            FollowUpRefused: lambda exc: ProblemError(
                str(exc),
                status=409,
                title="No follow-up question can be asked now",
                type_slug="follow-up-refused",
                extensions={"reason": getattr(exc, "reason", None)},
            )
        },
    )


@router.post(
    "/cases/{case_id}/further-opinion",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Ask another cancer center for a further opinion",
)
async def ask_further_opinion(
    body: FurtherOpinionIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """After an opinion (seed 003: opinions that conflict may need a further one), up to the
    case's allowed number (`further_opinions_left`): the case is `ready` again and goes to a
    center it was never offered to. The earlier opinions go with it only if
    `share_earlier_opinions` is true: the front end asks this as its own consent step. If no
    other center can take it, the case keeps the opinion it has. Refused with nothing changed:
    409 `further-opinion-refused` (`reason`: no-opinion, no-opinions-left)."""
    operation = f"further_opinion:{access.case_id}"
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        request_hash(operation, body.reason.value, str(body.share_earlier_opinions)),
        response,
    )
    if replayed is not None:
        return replayed
    return await _case_action(
        request,
        runtime,
        uow,
        access,
        "ask_further_opinion",
        runtime.intake.request_further_opinion(
            uow, access.case_id, body.reason, body.share_earlier_opinions
        ),
        {
            FurtherOpinionRefused: lambda exc: ProblemError(
                str(exc),
                status=409,
                title="No further opinion can be asked now",
                type_slug="further-opinion-refused",
                extensions={"reason": getattr(exc, "reason", None)},
            )
        },
    )


@router.post(
    "/cases/{case_id}/meetings/{meeting_id}/booking",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Book one of the times the center offered for the consultation meeting",
)
async def book_meeting(
    meeting_id: UUID,
    body: MeetingChoiceIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """Also to move a booked meeting to another of the offered times. The meeting shows
    `booking` until the center's calendar confirms it (a moment); then the patient gets the
    confirmation with a calendar file, and reminders a day and an hour before. Refused with
    nothing changed: 404 for a meeting not on the case, 409 `meeting-closed` (held, missed,
    cancelled, or the case withdrawn), 422 `slot-not-offered` (not one of its times, or past)."""
    operation = f"meeting_booking:{meeting_id}"  # the key's record binds the case
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        request_hash(operation, str(body.slot_id), body.time_zone),
        response,
    )
    if replayed is not None:
        return replayed
    return await _case_action(
        request,
        runtime,
        uow,
        access,
        "book_meeting",
        meeting_use_cases.choose_slot(
            uow, access.case_id, meeting_id, body.slot_id, body.time_zone
        ),
        MEETING_REFUSALS,
    )


@router.post(
    "/cases/{case_id}/meetings/{meeting_id}/cancellation",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Cancel the consultation meeting",
)
async def cancel_meeting(
    meeting_id: UUID,
    body: MeetingCancelIn,
    request: Request,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """An offered or booked meeting; the center is told (the reason code only), and may offer
    new times. 409 `meeting-closed` when it is no longer open."""
    operation = f"meeting_cancellation:{meeting_id}"
    replayed = await replay_for_case(
        uow,
        runtime,
        access,
        operation,
        idempotency_key,
        request_hash(operation, body.reason.value),
        response,
    )
    if replayed is not None:
        return replayed
    return await _case_action(
        request,
        runtime,
        uow,
        access,
        "cancel_meeting",
        meeting_use_cases.cancel(uow, access.case_id, meeting_id, body.reason),
        MEETING_REFUSALS,
    )


Refusal = Callable[[Exception], ProblemError]
"""How a use case's refusal reads as a problem (audited as a refused change)."""


async def _case_action(
    request: Request,
    runtime: Runtime,
    uow: UnitOfWork,
    access: CaseAccess,
    action: str,
    change: Awaitable[Any],
    refusals: dict[type[Exception], Refusal],
) -> CasePublic:
    """Run a patient's action on the case (`change`, a use case in `uow`), audited: the case as
    it is then, committed; or a problem with nothing applied. An unknown case, or a meeting not
    on it, is a 404; each exception in `refusals` is audited and answered as it says."""
    repo = CaseRepository(uow.session)
    try:
        await change
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except meeting_use_cases.MeetingNotFound as exc:
        raise NotFound(f"There is no meeting {exc} on this case.") from None
    except tuple(refusals) as exc:
        problem = next(make(exc) for kind, make in refusals.items() if isinstance(exc, kind))
        raise await refused(request, access.actor, action, access.case_id, problem) from None
    public = await to_public(
        runtime, repo, await load(repo, access.case_id), audited=Audited(access.actor, action)
    )
    await uow.commit()
    return public


MEETING_REFUSALS: dict[type[Exception], Refusal] = {
    meeting_use_cases.MeetingClosed: lambda exc: ProblemError(
        str(exc),
        status=409,
        title="The meeting can no longer be changed",
        type_slug="meeting-closed",
        extensions={"meeting_status": getattr(exc, "status", None)},
    ),
    meeting_use_cases.SlotNotOffered: lambda exc: ProblemError(
        str(exc), status=422, title="That time is not offered", type_slug="slot-not-offered"
    ),
}


@router.get(
    "/cases/{case_id}/timeline",
    response_model=list[TimelineEntryPublic],
    responses=CASE_ERRORS,
    summary="Every status change, with what to do next",
)
async def timeline(
    access: CaseAccessDep,
    uow: UowDep,
    response: Response,
    accept_language: AcceptLanguage = None,
) -> list[TimelineEntryPublic]:
    """Oldest first: each status the case went through, why, and what the patient does next,
    in the case's language (or the one `Accept-Language` asks for)."""
    repo = CaseRepository(uow.session)
    case = await load(repo, access.case_id)
    locale = rendering.text_locale(case, accept_language, response)
    entries = await repo.timeline(access.case_id)
    repo.audit(access.actor, "read_timeline", access.case_id)
    await uow.commit()
    return [
        TimelineEntryPublic.model_validate(rendering.timeline_entry(e, locale)) for e in entries
    ]


@router.get(
    "/cases/{case_id}/fhir",
    responses={
        200: {
            "content": {"application/fhir+json": {}},
            "description": "A FHIR R4 Bundle: ServiceRequest, Task, Condition, Patient, "
            "DocumentReference per document, Consent per consent (and per further opinion "
            "that shares the earlier opinions), CommunicationRequest and Communication per "
            "request for information and follow-up question, Appointment per consultation "
            "meeting",
        },
        **CASE_ERRORS,
    },
    summary="The case as a FHIR R4 Bundle",
)
async def fhir_view(access: CaseAccessDep, runtime: RuntimeDep, uow: UowDep) -> JSONResponse:
    """The same case in FHIR R4 (`application/fhir+json`), for a hospital system or a
    patient's record: one Bundle, valid for the official HL7 validator."""
    repo = CaseRepository(uow.session)
    case = await load(repo, access.case_id)
    view = await case_for_fhir(repo, case, runtime.intake.public_fields(case))
    repo.audit(access.actor, "read_fhir", case.id)
    await uow.commit()
    return JSONResponse(
        case_bundle(view, base_url=runtime.settings.public_base_url),
        media_type="application/fhir+json",
    )
