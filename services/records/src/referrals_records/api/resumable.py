"""Resumable uploads over HTTP (`/v1/cases/{case_id}/uploads`, and a center's opinion under
`/v1/referrals/{referral_id}/opinion/uploads`): create with the declared size and an
Idempotency-Key, `PUT` the parts in order, `GET`/`HEAD` to learn where to resume, then
`complete`. Authorized as the one-shot uploads are: the case's access token for the patient's
documents; the center's key, on a referral it accepted, for its opinion.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Header, Path, Request, Response, status
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from referrals_common.api.idempotency import request_fingerprint
from referrals_common.api.problems import (
    FieldError,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
)
from referrals_common.contracts import DocumentKind
from referrals_common.edge.principals import CaseAccess
from referrals_records.api.routes import (
    CaseAccessDep,
    CenterDep,
    DocumentPublic,
    RuntimeDep,
    _offered,
    audit,
    in_language,
    not_known_yet_response,
    patient_text,
    public,
    recording_problem,
)
from referrals_records.bootstrap import Runtime
from referrals_records.inspection import UploadRefused
from referrals_records.resumable import (
    PartBeyondDeclaredSize,
    PartBusy,
    PartDiffers,
    PartOutOfOrder,
    PartWrongSize,
    UploadClosed,
    UploadCompleting,
    UploadGone,
    UploadIncomplete,
    UploadNotFound,
    UploadView,
)
from referrals_records.service import BadTranslation, CaseClosed, NotOwnUpload

router = APIRouter(prefix="/v1")
T = TypeVar("T")

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=128,
        description="A unique key per intended upload (e.g. a UUID): the same request sent again "
        "with it answers the same upload (200, `Idempotent-Replayed: true`) and opens no other; "
        "the key with a different request is a 422",
    ),
]
UploadId = Annotated[UUID, Path(description="The upload's id, from its creation")]
PartNumber = Annotated[int, Path(ge=1, le=10000, description="The part's number, from 1")]


class UploadCreate(BaseModel):
    kind: DocumentKind = Field(description="What the document is (not `opinion`)")
    file_name: str = Field(min_length=1, max_length=255, description="The file's name")
    size_bytes: int = Field(ge=1, description="The file's exact size in bytes")
    translation_of: UUID | None = Field(
        None, description="For a translation: the document it translates"
    )


class OpinionUploadCreate(BaseModel):
    file_name: str = Field(min_length=1, max_length=255, description="The file's name")
    size_bytes: int = Field(ge=1, description="The file's exact size in bytes")


class UploadPublic(BaseModel):
    id: UUID
    case_id: UUID
    kind: DocumentKind
    file_name: str
    size_bytes: int = Field(description="The size declared at creation")
    part_size: int = Field(description="Every part but the last has this size; the last the rest")
    parts_total: int
    received_parts: list[int] = Field(description="The parts stored so far, in order")
    received_bytes: int = Field(description="Their bytes: the offset to resume from")
    next_part: int | None = Field(description="The part to send next (none once all arrived)")
    state: str = Field(description="open, completing, completed or refused")
    refusal: str | None = Field(description="Why a refused upload was refused")
    document_id: UUID | None = Field(description="The document a completed upload became")
    expires_at: datetime = Field(
        description="An open upload with no new part by then expires and its parts are dropped"
    )


def _public(view: UploadView) -> UploadPublic:
    s = view.session
    return UploadPublic(
        id=s.id,
        case_id=s.case_id,
        kind=DocumentKind(s.kind),
        file_name=s.file_name,
        size_bytes=s.size_bytes,
        part_size=s.part_size,
        parts_total=view.parts_total,
        received_parts=view.received,
        received_bytes=view.received_bytes,
        next_part=view.next_part,
        state=s.state,
        refusal=s.refusal,
        document_id=s.result_document_id,
        expires_at=s.expires_at,
    )


def _progress_headers(response: Response, view: UploadView) -> None:
    # As tus names them: what arrived, and the whole.
    response.headers["Upload-Offset"] = str(view.received_bytes)
    response.headers["Upload-Length"] = str(view.session.size_bytes)
    response.headers["Cache-Control"] = "no-store"


async def _answer(
    runtime: Runtime,
    actor: str,
    case_id: UUID,
    action: str,
    work: Awaitable[T],
    locale: str | None = None,
) -> T:
    """Run an upload action, turning each refusal into its problem (audited); a refused file
    is explained in `locale`, the patient's language (None: a center's upload, English)."""
    try:
        return await work
    except UploadNotFound:
        await audit(runtime, actor, action, case_id, outcome="denied")
        raise NotFound("There is no such upload for this case.") from None
    except UploadRefused as refused:
        raise await recording_problem(
            runtime, actor, action, case_id, refused, locale=locale
        ) from None
    except UploadGone as exc:
        said = in_language(locale)
        raise ProblemError(
            patient_text("upload_gone", locale)
            or f"This upload was {exc.state} and its parts are gone: start a new upload.",
            status=410,
            type_slug="upload-expired",
            title="The upload has expired",
            headers=said.get("headers"),
            extensions={"state": exc.state, **said.get("extensions", {})},
        ) from None
    except UploadClosed as exc:
        raise ProblemError(
            f"This upload is {exc.session.state} and takes no more parts"
            + (f" ({exc.session.refusal})." if exc.session.refusal else "."),
            status=409,
            type_slug="upload-closed",
            title="The upload is closed",
            extensions={"state": exc.session.state, "refusal": exc.session.refusal},
        ) from None
    except PartBeyondDeclaredSize as exc:
        await audit(runtime, actor, action, case_id, outcome="denied")
        raise ProblemError(
            f"The declared size makes {exc.parts} parts: there is no part beyond it.",
            status=413,
            type_slug="upload-beyond-declared-size",
            title="Beyond the declared size",
            extensions={"parts_total": exc.parts},
        ) from None
    except PartWrongSize as exc:
        raise Unprocessable(
            f"Part {exc.number} must be exactly {exc.expected} bytes (Content-Length).",
            errors=[
                FieldError(
                    pointer="#/header/Content-Length",
                    location="header",
                    code="part_size",
                    message=f"part {exc.number} is {exc.expected} bytes",
                )
            ],
        ) from None
    except PartOutOfOrder as exc:
        raise ProblemError(
            f"Parts are sent in order: send part {exc.expected} next.",
            status=409,
            type_slug="upload-part-out-of-order",
            title="The part is out of order",
            extensions={"next_part": exc.expected},
        ) from None
    except PartBusy:
        raise ProblemError(
            "This part is being received by another request: wait for it, then ask the "
            "upload where to resume.",
            status=409,
            type_slug="upload-part-busy",
            title="The part is being received",
            headers={"Retry-After": "5"},
        ) from None
    except PartDiffers:
        await audit(runtime, actor, action, case_id, outcome="conflict")
        raise ProblemError(
            "This part was already received with other bytes: nothing was changed. A file "
            "that changed is a new upload.",
            status=409,
            type_slug="upload-part-differs",
            title="The part differs from the one received",
        ) from None
    except UploadIncomplete as exc:
        raise ProblemError(
            f"{len(exc.missing)} part(s) have not arrived: send them, then complete.",
            status=409,
            type_slug="upload-incomplete",
            title="The upload is incomplete",
            extensions={"missing_parts": exc.missing[:100]},
        ) from None
    except UploadCompleting:
        raise ProblemError(
            "Another request is completing this upload: ask for it again in a moment.",
            status=409,
            type_slug="upload-completing",
            title="The upload is being completed",
            headers={"Retry-After": "2"},
        ) from None
    except (CaseClosed, NotOwnUpload, BadTranslation) as exc:
        raise await recording_problem(runtime, actor, action, case_id, exc, locale=locale) from None


async def _parts(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


# The same steps for a patient's upload and a center's opinion: who owns it, and its case.
# (owner, case id, actor, the patient's language: None for a center)
Owner = tuple[str, UUID, str, str | None]


async def _create(
    runtime: Runtime,
    request: Request,
    response: Response,
    owner: Owner,
    key: str,
    body: UploadCreate | OpinionUploadCreate,
    kind: DocumentKind,
    translation_of: UUID | None,
    referral: Any = None,
) -> UploadPublic:
    who, case_id, actor, locale = owner
    fingerprint = request_fingerprint(
        request.scope["route"].name, request.path_params, body.model_dump(mode="json")
    )
    session, replayed = await _answer(
        runtime,
        actor,
        case_id,
        "upload_start",
        runtime.uploads.create(
            case_id=case_id,
            owner=who,
            uploaded_by=actor,
            kind=kind,
            file_name=body.file_name,
            size_bytes=body.size_bytes,
            translation_of=translation_of,
            idempotency_key=key,
            request_hash=fingerprint,
            referral=referral,
        ),
        locale,
    )
    view = await _answer(
        runtime,
        actor,
        case_id,
        "upload_start",
        runtime.uploads.view(who, case_id, session.id),
        locale,
    )
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        await audit(runtime, actor, "upload_start", case_id)
    response.headers["Location"] = f"{request.url.path}/{session.id}"
    _progress_headers(response, view)
    return _public(view)


async def _put_part(
    runtime: Runtime,
    request: Request,
    response: Response,
    owner: Owner,
    upload_id: UUID,
    number: int,
) -> UploadPublic:
    who, case_id, actor, locale = owner
    try:
        view, replayed = await _answer(
            runtime,
            actor,
            case_id,
            "upload_part",
            runtime.uploads.put_part(
                who, case_id, upload_id, number, _length(request), _parts(request)
            ),
            locale,
        )
    except ClientDisconnect:
        # The connection dropped mid-part: the part is not kept; the client resumes from it.
        return Response(status_code=499)  # type: ignore[return-value]  # FastAPI sends a Response as is; the annotation stays the documented body
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    _progress_headers(response, view)
    return _public(view)


async def _complete(
    runtime: Runtime, response: Response, owner: Owner, upload_id: UUID
) -> DocumentPublic:
    who, case_id, actor, locale = owner
    result = await _answer(
        runtime,
        actor,
        case_id,
        "upload",
        runtime.uploads.complete(who, case_id, upload_id),
        locale,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/cases/{case_id}/documents/{result.document.id}"
    return public(result.document)


async def _read(
    runtime: Runtime, response: Response, owner: Owner, upload_id: UUID
) -> UploadPublic:
    who, case_id, actor, locale = owner
    view = await _answer(
        runtime,
        actor,
        case_id,
        "upload_status",
        runtime.uploads.view(who, case_id, upload_id),
        locale,
    )
    _progress_headers(response, view)
    return _public(view)


async def _cancel(runtime: Runtime, owner: Owner, upload_id: UUID) -> Response:
    who, case_id, actor, locale = owner
    await _answer(
        runtime,
        actor,
        case_id,
        "upload_cancel",
        runtime.uploads.cancel(who, case_id, upload_id),
        locale,
    )
    await audit(runtime, actor, "upload_cancel", case_id)
    return Response(status_code=204)


def _patient(access: CaseAccess) -> Owner:
    return (f"case:{access.case_id}", access.case_id, access.actor, access.locale)


async def _center(
    runtime: Runtime, center: str, referral_id: UUID, request: Request
) -> tuple[Owner, Any]:
    # Every step asks again: a referral declined, expired or withdrawn meanwhile ends the upload.
    referral = await _offered(runtime, center, referral_id, request, accepted=True)
    owner = (f"center:{center}:{referral_id}", referral.case_id, f"center:{center}", None)
    return owner, referral


PART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The part's bytes: `part_size` bytes, the last part the rest of the file",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
PROGRESS_HEADERS = {
    "Upload-Offset": {
        "description": "The bytes received so far: resume from there",
        "schema": {"type": "integer"},
    },
    "Upload-Length": {"description": "The declared size", "schema": {"type": "integer"}},
}


def _ok(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "headers": PROGRESS_HEADERS}}


# --------------------------------------------------------------------------- patient side


@router.post(
    "/cases/{case_id}/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadPublic,
    responses={
        200: {"model": UploadPublic, "description": "Replayed: the upload this key opened"},
        **problem_responses(401, 404, 409, 413, 422),
    },
    summary="Start a resumable upload",
)
async def start_upload(
    body: UploadCreate,
    idempotency_key: IdempotencyKey,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """Declare a document (kind, name, exact size) to send in parts: for large files (imaging
    studies) and unsteady connections. The size is checked against the largest limit and the
    case's quota left now, and against its type's limit when the first part shows the type.
    Then `PUT …/parts/{n}` in order and `POST …/complete`."""
    if body.kind == DocumentKind.OPINION:
        raise Unprocessable(
            "Opinions are uploaded by the cancer center, not by the patient.",
            errors=[
                FieldError(
                    pointer="/kind",
                    location="body",
                    code="enum",
                    message="opinion is not a patient document",
                )
            ],
        )
    return await _create(
        runtime,
        request,
        response,
        _patient(access),
        idempotency_key,
        body,
        body.kind,
        body.translation_of,
    )


@router.get(
    "/cases/{case_id}/uploads/{upload_id}",
    response_model=UploadPublic,
    responses={**_ok("The upload and the parts received"), **problem_responses(401, 404, 410)},
    summary="A resumable upload's progress",
)
async def read_upload(
    upload_id: UploadId, access: CaseAccessDep, runtime: RuntimeDep, response: Response
) -> UploadPublic:
    """Which parts arrived (`received_parts`, `received_bytes`, also in `Upload-Offset`) and
    which to send next: after a dropped connection, resume there. 410 once it expired."""
    return await _read(runtime, response, _patient(access), upload_id)


@router.head(
    "/cases/{case_id}/uploads/{upload_id}",
    responses={**_ok("The bytes received, in `Upload-Offset`"), **problem_responses(401, 404, 410)},
    summary="A resumable upload's offset",
)
async def upload_offset(
    upload_id: UploadId, access: CaseAccessDep, runtime: RuntimeDep, response: Response
) -> None:
    """The bytes received so far in `Upload-Offset` and the declared size in `Upload-Length`,
    without a body."""
    await _read(runtime, response, _patient(access), upload_id)


@router.put(
    "/cases/{case_id}/uploads/{upload_id}/parts/{part_number}",
    response_model=UploadPublic,
    responses={
        **_ok("The part is stored (or was already, with the same bytes)"),
        **problem_responses(401, 404, 409, 410, 413, 415, 422),
    },
    summary="Send one part",
    openapi_extra=PART_BODY,
)
async def put_upload_part(
    upload_id: UploadId,
    part_number: PartNumber,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """Part `part_number`, exactly its size (`Content-Length`), after every part before it.
    Sending a stored part again is harmless: the same bytes answer 200 and change nothing, other
    bytes are refused (409). The first part shows the file's type: one records does not take
    (415) or a declared size over that type's limit (413) refuses the whole upload."""
    return await _put_part(runtime, request, response, _patient(access), upload_id, part_number)


