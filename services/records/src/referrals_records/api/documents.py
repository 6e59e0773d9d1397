"""What every audience reads of a document: its public view, a page of a case's documents, and
a short-lived download link to one of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Path, Request, Response
from pydantic import BaseModel, Field

from referrals_common.api.pagination import (
    DEFAULT_LIMIT,
    CursorSigner,
    PageOf,
    Position,
    slice_after,
)
from referrals_common.contracts import DocumentKind
from referrals_records.bootstrap import Runtime
from referrals_records.models import Document

DocumentId = Annotated[UUID, Path(description="The document id")]


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


def link_to(
    request: Request,
    runtime: Runtime,
    doc: Document,
    actor: str,
    referral_id: UUID | None,
    download_name: str,
) -> DownloadLink:
    """A signed link (`/v1/downloads/<token>`) to `doc` for `actor` (a center's names its
    referral: the link stops working when the referral ends), saving it as `download_name`."""
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


def page(
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
    one: PageOf[Document] = signer.page(rest, limit or DEFAULT_LIMIT, scope, request, key=key)
    one.link(response)
    return one.items


def _document_position(doc: Document) -> Position:
    return doc.created_at, doc.id
