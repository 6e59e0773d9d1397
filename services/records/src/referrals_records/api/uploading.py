"""The steps of an upload over HTTP, the same for a patient's documents and a center's opinion:
a one-shot upload (`store`) and a resumable one (`POST …/uploads` with the declared size and an
Idempotency-Key, `PUT` the parts in order, `GET`/`HEAD` to learn where to resume, then
`complete`). Who owns an upload and its case (`Owner`) is the audience's module's business."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header, Path, Request, Response, status
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from referrals_common.api.idempotency import request_fingerprint
from referrals_common.contracts import DocumentKind
from referrals_common.db import UnitOfWork
from referrals_records.api.deps import audit
from referrals_records.api.documents import DocumentPublic, public
from referrals_records.api.problems import recording_problem, upload_step
from referrals_records.bootstrap import Runtime
from referrals_records.inspection import UploadRefused
from referrals_records.models import CenterReferral
from referrals_records.resumable import UploadView
from referrals_records.service import BadTranslation, CaseClosed, NotOwnUpload
from referrals_records.uploads import Upload

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


# ------------------------------------------------------------------------------ one shot


async def store(
    request: Request,
    runtime: Runtime,
    response: Response,
    case_id: UUID,
    kind: DocumentKind,
    upload: Upload,
    actor: str,
    translation_of: UUID | None,
    referral: CenterReferral | None = None,
    *,
    locale: str | None = None,
) -> DocumentPublic:
    """Store an upload, turning every refusal into its problem (in `locale`, the patient's
    language; None for a center); 201 new, 200 the same file."""
    try:
        result = await runtime.records.store_document(
            case_id, kind, upload, actor, translation_of, referral
        )
    except (UploadRefused, CaseClosed, NotOwnUpload, BadTranslation) as exc:
        raise await recording_problem(
            request, actor, "upload", case_id, exc, locale=locale
        ) from None
    except ClientDisconnect:
        # The client is gone: nothing was kept (the storage layer aborted the upload).
        return Response(status_code=499)  # type: ignore[return-value]  # FastAPI sends a Response as is; the annotation stays the documented body
    if not result.created:
        await audit(
            request, actor, "upload_duplicate", case_id=case_id, document_id=result.document.id
        )
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/cases/{case_id}/documents/{result.document.id}"
    return public(result.document)


# ----------------------------------------------------------------------------- resumable


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


async def _parts(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


Owner = tuple[str, UUID, str, str | None]
"""Who owns an upload, and its case: (owner, case id, actor, the patient's language: None for a
center)."""


async def create(
    runtime: Runtime,
    uow: UnitOfWork,
    request: Request,
    response: Response,
    owner: Owner,
    key: str,
    body: UploadCreate | OpinionUploadCreate,
    kind: DocumentKind,
    translation_of: UUID | None,
    referral: CenterReferral | None = None,
) -> UploadPublic:
    who, case_id, actor, locale = owner
    fingerprint = request_fingerprint(
        request.scope["route"].name, request.path_params, body.model_dump(mode="json")
    )
    session, replayed = await upload_step(
        request,
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
    view = await upload_step(
        request,
        actor,
        case_id,
        "upload_start",
        runtime.uploads.view(uow, who, case_id, session.id),
        locale,
    )
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        await audit(request, actor, "upload_start", case_id=case_id)
    response.headers["Location"] = f"{request.url.path}/{session.id}"
    _progress_headers(response, view)
    return _public(view)


async def put_part(
    runtime: Runtime,
    request: Request,
    response: Response,
    owner: Owner,
    upload_id: UUID,
    number: int,
) -> UploadPublic:
    who, case_id, actor, locale = owner
    try:
        view, replayed = await upload_step(
            request,
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


async def complete(
    runtime: Runtime, request: Request, response: Response, owner: Owner, upload_id: UUID
) -> DocumentPublic:
    who, case_id, actor, locale = owner
    result = await upload_step(
        request,
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


async def read(
    runtime: Runtime,
    uow: UnitOfWork,
    request: Request,
    response: Response,
    owner: Owner,
    upload_id: UUID,
) -> UploadPublic:
    who, case_id, actor, locale = owner
    view = await upload_step(
        request,
        actor,
        case_id,
        "upload_status",
        runtime.uploads.view(uow, who, case_id, upload_id),
        locale,
    )
    _progress_headers(response, view)
    return _public(view)


async def cancel(runtime: Runtime, request: Request, owner: Owner, upload_id: UUID) -> Response:
    who, case_id, actor, locale = owner
    await upload_step(
        request,
        actor,
        case_id,
        "upload_cancel",
        runtime.uploads.cancel(who, case_id, upload_id),
        locale,
    )
    await audit(request, actor, "upload_cancel", case_id=case_id)
    return Response(status_code=204)


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


def progress_answer(description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a 200 that carries the upload's progress headers."""
    return {200: {"description": description, "headers": PROGRESS_HEADERS}}