@router.post(
    "/cases/{case_id}/uploads/{upload_id}/complete",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentPublic,
    responses={
        200: {
            "model": DocumentPublic,
            "description": "Completed already, or the same file is already a document",
        },
        **problem_responses(401, 404, 409, 410, 413, 415, 422),
    },
    summary="Complete a resumable upload",
)
async def complete_upload(
    upload_id: UploadId, access: CaseAccessDep, runtime: RuntimeDep, response: Response
) -> DocumentPublic:
    """Assemble the parts into the document, checked like a one-shot upload (its content, size
    limit, the case's quota); records then publishes `document.stored`. Completing again
    answers the same document (200): one upload is one document. Missing parts: 409
    `upload-incomplete` with `missing_parts`."""
    return await _complete(runtime, response, _patient(access), upload_id)


@router.delete(
    "/cases/{case_id}/uploads/{upload_id}",
    status_code=204,
    responses=problem_responses(401, 404, 409, 410),
    summary="Cancel a resumable upload",
)
async def cancel_upload(
    upload_id: UploadId, access: CaseAccessDep, runtime: RuntimeDep
) -> Response:
    """Drop an open upload and the parts received."""
    return await _cancel(runtime, _patient(access), upload_id)


# ---------------------------------------------------------------------------- center side

CENTER_409 = not_known_yet_response(
    "opinion/uploads",
    also="`referral-not-accepted`: the center has not accepted the referral; or the upload's "
    "own conflicts (`upload-part-out-of-order`, `upload-part-busy`, `upload-part-differs`, "
    "`upload-incomplete`, `upload-completing`, `upload-closed`)",
)


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
    request: Request,
    response: Response,
) -> UploadPublic:
    """The center's written opinion on a referral it accepted, in parts: as the patient's
    resumable upload, completed into a document of kind `opinion` for this referral."""
    owner, referral = await _center(runtime, center, referral_id, request)
    return await _create(
        runtime,
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
        **_ok("The upload and the parts received"),
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
    request: Request,
    response: Response,
) -> UploadPublic:
    """Which parts arrived and which to send next."""
    owner, _ = await _center(runtime, center, referral_id, request)
    return await _read(runtime, response, owner, upload_id)


@router.head(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}",
    responses={
        **_ok("The bytes received, in `Upload-Offset`"),
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
    request: Request,
    response: Response,
) -> None:
    """The bytes received so far in `Upload-Offset`, without a body."""
    owner, _ = await _center(runtime, center, referral_id, request)
    await _read(runtime, response, owner, upload_id)


@router.put(
    "/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{part_number}",
    response_model=UploadPublic,
    responses={
        **_ok("The part is stored (or was already, with the same bytes)"),
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
    owner, _ = await _center(runtime, center, referral_id, request)
    return await _put_part(runtime, request, response, owner, upload_id, part_number)


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
    owner, _ = await _center(runtime, center, referral_id, request)
    document = await _complete(runtime, response, owner, upload_id)
    owner_case = owner[1]
    await audit(runtime, f"center:{center}", "upload_opinion", owner_case, document.id)
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
    owner, _ = await _center(runtime, center, referral_id, request)
    return await _cancel(runtime, owner, upload_id)


__all__ = ["router"]
