"""Records' HTTP API, `/v1`. Patients' front ends use the case access token intake issued;
cancer centers use their API key. Every error is an RFC 9457 problem."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Request, Response, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from referrals_common.api.pagination import (
    DEFAULT_LIMIT,
    LINK_HEADER,
    Cursor,
    CursorSigner,
    OptionalLimit,
    PageOf,
    Position,
    slice_after,
)
from referrals_common.api.problems import (
    PROBLEM_MEDIA_TYPE,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
    problem_type,
)
from referrals_common.auth.api_keys import key_digest
from referrals_common.contracts import DocumentKind
from referrals_common.edge import authenticated
from referrals_common.edge.principals import (
    CaseAccess,
    key_table,
    route_of,
    verify_api_key,
    verify_case_token,
)
from referrals_common.i18n import SOURCE_LOCALE, case_texts, negotiate
from referrals_common.service_app import ApiTag
from referrals_common.telemetry import note_request_case
from referrals_records.bootstrap import Runtime
from referrals_records.inspection import ACCEPTED_MEDIA_TYPES, CaseQuotaExceeded, UploadRefused
from referrals_records.links import InvalidLink
from referrals_records.models import CenterCredential, CenterReferral, Document
from referrals_records.service import (
    BadTranslation,
    CaseClosed,
    DocumentNotFound,
    LinkRevoked,
    NotADraft,
    NotOwnUpload,
)
from referrals_records.uploads import read_upload

router = APIRouter(prefix="/v1")
TAGS = (
    ApiTag(
        "front-end",
        "A patient's front end uploads, lists and removes the case's documents with the case "
        "access token, and asks for download links.",
        ("/v1/cases/",),
    ),
    ApiTag(
        "centers",
        "A cancer center reads the documents of a referral offered to it and uploads its "
        "opinion, with its API key.",
        ("/v1/referrals/",),
    ),
    ApiTag(
        "downloads",
        "A short-lived link opens one document: the link is the credential.",
        ("/v1/downloads/",),
    ),
)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CaseAccessToken",
    bearerFormat="JWT",
    description="The case access token issued by intake",
)
center_key = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="CenterApiKey",
    auto_error=False,
    description="The center's API key (`ccr_…`), issued by partners' operators (the same key "
    "as for partners' API; revoked there, refused here within seconds)",
)


class DocumentPublic(BaseModel):
    id: UUID
    case_id: UUID
    kind: DocumentKind
    media_type: str
    size_bytes: int
    sha256: str
    file_name: str
    translation_of: UUID | None
    created_at: datetime


class DownloadLink(BaseModel):
    url: str = Field(
        description="A link to this one document (`/v1/downloads/<token>` on records), usable "
        "without other credentials until `expires_at`; every download through it is audited, "
        "and a center's link stops working at once when its referral ends"
    )
    expires_at: datetime
    media_type: str
    file_name: str


def public(doc: Document, file_name: str | None = None) -> DocumentPublic:
    """The document as an API answer; `file_name` replaces the stored name (for centers)."""
    view = DocumentPublic.model_validate(doc, from_attributes=True)
    return view if file_name is None else view.model_copy(update={"file_name": file_name})


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


def _link(
    request: Request,
    runtime: Runtime,
    doc: Document,
    actor: str,
    referral_id: UUID | None,
    download_name: str,
) -> DownloadLink:
    grant = runtime.links.grant(
        document_id=doc.id,
        case_id=doc.case_id,
        actor=actor,
        referral_id=referral_id,
        download_name=download_name,
    )
    url = request.url_for("download_document", token=runtime.links.sign(grant))
    return DownloadLink(
        url=str(url),
        expires_at=grant.expires_at,
        media_type=doc.media_type,
        file_name=download_name,
    )


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def audit(
    runtime: Runtime,
    actor: str,
    action: str,
    case_id: UUID | None,
    document_id: UUID | None = None,
    outcome: str = "ok",
) -> None:
    """One row of records' access audit, in a transaction of its own."""
    await runtime.access_log.record(
        actor, action, case_id=case_id, document_id=document_id, outcome=outcome
    )


