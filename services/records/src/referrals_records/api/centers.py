"""A cancer center, with its API key, under `/v1/referrals/{referral_id}`: the documents of a
case offered to it (under neutral names), a download link to one, its written opinion (in one
request or resumable in parts) once it accepted, and the documents answering a follow-up
question after it. Every step asks again whether the referral is this center's and open: one
declined, expired or withdrawn meanwhile ends its access. Problems to a center are English."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from referrals_common.api.pagination import LINK_HEADER, Cursor, OptionalLimit
from referrals_common.api.problems import NotFound, problem_responses
from referrals_common.contracts import DocumentKind
from referrals_common.db import UnitOfWork
from referrals_records.api import uploading
from referrals_records.api.deps import CenterDep, RuntimeDep, UowDep, audit
from referrals_records.api.documents import (
    DocumentId,
    DocumentPublic,
    DownloadLink,
    link_to,
    page,
    public,
)
from referrals_records.api.problems import (
    ReferralNotAccepted,
    ReferralNotKnownYet,
    not_known_yet_response,
)
from referrals_records.api.uploading import (
    PART_BODY,
    IdempotencyKey,
    OpinionUploadCreate,
    Owner,
    PartNumber,
    UploadId,
    UploadPublic,
    progress_answer,
)
from referrals_records.bootstrap import Runtime
from referrals_records.inspection import ACCEPTED_MEDIA_TYPES
from referrals_records.models import CenterReferral, Document
from referrals_records.uploads import read_upload as read_form

router = APIRouter(prefix="/v1")

ONE_FILE = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def neutral_names(docs: list[Document]) -> dict[UUID, str]:
    """Names a center sees instead of the patient's file names, which may carry the patient's
    name: `<kind>-<n>.<extension>` (`pathology-report-1.pdf`), numbered per kind in the order
    the documents were stored (`docs` in that order)."""
    counts: dict[str, int] = {}
    names: dict[UUID, str] = {}
    for doc in docs:
        counts[doc.kind] = counts.get(doc.kind, 0) + 1
        extensions = ACCEPTED_MEDIA_TYPES.get(doc.media_type, ("",))
        names[doc.id] = f"{doc.kind.replace('_', '-')}-{counts[doc.kind]}{extensions[0]}"
    return names


async def _offered(
    runtime: Runtime,
    uow: UnitOfWork,
    center: str,
    referral_id: UUID,
    request: Request,
    *,
    accepted: bool = False,
) -> CenterReferral:
    """The open referral `referral_id` of `center` (`accepted`: one it has accepted)."""
    actor = f"center:{center}"
    referral = await runtime.records.referral(uow, referral_id)
    if referral is None:
        # Not heard of at all (not even a decline or an expiry): maybe still on its way.
        await audit(request, actor, case_id=None, outcome="not_known_yet")
        raise ReferralNotKnownYet(referral_id)
    # Another center's referral, a declined, expired or completed one, or a withdrawn case.
    if referral.center_code != center or referral.closed_at is not None:
        await audit(request, actor, case_id=referral.case_id, outcome="denied")
        raise NotFound(f"There is no referral {referral_id} for this center.")
    if accepted and referral.accepted_at is None:
        await audit(request, actor, case_id=referral.case_id, outcome="conflict")
        raise ReferralNotAccepted(referral_id)
    return referral


async def _accepted(
    runtime: Runtime, center: str, referral_id: UUID, request: Request
) -> CenterReferral:
    """The open referral `referral_id` that `center` accepted, for an upload: read in a unit of
    work of its own, not the request's, as the upload's bytes stream after it and no
    transaction is held across a stream."""
    async with runtime.db.unit_of_work() as uow:
        return await _offered(runtime, uow, center, referral_id, request, accepted=True)


@router.get(
    "/referrals/{referral_id}/documents",
    response_model=list[DocumentPublic],
    responses={
        200: {"headers": LINK_HEADER},
        **problem_responses(401, 404, 422),
        **not_known_yet_response("documents"),
    },
    summary="Documents of a referral (center)",
)
async def center_documents(
    referral_id: UUID,
    center: CenterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
    limit: OptionalLimit = None,
    cursor: Cursor = None,
) -> list[DocumentPublic]:
    """The documents of a case offered to this center, oldest first: the patient's, under
    neutral names (`pathology-report-1.pdf`, never the patient's file names), and this center's
    own uploads, never another center's; audited. With `limit`, a page: the `Link` header names
    the next one. Asked a moment after the offer, before records has heard of the referral: 409
    `referral-not-known-yet`, retry after `Retry-After` seconds."""
    scope = {"list": "records.referral-documents", "center": center, "referral": referral_id}
    referral = await _offered(runtime, uow, center, referral_id, request)
    docs = await runtime.records.documents(uow, referral.case_id, for_center=center)
    await audit(request, f"center:{center}", "list", case_id=referral.case_id)
    names = neutral_names(docs)  # numbered over the whole list, the same on every page
    return [
        public(d, names[d.id]) for d in page(runtime, docs, scope, request, response, limit, cursor)
    ]


@router.get(
    "/referrals/{referral_id}/documents/{document_id}",
    response_model=DownloadLink,
    responses={
        **problem_responses(401, 404),
        **not_known_yet_response(f"documents/{UUID(int=1)}"),
    },
    summary="Download a document (center)",
)
async def center_download(
    referral_id: UUID,
    document_id: DocumentId,
    center: CenterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
) -> DownloadLink:
    """A short-lived link to one document of a case offered to this center (the patient's, or
    its own upload), under its neutral name; audited. Asked a moment after the offer, before
    records has heard of the referral: 409 `referral-not-known-yet`, retry after `Retry-After`
    seconds."""
    actor = f"center:{center}"
    referral = await _offered(runtime, uow, center, referral_id, request)
    docs = await runtime.records.documents(uow, referral.case_id, for_center=center)
    doc = next((d for d in docs if d.id == document_id), None)
    if doc is None:
        await audit(
            request,
            actor,
            "download_link",
            case_id=referral.case_id,
            document_id=document_id,
            outcome="denied",
        )
        raise NotFound(f"There is no document {document_id} in this referral.")
    name = neutral_names(docs)[doc.id]
    await audit(request, actor, "download_link", case_id=referral.case_id, document_id=document_id)
    return link_to(request, runtime, doc, actor, referral.referral_id, name)


@router.post(
    "/referrals/{referral_id}/opinion",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentPublic,
    responses={
        200: {"model": DocumentPublic, "description": "The same file was already uploaded"},
        **problem_responses(400, 401, 404, 413, 415),
        **not_known_yet_response(
            "opinion",
            also="`referral-not-accepted`: the center has not accepted the referral (or records "
            "has not heard of it yet: retry after `Retry-After`); `conflict`: the case is closed "
            "and takes no more documents, or the file is a document this referral did not upload",
        ),
    },
    summary="Upload the written opinion (center)",
    openapi_extra=ONE_FILE,
)
async def upload_opinion(
    referral_id: UUID, center: CenterDep, runtime: RuntimeDep, request: Request, response: Response
) -> DocumentPublic:
    """The center's written opinion on a referral it accepted, checked like every upload and
    stored as a document of kind `opinion` that names this referral and this center; then
    deliver it through partners' `POST /v1/partner/referrals/{referral_id}/opinion` with the
    returned id. Only the center that uploaded it can deliver it, and no other center sees it."""
    referral = await _accepted(runtime, center, referral_id, request)
    return await _store_center_upload(
        runtime, request, response, center, referral, "upload_opinion"
    )


async def _store_center_upload(
    runtime: Runtime,
    request: Request,
    response: Response,
    center: str,
    referral: CenterReferral,
    action: str,
) -> DocumentPublic:
    """A center's own upload on its referral (its opinion, or a document answering a follow-up
    question): kind `opinion`, naming the referral and the center; audited as `action`."""
    actor = f"center:{center}"
    document = await uploading.store(
        request,
        runtime,
        response,
        referral.case_id,
        DocumentKind.OPINION,
        await read_form(request),
        actor,
        None,
        referral,
    )
    await audit(request, actor, action, case_id=referral.case_id, document_id=document.id)
    return document


async def _answering(
    runtime: Runtime, center: str, referral_id: UUID, question_id: UUID, request: Request
) -> CenterReferral:
    """The referral `referral_id` of `center` that gave its opinion (or is about to: records may
    hear of the delivery a moment late) and has the unanswered follow-up question
    `question_id`; 404 for any other referral, question or center. Read in a unit of work of
    its own, not the request's: the answer's bytes stream after it."""
    actor = f"center:{center}"
    async with runtime.db.unit_of_work() as uow:
        referral = await runtime.records.referral(uow, referral_id)
        question = await runtime.records.open_question(uow, referral_id, question_id)
    if referral is None:
        await audit(request, actor, case_id=None, outcome="not_known_yet")
        raise ReferralNotKnownYet(referral_id)
    if referral.center_code != center or referral.closed_reason not in (None, "completed"):
        await audit(request, actor, case_id=referral.case_id, outcome="denied")
        raise NotFound(f"There is no referral {referral_id} for this center.")
    if question is None:
        await audit(request, actor, case_id=referral.case_id, outcome="denied")
        raise NotFound(
            f"There is no unanswered follow-up question {question_id} on referral {referral_id}."
        )
    return referral


@router.post(
    "/referrals/{referral_id}/follow-up-questions/{question_id}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentPublic,
    responses={
        200: {"model": DocumentPublic, "description": "The same file was already uploaded"},
        **problem_responses(400, 401, 404, 413, 415),
        **not_known_yet_response(
            f"follow-up-questions/{UUID(int=0)}/documents",
            also="`conflict`: the case is closed (withdrawn), or the file is a document this "
            "referral did not upload",
        ),
    },
    summary="Upload a document that answers a follow-up question (center)",
    openapi_extra=ONE_FILE,
)
async def upload_follow_up_document(
    referral_id: UUID,
    question_id: UUID,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> DocumentPublic:
    """After its opinion, the center that gave it answers the patient's unanswered follow-up
    question with a document: checked like every upload and stored as part of its opinion
    (kind `opinion`, naming this referral and this center); then attach it with the returned
    id to the answer through partners
    (`POST /v1/partner/referrals/{referral_id}/follow-up-questions/{question_id}/answer`,
    `document_ids`). The patient reads it with the case; no other center sees it. Once the
    question is answered, nothing more is taken for it (404)."""
    referral = await _answering(runtime, center, referral_id, question_id, request)
    return await _store_center_upload(
        runtime, request, response, center, referral, "upload_follow_up_document"
    )


# ------------------------------------------------------------------ resumable opinion uploads

CENTER_409 = not_known_yet_response(
    "opinion/uploads",
    also="`referral-not-accepted`: the center has not accepted the referral; or the upload's "
    "own conflicts (`upload-part-out-of-order`, `upload-part-busy`, `upload-part-differs`, "
    "`upload-incomplete`, `upload-completing`, `upload-closed`)",
)


async def _owner(
    runtime: Runtime, center: str, referral_id: UUID, request: Request
) -> tuple[Owner, CenterReferral]:
    # Every step asks again: a referral declined, expired or withdrawn meanwhile ends the upload.
    referral = await _accepted(runtime, center, referral_id, request)
    owner = (f"center:{center}:{referral_id}", referral.case_id, f"center:{center}", None)
    return owner, referral


@router.post(
    "/referrals/{referral_id}/opinion/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadPublic,
    responses={
        200: {"model": UploadPublic, "description": "Replayed: the upload this key opened"},
        **problem_responses(401, 404, 413, 422),
        **CENTER_409,
    },
    summary="Start a resumable opinion upload (center)",
)
async def start_opinion_upload(
    referral_id: UUID,
    body: OpinionUploadCreate,
    idempotency_key: IdempotencyKey,
    center: CenterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """The center's written opinion on a referral it accepted, in parts: as the patient's
    resumable upload, completed into a document of kind `opinion` for this referral."""
    owner, referral = await _owner(runtime, center, referral_id, request)
    return await uploading.create(
        runtime,
        uow,
        request,
        response,
        owner,
        idempotency_key,
        body,
        DocumentKind.OPINION,
        None,
        referral,
    )


@router.get(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}",
    response_model=UploadPublic,
    responses={
        **progress_answer("The upload and the parts received"),
        **problem_responses(401, 404, 410),
        **CENTER_409,
    },
    summary="A resumable opinion upload's progress (center)",
)
async def read_opinion_upload(
    referral_id: UUID,
    upload_id: UploadId,
    center: CenterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """Which parts arrived and which to send next."""
    owner, _ = await _owner(runtime, center, referral_id, request)
    return await uploading.read(runtime, uow, request, response, owner, upload_id)


@router.head(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}",
    responses={
        **progress_answer("The bytes received, in `Upload-Offset`"),
        **problem_responses(401, 404, 410),
        **CENTER_409,
    },
    summary="A resumable opinion upload's offset (center)",
)
async def opinion_upload_offset(
    referral_id: UUID,
    upload_id: UploadId,
    center: CenterDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> None:
    """The bytes received so far in `Upload-Offset`, without a body."""
    owner, _ = await _owner(runtime, center, referral_id, request)
    await uploading.read(runtime, uow, request, response, owner, upload_id)


@router.put(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{part_number}",
    response_model=UploadPublic,
    responses={
        **progress_answer("The part is stored (or was already, with the same bytes)"),
        **problem_responses(401, 404, 410, 413, 415, 422),
        **CENTER_409,
    },
    summary="Send one part of the opinion (center)",
    openapi_extra=PART_BODY,
)
async def put_opinion_upload_part(
    referral_id: UUID,
    upload_id: UploadId,
    part_number: PartNumber,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """As the patient's parts: in order, exactly their size, harmless to send again."""
    owner, _ = await _owner(runtime, center, referral_id, request)
    return await uploading.put_part(runtime, request, response, owner, upload_id, part_number)


