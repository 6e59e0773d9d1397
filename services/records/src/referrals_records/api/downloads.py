"""The holder of a download link (`/v1/downloads/<token>`): the link is the credential, checked
at every use, and opens one document."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from starlette.responses import StreamingResponse

from referrals_common.api.problems import Forbidden, ProblemError, problem_responses
from referrals_common.telemetry import note_request_case
from referrals_records.api.deps import RuntimeDep, audit
from referrals_records.links import InvalidLink
from referrals_records.service import LinkRevoked

router = APIRouter(prefix="/v1")


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
    token: Annotated[str, Path(max_length=2048)], runtime: RuntimeDep, request: Request
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
        await audit(request, "link:invalid", "download", case_id=None, outcome="denied")
        raise Forbidden("This download link is not valid.") from None
    note_request_case(grant.case_id)  # the path names a token: the case is the grant's
    try:
        # A unit of work of its own, not the request's: it ends before the bytes stream.
        async with runtime.db.unit_of_work() as uow:
            doc, chunks = await runtime.records.open_download(uow, grant)
    except LinkRevoked as exc:
        await audit(
            request,
            grant.actor,
            "download",
            case_id=grant.case_id,
            document_id=grant.document_id,
            outcome="denied",
        )
        raise ProblemError(
            f"This download link no longer opens its document: {exc}.",
            status=410,
            type_slug="link-revoked",
            title="The link was revoked",
        ) from None
    await audit(
        request, grant.actor, "download", case_id=grant.case_id, document_id=grant.document_id
    )
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