AcceptLanguage = Annotated[
    str | None,
    Header(
        alias="Accept-Language",
        description="The language of the patient's texts in the answer (`uk` or `en`), such as "
        "why an upload was refused; without it, or naming neither, the case's language as its "
        "access token says (`loc`), else English. The answer's `Content-Language` says which.",
        examples=["uk"],
    ),
]


async def case_access(
    request: Request,
    runtime: RuntimeDep,
    case_id: Annotated[UUID, Path()],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    accept_language: AcceptLanguage = None,
) -> CaseAccess:
    """The holder of the case's token; another case's token is a 404, as if it did not exist
    (`referrals_common.edge.principals`). Its `locale` is the language records answers the
    patient in: the one `Accept-Language` asks for among the platform's, else the case's (the
    token's `loc`), else English: records keeps no case, the token carries its language."""
    access = await verify_case_token(
        request, credentials, case_id, verifier=runtime.verifier, log=runtime.access_log
    )
    return replace(access, locale=negotiate(accept_language, access.locale or SOURCE_LOCALE))


CaseAccessDep = Annotated[CaseAccess, Depends(case_access)]


async def current_center(
    request: Request,
    runtime: RuntimeDep,
    presented: Annotated[str | None, Security(center_key)],
) -> str:
    """The code of the cancer center whose API key this is: a key partners issued and has not
    revoked, as its events told records (`center_credentials`); records issues no keys. A
    refused key counts towards the lockout (`referrals_common.edge.principals`); a valid one
    spends one of its requests."""
    cached = runtime.verified_keys.get(presented) if presented else None
    if cached is not None:
        authenticated(request, f"key:{cached[0]}")
        return cached[1]

    key_id, row = await verify_api_key(
        request,
        presented,
        lookup=key_table(runtime.db, CenterCredential),
        pepper=runtime.pepper,
        digest=key_digest,
        log=runtime.access_log,
        actor_prefix="center",
        missing="This endpoint needs the center's API key in X-Api-Key.",
    )
    assert presented is not None  # verify_api_key refuses a missing key
    runtime.verified_keys.put(presented, (key_id, row.center_code))
    return row.center_code


CenterDep = Annotated[str, Depends(current_center)]


# ------------------------------------------------------------------------- patient side


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
    upload = await read_upload(request)
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
            errors=[
                FieldError(
                    pointer="/kind",
                    location="body",
                    code="enum",
                    message="opinion is not a patient document",
                )
            ],
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
    return await _store(
        runtime,
        response,
        access.case_id,
        kind,
        upload,
        access.actor,
        translation_of,
        locale=access.locale,
    )


def patient_text(code: str, locale: str | None) -> str | None:
    """Records' words `code` (`case_texts.UPLOAD_STATES`) for a patient whose language is not
    English; None for English and for a center (`locale` None): records' own sentence stands."""
    if locale is None or locale == SOURCE_LOCALE:
        return None
    return case_texts.upload_state(code, locale)


def in_language(locale: str | None) -> dict[str, Any]:
    """A patient's problem names its language (`language`, `Content-Language`); a center's
    (`locale` None) is English and says nothing."""
    if locale is None:
        return {}
    return {
        "headers": {"Content-Language": locale, "Vary": "Accept-Language"},
        "extensions": {"language": locale},
    }