@router.post(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}/complete",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentPublic,
    responses={
        200: {"model": DocumentPublic, "description": "Completed already"},
        **problem_responses(401, 404, 410, 413, 415, 422),
        **CENTER_409,
    },
    summary="Complete a resumable opinion upload (center)",
)
async def complete_opinion_upload(
    referral_id: UUID,
    upload_id: UploadId,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> DocumentPublic:
    """The opinion as a document of this referral, checked like a one-shot upload; deliver it
    through partners with the returned id."""
    owner, referral = await _owner(runtime, center, referral_id, request)
    document = await uploading.complete(runtime, request, response, owner, upload_id)
    await audit(
        request,
        f"center:{center}",
        "upload_opinion",
        case_id=referral.case_id,
        document_id=document.id,
    )
    return document


@router.delete(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}",
    status_code=204,
    responses={**problem_responses(401, 404, 410), **CENTER_409},
    summary="Cancel a resumable opinion upload (center)",
)
async def cancel_opinion_upload(
    referral_id: UUID,
    upload_id: UploadId,
    center: CenterDep,
    runtime: RuntimeDep,
    request: Request,
) -> Response:
    """Drop an open upload and the parts received."""
    owner, _ = await _owner(runtime, center, referral_id, request)
    return await uploading.cancel(runtime, request, owner, upload_id)
