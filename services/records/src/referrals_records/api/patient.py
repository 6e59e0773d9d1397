"""The holder of a case's access token (the patient's front end), under `/v1/cases/{case_id}`:
upload the case's documents (in one request, or resumable in parts), list and read them, ask
for a download link, delete one while the case is a draft. Problems about the patient's files
are said in the case's language (`Accept-Language`, else the token's `loc`)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from referrals_common.api.pagination import LINK_HEADER, Cursor, OptionalLimit
from referrals_common.api.problems import (
    Conflict,
    FieldError,
    NotFound,
    Unprocessable,
    problem_responses,
)
from referrals_common.contracts import DocumentKind
from referrals_common.edge.principals import CaseAccess
from referrals_records.api import uploading
from referrals_records.api.deps import CaseAccessDep, RuntimeDep, UowDep, audit
from referrals_records.api.documents import (
    DocumentId,
    DocumentPublic,
    DownloadLink,
    link_to,
    page,
    public,
)
from referrals_records.api.uploading import (
    PART_BODY,
    IdempotencyKey,
    Owner,
    PartNumber,
    UploadCreate,
    UploadId,
    UploadPublic,
    progress_answer,
)
from referrals_records.service import DocumentNotFound, NotADraft
from referrals_records.uploads import read_upload as read_form

router = APIRouter(prefix="/v1")

NOT_AN_OPINION = FieldError(
    pointer="/kind",
    location="body",
    code="enum",
    message="opinion is not a patient document",
)


@router.post(
    "/cases/{case_id}/documents",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentPublic,
    responses={
        200: {
            "model": DocumentPublic,
            "description": "The same file was already uploaded to this case: that document",
        },
        **problem_responses(400, 401, 404, 409, 413, 415, 422),
    },
    summary="Upload a document",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["kind", "file"],
                        "properties": {
                            "kind": {"type": "string", "enum": [k.value for k in DocumentKind]},
                            "translation_of": {"type": "string", "format": "uuid"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_document(
    request: Request, access: CaseAccessDep, runtime: RuntimeDep, response: Response
) -> DocumentPublic:
    """Multipart form with `kind`, for a translation `translation_of`, then `file` (in this
    order: the fields come before the file). Accepted by content, not by name: PDF, JPEG, PNG,
    TIFF, DICOM, DOCX and plain text. The body is streamed to storage; the same file uploaded
    twice to a case is one document (200)."""
    upload = await read_form(request)
    kind_raw = upload.fields.get("kind", "")
    try:
        kind = DocumentKind(kind_raw)
    except ValueError:
        raise Unprocessable(
            f"`kind` must be one of: {', '.join(k.value for k in DocumentKind)}.",
            errors=[
                FieldError(
                    pointer="/kind",
                    location="body",
                    code="enum",
                    message=f"unknown document kind {kind_raw!r}",
                )
            ],
        ) from None
    if kind == DocumentKind.OPINION:
        raise Unprocessable(
            "Opinions are uploaded by the cancer center, not by the patient.",
            errors=[NOT_AN_OPINION],
        )
    translation_of = None
    if upload.fields.get("translation_of"):
        try:
            translation_of = UUID(upload.fields["translation_of"])
        except ValueError:
            raise Unprocessable(
                "`translation_of` must be a document id.",
                errors=[
                    FieldError(
                        pointer="/translation_of",
                        location="body",
                        code="uuid",
                        message="not a document id",
                    )
                ],
            ) from None
    return await uploading.store(
        request,
        runtime,
        response,
        access.case_id,
        kind,
        upload,
        access.actor,
        translation_of,
        locale=access.locale,
    )


@router.get(
    "/cases/{case_id}/documents",
    response_model=list[DocumentPublic],
    responses={200: {"headers": LINK_HEADER}, **problem_responses(401, 404, 422)},
    summary="List a case's documents",
)
async def list_documents(
    access: CaseAccessDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    limit: OptionalLimit = None,
    cursor: Cursor = None,
) -> list[DocumentPublic]:
    """Every stored document of the case, oldest first, with its kind, its media type as found
    in the content, size and SHA-256. With `limit`, a page: the `Link` header names the next
    one. Audited."""
    scope = {"list": "records.case-documents", "case": access.case_id}
    # Read by the statement that writes the listing's audit row: one round trip, no session.
    docs = await runtime.records.documents_listed(access.case_id, access.actor)
    return [public(d) for d in page(runtime, docs, scope, request, response, limit, cursor)]


@router.get(
    "/cases/{case_id}/documents/{document_id}",
    response_model=DocumentPublic,
    responses=problem_responses(401, 404),
    summary="A document's metadata",
)
async def read_document(
    document_id: DocumentId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
) -> DocumentPublic:
    """One document's metadata; its content only through a download link. Audited."""
    try:
        doc = await runtime.records.document(uow, access.case_id, document_id)
    except DocumentNotFound:
        raise NotFound(f"There is no document {document_id} in this case.") from None
    await audit(
        request, access.actor, "read_metadata", case_id=access.case_id, document_id=document_id
    )
    return public(doc)