def refusal_problem(refused: UploadRefused, locale: str | None = None) -> ProblemError:
    """The problem answering an upload records refused (one-shot or resumable). For a patient,
    `locale` is the case's language: `detail` says it in that language (`language` and
    `Content-Language` name it); a center's (None) is records' English."""
    # The rest of a refused body is not wanted: closing the connection after the answer
    # stops the server from reading (and the client from sending) what is left of it.
    unread = {"Connection": "close"}
    detail, language = refused.detail, {}
    if locale is not None:
        # English keeps records' own sentence, the more precise (which pixel count, which part).
        if locale != SOURCE_LOCALE:
            detail = case_texts.upload_refusal(refused.words, locale)
        unread |= {"Content-Language": locale, "Vary": "Accept-Language"}
        language = {"language": locale}
    if isinstance(refused, CaseQuotaExceeded):
        return ProblemError(
            detail,
            status=413,
            type_slug="case-quota-exceeded",
            title="The case's documents would exceed its quota",
            headers=unread,
            extensions={
                "reason": str(refused.reason),
                "quota_bytes": refused.quota_bytes,
                "used_bytes": refused.used_bytes,
                **language,
            },
        )
    return ProblemError(
        detail,
        status=refused.status,
        type_slug=f"upload-{refused.reason.replace('_', '-')}",
        title="The upload was refused",
        headers=unread,
        extensions={
            "reason": str(refused.reason),
            "accepted_media_types": sorted(ACCEPTED_MEDIA_TYPES),
            **language,
        },
    )


async def recording_problem(
    runtime: Runtime,
    actor: str,
    action: str,
    case_id: UUID,
    exc: UploadRefused | CaseClosed | NotOwnUpload | BadTranslation,
    locale: str | None = None,
) -> ProblemError:
    """The problem (audited) for a file records refused to keep as a document: the one mapping
    for every way a document is recorded (one request, or completed from parts); a refused
    file is explained in `locale`, the patient's language (None: a center's, English)."""
    if isinstance(exc, UploadRefused):
        await audit(runtime, actor, "upload_refused", case_id, outcome="denied")
        return refusal_problem(exc, locale)
    if isinstance(exc, CaseClosed):
        await audit(runtime, actor, action, case_id, outcome="conflict")
        return Conflict(
            patient_text("case_closed", locale) or str(exc).capitalize() + ".",
            **in_language(locale),
        )
    if isinstance(exc, NotOwnUpload):
        await audit(runtime, actor, action, case_id, exc.document_id, outcome="denied")
        return Conflict(
            "This file is already a document of the case that this referral did not upload: "
            "a center uploads its own opinion, it cannot adopt another document as one."
        )
    return Unprocessable(
        str(exc).capitalize() + ".",
        errors=[
            FieldError(
                pointer="/translation_of", location="body", code="translation", message=str(exc)
            )
        ],
    )


async def _store(
    runtime: Runtime,
    response: Response,
    case_id: UUID,
    kind: DocumentKind,
    upload: Any,
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
            runtime, actor, "upload", case_id, exc, locale=locale
        ) from None
    except ClientDisconnect:
        # The client is gone: nothing was kept (the storage layer aborted the upload).
        return Response(status_code=499)  # type: ignore[return-value]  # FastAPI sends a Response as is; the annotation stays the documented body
    if not result.created:
        await audit(runtime, actor, "upload_duplicate", case_id, result.document.id)
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/cases/{case_id}/documents/{result.document.id}"
    return public(result.document)


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
    async with runtime.db.unit_of_work() as uow:
        docs = await runtime.records.documents(uow, access.case_id)
    await audit(runtime, access.actor, "list", access.case_id)
    return [public(d) for d in _page(runtime, docs, scope, request, response, limit, cursor)]


def _page(
    runtime: Runtime,
    docs: list[Document],
    scope: dict[str, Any],
    request: Request,
    response: Response,
    limit: int | None,
    cursor: str | None,
) -> list[Document]:
    """A case's documents (read whole: a case's quota bounds them), oldest first: all of them,
    or with `limit` or `cursor` one page, the next named by the `Link` header."""
    if limit is None and cursor is None:
        return docs
    signer = CursorSigner(runtime.pepper)
    key = _document_position
    rest = slice_after(docs, signer.position(cursor, scope), key, newest_first=False)
    page: PageOf[Document] = signer.page(rest, limit or DEFAULT_LIMIT, scope, request, key=key)
    page.link(response)
    return page.items


def _document_position(doc: Document) -> Position:
    return doc.created_at, doc.id


DocumentId = Annotated[UUID, Path(description="The document id")]


