"""Records' use cases: store a document (streamed, inspected, deduplicated), list, link, delete;
and what intake's and partners' events tell records about cases and referrals."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from referrals_common.contracts import (
    CaseStatus,
    DocumentKind,
    DocumentRejected,
    DocumentStored,
    new_event,
)
from referrals_common.contracts.records import RejectionReason
from referrals_common.db import Database, UnitOfWork
from referrals_records.inspection import (
    ContentInspector,
    UploadRefused,
    check_file_name,
    max_bytes_for,
    sniff,
)
from referrals_records.models import AccessAudit, CaseState, CenterReferral, Document, utcnow
from referrals_records.storage import DocumentStore
from referrals_records.uploads import Upload

log = logging.getLogger(__name__)
HEAD_BYTES = 64 * 1024

# Patients add documents until the opinion is delivered; a closed case takes none.
CLOSED = frozenset({CaseStatus.WITHDRAWN, CaseStatus.OPINION_DELIVERED, CaseStatus.UNROUTABLE})


class CaseClosed(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the case is {status}: it takes no more documents")
        self.status = status


class NotADraft(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the case is {status}: documents can be deleted only while it is a draft")


class DocumentNotFound(Exception):
    pass


class BadTranslation(Exception):
    pass


@dataclass(frozen=True)
class StoreResult:
    document: Document
    created: bool


@dataclass
class Records:
    db: Database
    store: DocumentStore
    max_upload_bytes: int
    max_imaging_bytes: int
    link_ttl: timedelta

    async def case_status(self, uow: UnitOfWork, case_id: UUID) -> str:
        row = await uow.session.get(CaseState, case_id)
        return row.status if row else CaseStatus.DRAFT

    async def store_document(
        self,
        case_id: UUID,
        kind: DocumentKind,
        upload: Upload,
        uploaded_by: str,
        translation_of: UUID | None,
    ) -> StoreResult:
        """Inspect and stream an upload into MinIO, then record it (or find its twin).

        A refused upload publishes `document.rejected` and leaves no object and no row.
        """
        document_id = uuid4()
        async with self.db.unit_of_work() as uow:
            status = await self.case_status(uow, case_id)
            if status in CLOSED:
                raise CaseClosed(status)
            if (kind == DocumentKind.TRANSLATION) != (translation_of is not None):
                raise BadTranslation(
                    "a translation names the document it translates "
                    "(translation_of), and only a translation does"
                )
            if translation_of is not None:
                original = await uow.session.get(Document, translation_of)
                if original is None or original.case_id != case_id or original.deleted_at:
                    raise BadTranslation(f"there is no document {translation_of} in this case")
        try:
            file_name = check_file_name(upload.file_name)
            head, rest = await _read_head(upload)
            media_type = sniff(head, file_name)
            inspector = ContentInspector(
                media_type,
                max_bytes=max_bytes_for(
                    kind, default_limit=self.max_upload_bytes, imaging_limit=self.max_imaging_bytes
                ),
            )
            key = f"cases/{case_id}/documents/{document_id}"

            async def chunks():  # type: ignore[no-untyped-def]
                if head:
                    yield head
                async for chunk in rest:
                    yield chunk

            stored = await self.store.put_stream(
                key, chunks(), media_type=media_type, inspect=inspector.feed
            )
            inspector.finish()
        except UploadRefused as refused:
            if "key" in locals():
                await self.store.remove(key)
            await self._rejected(case_id, document_id, refused)
            raise
        try:
            return await self._record(
                case_id,
                document_id,
                kind,
                media_type,
                stored.size_bytes,
                stored.sha256,
                key,
                file_name,
                translation_of,
                uploaded_by,
            )
        except BaseException:
            await self.store.remove(key)
            raise

    async def _record(
        self,
        case_id: UUID,
        document_id: UUID,
        kind: DocumentKind,
        media_type: str,
        size: int,
        sha256: str,
        key: str,
        file_name: str,
        translation_of: UUID | None,
        uploaded_by: str,
    ) -> StoreResult:
        async with self.db.unit_of_work() as uow:
            twin = await _live_twin(uow, case_id, sha256)
            if twin is None:
                doc = Document(
                    id=document_id,
                    case_id=case_id,
                    kind=kind,
                    media_type=media_type,
                    size_bytes=size,
                    sha256=sha256,
                    object_key=key,
                    file_name=file_name,
                    translation_of=translation_of,
                    uploaded_by=uploaded_by,
                )
                uow.session.add(doc)
                # The upload's audit row commits with the document: one transaction, not two.
                uow.session.add(
                    AccessAudit(
                        actor=uploaded_by,
                        action="upload",
                        case_id=case_id,
                        document_id=document_id,
                        outcome="ok",
                    )
                )
                await uow.outbox.add(
                    new_event(
                        DocumentStored(
                            case_id=case_id,
                            document_id=document_id,
                            kind=kind,
                            media_type=media_type,
                            size_bytes=size,
                            sha256=sha256,
                            object_key=key,
                            translation_of=translation_of,
                            stored_at=doc.created_at,
                        )
                    )
                )
                try:
                    await uow.commit()
                    return StoreResult(doc, created=True)
                except IntegrityError:
                    await uow.rollback()  # the same bytes, uploaded at the same moment
        async with self.db.unit_of_work() as uow:
            twin = await _live_twin(uow, case_id, sha256)
        await self.store.remove(key)
        assert twin is not None
        return StoreResult(twin, created=False)

    async def _rejected(self, case_id: UUID, document_id: UUID, refused: UploadRefused) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.outbox.add(
                new_event(
                    DocumentRejected(
                        case_id=case_id,
                        document_id=document_id,
                        reason=refused.reason,
                        detail=refused.detail[:500],
                    )
                )
            )
            await uow.commit()

    async def delete_document(self, case_id: UUID, document_id: UUID) -> None:
        async with self.db.unit_of_work() as uow:
            status = await self.case_status(uow, case_id)
            if status != CaseStatus.DRAFT:
                raise NotADraft(status)
            doc = await uow.session.get(Document, document_id, with_for_update=True)
            if doc is None or doc.case_id != case_id or doc.deleted_at is not None:
                raise DocumentNotFound(str(document_id))
            doc.deleted_at = utcnow()
            await uow.commit()
        await self.store.remove(doc.object_key)

    async def documents(self, uow: UnitOfWork, case_id: UUID) -> list[Document]:
        rows = await uow.session.execute(
            select(Document)
            .where(Document.case_id == case_id, Document.deleted_at.is_(None))
            .order_by(Document.created_at)
        )
        return list(rows.scalars())

    async def document(self, uow: UnitOfWork, case_id: UUID, document_id: UUID) -> Document:
        doc = await uow.session.get(Document, document_id)
        if doc is None or doc.case_id != case_id or doc.deleted_at is not None:
            raise DocumentNotFound(str(document_id))
        return doc

    def link(self, doc: Document) -> tuple[str, datetime]:
        url = self.store.presigned_get(
            doc.object_key, self.link_ttl, download_name=doc.file_name, media_type=doc.media_type
        )
        return url, datetime.now(UTC) + self.link_ttl

    # ---------------------------------------------------------------------------- events

    async def on_case_status(self, uow: UnitOfWork, case_id: UUID, status: str) -> None:
        row = await uow.session.get(CaseState, case_id, with_for_update=True)
        if row is None:
            uow.session.add(CaseState(case_id=case_id, status=status))
        elif row.status != CaseStatus.WITHDRAWN:  # withdrawal is final, whatever comes late
            row.status = status
            row.updated_at = utcnow()

    async def on_referral_offered(
        self, uow: UnitOfWork, referral_id: UUID, case_id: UUID, center_code: str
    ) -> None:
        if await uow.session.get(CenterReferral, referral_id) is None:
            referral = CenterReferral(
                referral_id=referral_id, case_id=case_id, center_code=center_code
            )
            # The cases and routing topics are not ordered with each other: an offer seen
            # after the withdrawal grants nothing.
            state = await uow.session.get(CaseState, case_id)
            if state is not None and state.status == CaseStatus.WITHDRAWN:
                referral.closed_at, referral.closed_reason = utcnow(), "withdrawn"
            uow.session.add(referral)

    async def on_referral_closed(
        self, uow: UnitOfWork, referral_id: UUID, case_id: UUID, center_code: str, reason: str
    ) -> None:
        """The center declined or let the offer expire: it reads the case no more. (Recorded
        even if the offer itself has not been seen yet, so a late offer grants nothing.)"""
        referral = await uow.session.get(CenterReferral, referral_id)
        if referral is None:
            referral = CenterReferral(
                referral_id=referral_id, case_id=case_id, center_code=center_code
            )
            uow.session.add(referral)
        if referral.closed_at is None:
            referral.closed_at = utcnow()
            referral.closed_reason = reason

    async def close_case_referrals(self, uow: UnitOfWork, case_id: UUID, reason: str) -> None:
        """The case was withdrawn: no center reads it any more."""
        await uow.session.execute(
            update(CenterReferral)
            .where(CenterReferral.case_id == case_id, CenterReferral.closed_at.is_(None))
            .values(closed_at=utcnow(), closed_reason=reason)
        )


async def _live_twin(uow: UnitOfWork, case_id: UUID, sha256: str) -> Document | None:
    rows = await uow.session.execute(
        select(Document).where(
            Document.case_id == case_id, Document.sha256 == sha256, Document.deleted_at.is_(None)
        )
    )
    return rows.scalars().first()


async def _read_head(upload: Upload):  # type: ignore[no-untyped-def]
    """The first HEAD_BYTES (or the whole file if smaller), and the iterator for the rest."""
    head = bytearray()
    iterator = upload.chunks.__aiter__()
    while len(head) < HEAD_BYTES:
        try:
            head += await iterator.__anext__()
        except StopAsyncIteration:
            break
    return bytes(head), iterator


__all__ = ["CLOSED", "Records", "RejectionReason"]