@router.post(
    "/cases/{case_id}/documents/{document_id}/link",
    response_model=DownloadLink,
    responses=problem_responses(401, 404),
    summary="A short-lived download link",
)
async def download_link(
    document_id: DocumentId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
) -> DownloadLink:
    """A link to this one document, valid for a few minutes (`link_ttl_seconds`); every
    download through it is audited."""
    try:
        doc = await runtime.records.document(uow, access.case_id, document_id)
    except DocumentNotFound:
        raise NotFound(f"There is no document {document_id} in this case.") from None
    await audit(
        request, access.actor, "download_link", case_id=access.case_id, document_id=document_id
    )
    return link_to(request, runtime, doc, access.actor, None, doc.file_name)


@router.delete(
    "/cases/{case_id}/documents/{document_id}",
    status_code=204,
    responses=problem_responses(401, 404, 409),
    summary="Delete a document (draft)",
)
async def delete_document(
    document_id: DocumentId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
) -> Response:
    """Remove a document while the case is a draft; once it was submitted, documents stay
    (409)."""
    try:
        doc = await runtime.records.delete_document(uow, access.case_id, document_id)
    except DocumentNotFound:
        raise NotFound(f"There is no document {document_id} in this case.") from None
    except NotADraft as exc:
        await audit(
            request,
            access.actor,
            "delete",
            case_id=access.case_id,
            document_id=document_id,
            outcome="conflict",
        )
        raise Conflict(str(exc).capitalize() + ".") from None
    await uow.commit()
    await runtime.records.discard(doc)  # the object, once the row says it is gone
    await audit(request, access.actor, "delete", case_id=access.case_id, document_id=document_id)
    return Response(status_code=204)


# ----------------------------------------------------------------------- resumable uploads


def _owner(access: CaseAccess) -> Owner:
    return (f"case:{access.case_id}", access.case_id, access.actor, access.locale)


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
    uow: UowDep,
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
            errors=[NOT_AN_OPINION],
        )
    return await uploading.create(
        runtime,
        uow,
        request,
        response,
        _owner(access),
        idempotency_key,
        body,
        body.kind,
        body.translation_of,
    )


@router.get(
    "/cases/{case_id}/uploads/{upload_id}",
    response_model=UploadPublic,
    responses={
        **progress_answer("The upload and the parts received"),
        **problem_responses(401, 404, 410),
    },
    summary="A resumable upload's progress",
)
async def read_upload(
    upload_id: UploadId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> UploadPublic:
    """Which parts arrived (`received_parts`, `received_bytes`, also in `Upload-Offset`) and
    which to send next: after a dropped connection, resume there. 410 once it expired."""
    return await uploading.read(runtime, uow, request, response, _owner(access), upload_id)


@router.head(
    "/cases/{case_id}/uploads/{upload_id}",
    responses={
        **progress_answer("The bytes received, in `Upload-Offset`"),
        **problem_responses(401, 404, 410),
    },
    summary="A resumable upload's offset",
)
async def upload_offset(
    upload_id: UploadId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> None:
    """The bytes received so far in `Upload-Offset` and the declared size in `Upload-Length`,
    without a body."""
    await uploading.read(runtime, uow, request, response, _owner(access), upload_id)


@router.put(
    "/cases/{case_id}/uploads/{upload_id}/parts/{part_number}",
    response_model=UploadPublic,
    responses={
        **progress_answer("The part is stored (or was already, with the same bytes)"),
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
    return await uploading.put_part(
        runtime, request, response, _owner(access), upload_id, part_number
    )


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
    upload_id: UploadId,
    access: CaseAccessDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
) -> DocumentPublic:
    """Assemble the parts into the document, checked like a one-shot upload (its content, size
    limit, the case's quota); records then publishes `document.stored`. Completing again
    answers the same document (200): one upload is one document. Missing parts: 409
    `upload-incomplete` with `missing_parts`."""
    return await uploading.complete(runtime, request, response, _owner(access), upload_id)


@router.delete(
    "/cases/{case_id}/uploads/{upload_id}",
    status_code=204,
    responses=problem_responses(401, 404, 409, 410),
    summary="Cancel a resumable upload",
)
async def cancel_upload(
    upload_id: UploadId, access: CaseAccessDep, runtime: RuntimeDep, request: Request
) -> Response:
    """Drop an open upload and the parts received."""
    return await uploading.cancel(runtime, request, _owner(access), upload_id)