@router.get(
    "/cases/{case_id}/documents/{document_id}",
    response_model=DocumentPublic,
    responses=problem_responses(401, 404),
    summary="A document's metadata",
)
async def read_document(
    document_id: DocumentId, access: CaseAccessDep, runtime: RuntimeDep
) -> DocumentPublic:
    """One document's metadata; its content only through a download link. Audited."""
    async with runtime.db.unit_of_work() as uow:
        try:
            doc = await runtime.records.document(uow, access.case_id, document_id)
        except DocumentNotFound:
            raise NotFound(f"There is no document {document_id} in this case.") from None
    await audit(runtime, access.actor, "read_metadata", access.case_id, document_id)
    return public(doc)


@router.post(
    "/cases/{case_id}/documents/{document_id}/link",
    response_model=DownloadLink,
    responses=problem_responses(401, 404),
    summary="A short-lived download link",
)
async def download_link(
    document_id: DocumentId, access: CaseAccessDep, runtime: RuntimeDep, request: Request
) -> DownloadLink:
    """A link to this one document, valid for a few minutes (`link_ttl_seconds`); every
    download through it is audited."""
    async with runtime.db.unit_of_work() as uow:
        try:
            doc = await runtime.records.document(uow, access.case_id, document_id)
        except DocumentNotFound:
            raise NotFound(f"There is no document {document_id} in this case.") from None
    await audit(runtime, access.actor, "download_link", access.case_id, document_id)
    return _link(request, runtime, doc, access.actor, None, doc.file_name)


@router.delete(
    "/cases/{case_id}/documents/{document_id}",
    status_code=204,
    responses=problem_responses(401, 404, 409),
    summary="Delete a document (draft)",
)
async def delete_document(
    document_id: DocumentId, access: CaseAccessDep, runtime: RuntimeDep
) -> Response:
    """Remove a document while the case is a draft; once it was submitted, documents stay
    (409)."""
    try:
        await runtime.records.delete_document(access.case_id, document_id)
    except DocumentNotFound:
        raise NotFound(f"There is no document {document_id} in this case.") from None
    except NotADraft as exc:
        await audit(runtime, access.actor, "delete", access.case_id, document_id, "conflict")
        raise Conflict(str(exc).capitalize() + ".") from None
    await audit(runtime, access.actor, "delete", access.case_id, document_id)
    return Response(status_code=204)


# -------------------------------------------------------------------------- center side
#
# Records learns which center may read which case only from partners' `referral.requested`
# (routing topic), while the center learns of its offer from `referral.offered` (its inbox
# topic): a center that reacts at once may ask before records' consumer has read the grant. A
# referral id records has never heard of is then a retryable 409 `referral-not-known-yet`, not
# a 404 the center would take as final. It reveals nothing to another center: the answer depends
# only on whether records has any row for that id, not on who asks nor on any case, and referral
# ids are random UUIDs that only the offered center receives, so an id a center made up is
# answered exactly like one still on its way. A referral records knows, but of another center,
# or closed (declined, expired, withdrawn), stays a 404, as if it did not exist.

RETRY_AFTER_SECONDS = 2
NOT_KNOWN_YET_SLUG = "referral-not-known-yet"
NOT_KNOWN_YET_TITLE = "The referral has not reached records yet"
NOT_ACCEPTED_SLUG = "referral-not-accepted"


class ReferralNotKnownYet(ProblemError):
    """409 with `Retry-After`: records has not yet received the referral from partners."""

    status = 409
    type_slug = NOT_KNOWN_YET_SLUG
    title = NOT_KNOWN_YET_TITLE

    def __init__(self, referral_id: UUID) -> None:
        super().__init__(
            f"Records has not yet received referral {referral_id} from partners: the offer "
            "reaches a center a moment before it reaches records. If it was offered to this "
            f"center, retry in {RETRY_AFTER_SECONDS} seconds (Retry-After); if this persists "
            "for minutes, check the referral id.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def not_known_yet_response(
    example_path: str, also: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of the 409 `referral-not-known-yet` (and of `also`, another 409 the
    route answers), with its `Retry-After` header and an example at `/v1/referrals/<id>/…`."""
    entry = problem_responses(409)[409]
    entry["description"] = (
        f"`{NOT_KNOWN_YET_SLUG}`: records has not yet received this referral from partners "
        "(it follows the center's offer by a moment); retry after `Retry-After` seconds"
        + (f". Or {also}" if also else "")
    )
    entry["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before trying again (for `referral-not-known-yet`).",
            "schema": {"type": "integer"},
        }
    }
    entry["content"][PROBLEM_MEDIA_TYPE]["example"] = {
        "type": problem_type(NOT_KNOWN_YET_SLUG),
        "title": NOT_KNOWN_YET_TITLE,
        "status": 409,
        "detail": str(ReferralNotKnownYet(UUID(int=0)).detail),
        "instance": f"/v1/referrals/{UUID(int=0)}/{example_path}",
    }
    return {409: entry}


class ReferralNotAccepted(ProblemError):
    """409 with `Retry-After`: the center may upload only once it accepted the referral."""

    status = 409
    type_slug = NOT_ACCEPTED_SLUG
    title = "The referral is not accepted"

    def __init__(self, referral_id: UUID) -> None:
        super().__init__(
            f"Referral {referral_id} is offered to this center but not accepted: a center "
            "uploads to a case only after it accepted the referral through partners (POST "
            f"/v1/partner/referrals/{referral_id}/accept). If it has just accepted, records "
            f"hears of it within seconds: retry in {RETRY_AFTER_SECONDS} seconds (Retry-After).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


async def _offered(
    runtime: Runtime,
    center: str,
    referral_id: UUID,
    request: Request,
    *,
    accepted: bool = False,
) -> CenterReferral:
    """The open referral `referral_id` of `center` (`accepted`: one it has accepted)."""
    async with runtime.db.unit_of_work() as uow:
        referral = await uow.session.get(CenterReferral, referral_id)
    if referral is None:
        # Not heard of at all (not even a decline or an expiry): maybe still on its way.
        await audit(runtime, f"center:{center}", route_of(request), None, outcome="not_known_yet")
        raise ReferralNotKnownYet(referral_id)
    # Another center's referral, a declined, expired or completed one, or a withdrawn case.
    if referral.center_code != center or referral.closed_at is not None:
        await audit(
            runtime, f"center:{center}", route_of(request), referral.case_id, outcome="denied"
        )
        raise NotFound(f"There is no referral {referral_id} for this center.")
    if accepted and referral.accepted_at is None:
        await audit(
            runtime, f"center:{center}", route_of(request), referral.case_id, outcome="conflict"
        )
        raise ReferralNotAccepted(referral_id)
    return referral


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
    referral = await _offered(runtime, center, referral_id, request)
    async with runtime.db.unit_of_work() as uow:
        docs = await runtime.records.documents(uow, referral.case_id, for_center=center)
    await audit(runtime, f"center:{center}", "list", referral.case_id)
    names = neutral_names(docs)  # numbered over the whole list, the same on every page
    return [
        public(d, names[d.id])
        for d in _page(runtime, docs, scope, request, response, limit, cursor)
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
    request: Request,
) -> DownloadLink:
    """A short-lived link to one document of a case offered to this center (the patient's, or
    its own upload), under its neutral name; audited. Asked a moment after the offer, before
    records has heard of the referral: 409 `referral-not-known-yet`, retry after `Retry-After`
    seconds."""
    referral = await _offered(runtime, center, referral_id, request)
    async with runtime.db.unit_of_work() as uow:
        docs = await runtime.records.documents(uow, referral.case_id, for_center=center)
    doc = next((d for d in docs if d.id == document_id), None)
    if doc is None:
        await audit(
            runtime,
            f"center:{center}",
            "download_link",
            referral.case_id,
            document_id,
            outcome="denied",
        )
        raise NotFound(f"There is no document {document_id} in this referral.")
    name = neutral_names(docs)[doc.id]
    await audit(runtime, f"center:{center}", "download_link", referral.case_id, document_id)
    return _link(request, runtime, doc, f"center:{center}", referral.referral_id, name)


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
    openapi_extra={
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
    },
)
async def upload_opinion(
    referral_id: UUID, center: CenterDep, runtime: RuntimeDep, request: Request, response: Response
) -> DocumentPublic:
    """The center's written opinion on a referral it accepted, checked like every upload and
    stored as a document of kind `opinion` that names this referral and this center; then
    deliver it through partners' `POST /v1/partner/referrals/{referral_id}/opinion` with the
    returned id. Only the center that uploaded it can deliver it, and no other center sees it."""
    referral = await _offered(runtime, center, referral_id, request, accepted=True)
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
    document = await _store(
        runtime,
        response,
        referral.case_id,
        DocumentKind.OPINION,
        await read_upload(request),
        f"center:{center}",
        None,
        referral,
    )
    await audit(runtime, f"center:{center}", action, referral.case_id, document.id)
    return document


async def _answering(
    runtime: Runtime, center: str, referral_id: UUID, question_id: UUID, request: Request
) -> CenterReferral:
    """The referral `referral_id` of `center` that gave its opinion (or is about to: records may
    hear of the delivery a moment late) and has the unanswered follow-up question
    `question_id`; 404 for any other referral, question or center."""
    async with runtime.db.unit_of_work() as uow:
        referral = await uow.session.get(CenterReferral, referral_id)
        question = await runtime.records.open_question(uow, referral_id, question_id)
    if referral is None:
        await audit(runtime, f"center:{center}", route_of(request), None, outcome="not_known_yet")
        raise ReferralNotKnownYet(referral_id)
    if referral.center_code != center or referral.closed_reason not in (None, "completed"):
        await audit(
            runtime, f"center:{center}", route_of(request), referral.case_id, outcome="denied"
        )
        raise NotFound(f"There is no referral {referral_id} for this center.")
    if question is None:
        await audit(
            runtime, f"center:{center}", route_of(request), referral.case_id, outcome="denied"
        )
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
    openapi_extra={
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
    },
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


# ------------------------------------------------------------------------------ downloads


@router.get(
    "/downloads/{token}",
    name="download_document",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The document's bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(403, 410, 422),
    },
    summary="Download a document through a link",
)
async def download_document(
    token: Annotated[str, Path(max_length=2048)], runtime: RuntimeDep
) -> StreamingResponse:
    """The document a link (from `…/link` or a center's `…/documents/{id}`) names. The link is
    its own credential, checked at every use: forged or altered, 403; expired, or revoked since
    (the center's referral ended, the document was deleted), 410. Every download is audited:
    who the link was issued to, which document, when."""
    try:
        grant = runtime.links.open(token)
    except InvalidLink as exc:
        if exc.expired:
            raise ProblemError(
                "This download link has expired: ask for a new one.",
                status=410,
                type_slug="link-expired",
                title="The link has expired",
            ) from None
        await audit(runtime, "link:invalid", "download", None, outcome="denied")
        raise Forbidden("This download link is not valid.") from None
    note_request_case(grant.case_id)  # the path names a token: the case is the grant's
    try:
        async with runtime.db.unit_of_work() as uow:
            doc, chunks = await runtime.records.open_download(uow, grant)
    except LinkRevoked as exc:
        await audit(
            runtime, grant.actor, "download", grant.case_id, grant.document_id, outcome="denied"
        )
        raise ProblemError(
            f"This download link no longer opens its document: {exc}.",
            status=410,
            type_slug="link-revoked",
            title="The link was revoked",
        ) from None
    await audit(runtime, grant.actor, "download", grant.case_id, grant.document_id)
    return StreamingResponse(
        chunks,
        media_type=doc.media_type,
        headers={
            "Content-Length": str(doc.size_bytes),
            "Content-Disposition": "attachment; filename*=UTF-8''" + quote(grant.download_name),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
