"""Records' use cases: store a document (streamed, inspected, deduplicated), list, link, delete;
what intake's and partners' events tell records about cases and referrals; and the centers'
keys partners issued and revoked (records issues none).

Each use case runs in the unit of work its caller gives (an API route's, the consumer's inbox
transaction) and never commits: the caller does. The exception is storing an upload
(`store_document`, `record_document`, `rejected`): its bytes stream for minutes, and no
transaction may stay open that long, so it runs its own short statements, through asyncpg
itself (`repository.UploadStatements`): one read while the file's first part arrives (the
checks and the quota left, read together) and one transaction recording the document with its
`document.stored` (said again beside them); for a file of at most one part, whole in memory
before anything is sent, that transaction is open while that one request puts the object.
Queries are `repository.RecordsRepository`'s, made from the unit of work by
`Records.repository` (a unit test gives an in-memory one)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from referrals_common.auth.api_keys import hash_secret
from referrals_common.contracts import (
    CaseStatus,
    DocumentKind,
    DocumentRejected,
    DocumentStored,
    new_event,
)
from referrals_common.contracts.envelope import CloudEvent
from referrals_common.contracts.records import RejectionReason
from referrals_common.db import Database, UnitOfWork
from referrals_records.inspection import (
    CaseQuotaExceeded,
    ContentInspector,
    SizeLimits,
    UploadRefused,
    check_file_name,
    max_bytes_for,
    sniff,
    too_large,
)
from referrals_records.links import DownloadGrant
from referrals_records.models import (
    CenterReferral,
    Document,
    FollowUpQuestion,
    document_value,
    utcnow,
)
from referrals_records.repository import (
    RecordsRepository,
    TwinRecorded,
    UploadState,
    UploadStatements,
    documents_listed,
)
from referrals_records.repository import upload_statements as statements_on
from referrals_records.storage import WHOLE_FILE_BYTES, DocumentStore, StoredObject
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


class NotOwnUpload(Exception):
    """A center uploaded the very bytes of a document it did not upload for this referral."""

    def __init__(self, document_id: UUID) -> None:
        super().__init__(f"the same file is already document {document_id} of this case")
        self.document_id = document_id


class LinkRevoked(Exception):
    """A download link no longer opens its document; the message says why."""


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
    limits: SizeLimits
    case_quota_bytes: int = 5 * 2**30
    repository: Callable[[Any], RecordsRepository] = RecordsRepository
    """Makes the repository of a unit of work (`RecordsRepository.on(db)`: its projection
    writes through asyncpg; an in-memory one in unit tests)."""
    upload_statements: Callable[[Any], AbstractAsyncContextManager[UploadStatements]] = lambda db: (
        statements_on(db.engine)
    )
    """Opens an upload's own statements on a connection of `db`'s pool (`statements_on`; an
    in-memory one in unit tests)."""
    listing: Callable[[Any, UUID, str], Awaitable[list[Document]]] = lambda db, case_id, actor: (
        documents_listed(db.engine, case_id, actor)
    )
    """Lists a case's live documents with the listing's audit row, in one statement on a
    connection of `db`'s pool (`repository.documents_listed`; an in-memory one in unit tests)."""

    def repo(self, uow: UnitOfWork) -> RecordsRepository:
        """The repository of `uow` (its session made only if a query needs it)."""
        return self.repository(uow)

    async def case_status(self, uow: UnitOfWork, case_id: UUID) -> str:
        return await self.repo(uow).case_status(case_id)

    async def check_upload(
        self,
        uow: UnitOfWork,
        case_id: UUID,
        kind: DocumentKind,
        translation_of: UUID | None,
        referral: CenterReferral | None = None,
    ) -> None:
        """Refuse up front what no upload of `kind` to the case may be: the case is closed (but
        to a center answering a follow-up question after its opinion), or a translation that
        names no document of the case, or a document that is not a translation naming one."""
        repo = self.repo(uow)
        status = await repo.case_status(case_id)
        _refuse_upload(status, kind, translation_of, referral)
        if translation_of is not None:
            original = await repo.document(translation_of)
            live = original is not None and original.case_id == case_id and not original.deleted_at
            _refuse_upload(status, kind, translation_of, referral, original_live=live)

    async def store_document(
        self,
        case_id: UUID,
        kind: DocumentKind,
        upload: Upload,
        uploaded_by: str,
        translation_of: UUID | None,
        referral: CenterReferral | None = None,
    ) -> StoreResult:
        """Inspect and stream an upload into MinIO, then record it (or find its twin).

        `referral` is the referral a center uploads for (its opinion); None for the patient's
        documents. A refused upload publishes `document.rejected` and leaves no object and no
        row.

        Opens its own connections, none held across the stream (minutes, for a large study):
        one read while the file's first part arrives, before anything is stored (the checks,
        and the quota left: one statement, outside a transaction, its snapshot checked again
        under a lock when recording; what it refuses is answered before any refusal of the
        file), one recording the document (`_record`), or one publishing its refusal
        (`_rejected`).

        A file of at most `WHOLE_FILE_BYTES` (most scans and letters) is in memory whole
        before anything is sent, as the stream would hold it anyway: it is inspected to its end
        first (nothing is stored if it is refused) and hashed in the same pass, then put in
        one request of known length signed with that SHA-256 (MinIO stores only bytes that
        have it) while it is recorded, the record committing only once the object is stored
        (`_record`'s `storing`). A larger file streams in parts (`DocumentStore.put_stream`)
        and is recorded after.
        """
        document_id = uuid4()
        key = f"cases/{case_id}/documents/{document_id}"
        # The checks and the quota left are read while the file's first part arrives: the
        # round trip is off the upload's path. Any outcome of the reading waits for them, so
        # what the case refuses (closed, a bad translation) is answered first, as if checked
        # before the bytes.
        state_read = asyncio.ensure_future(self._upload_state(case_id, translation_of))

        async def checked() -> UploadState:
            state = await state_read
            _refuse_upload(
                state.status, kind, translation_of, referral, original_live=state.original_live
            )
            return state

        stored: StoredObject | None = None  # streamed into the bucket
        whole: StoredObject | None = None  # held in memory, not stored yet
        try:
            try:
                file_name = check_file_name(upload.file_name)
                chunks, rest = await _read_head(upload)
                media_type = sniff(_joined(chunks), file_name)
                # The limit follows the type found in the content, not the declared kind; the
                # case's quota left bounds the stream too (checked again when recording).
                limit = max_bytes_for(media_type, self.limits)
                inspector = ContentInspector(media_type, max_bytes=limit)
                # A body announced larger than any file of its type is refused now, not after
                # streaming and hashing up to the limit.
                if upload.surely_larger_than(limit):
                    raise too_large(limit)
                small = await _read_on(chunks, rest, WHOLE_FILE_BYTES)
            except Exception:
                await checked()
                raise
            except BaseException:
                state_read.cancel()
                await asyncio.gather(state_read, return_exceptions=True)
                raise
            state = await checked()
            quota = (
                # No bound on a center's opinion: a patient filling the quota must not keep the
                # case from its opinion.
                _QuotaMeter(None, 0)
                if kind == DocumentKind.OPINION
                else _QuotaMeter(self.case_quota_bytes, state.live_bytes)
            )
            # Nor one announced larger than the quota left.
            if quota.quota is not None and upload.surely_larger_than(quota.quota - quota.used):
                raise CaseQuotaExceeded(quota.quota, quota.used)

            def inspect(chunk: bytes | bytearray) -> None:
                inspector.feed(chunk)
                quota.feed(chunk)

            if small:
                # The whole file, at most one part: checked before anything is stored, and
                # hashed in the same pass (here, not in a worker thread: at most a part's
                # worth, and a hop to a thread and back costs more than it saves).
                digest = hashlib.sha256()
                for chunk in chunks:
                    inspect(chunk)
                    digest.update(chunk)
                inspector.finish()
                whole = StoredObject(sum(map(len, chunks)), digest.hexdigest())
            else:
                stream, chunks = _chain(chunks, rest), []
                stored = await self.store.put_stream(
                    key, stream, media_type=media_type, inspect=inspect
                )
                inspector.finish()
        except UploadRefused as refused:
            if stored is not None:  # refused at its end, once streamed (put_stream removes
                await self.store.remove(key)  # what it stored if it fails itself)
            await self._rejected(case_id, document_id, refused)
            raise
        storing = None
        if whole is not None:
            # The put is signed with the digest: MinIO stores the bytes only if they have it.
            # The file's pieces as they arrived, never joined: hashed and sent as they are.
            stored = whole
            storing = asyncio.create_task(
                self.store.put_object(key, chunks, media_type=media_type, sha256=stored.sha256)
            )
        assert stored is not None  # streamed, or held whole
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
                referral,
                storing,
            )
        except CaseQuotaExceeded as refused:  # a concurrent upload took the rest of the quota
            await self._discard(key, storing)
            await self._rejected(case_id, document_id, refused)
            raise
        except BaseException:
            await self._discard(key, storing)
            raise

    async def _upload_state(self, case_id: UUID, translation_of: UUID | None) -> UploadState:
        async with self.upload_statements(self.db) as statements:
            return await statements.upload_state(case_id, translation_of)

    async def _discard(self, key: str, storing: asyncio.Task[None] | None) -> None:
        """Remove an upload's object, once its put (if still in flight) has ended: removed
        before the put ends, the object would appear after its removal."""
        if storing is not None:
            await asyncio.gather(storing, return_exceptions=True)
        await self.store.remove(key)

    async def quota_left(self, uow: UnitOfWork, case_id: UUID) -> int:
        """The bytes the case's quota leaves for one more document of the patient."""
        return self.case_quota_bytes - await self.repo(uow).live_bytes(case_id)

    async def record_document(self, *args: Any) -> StoreResult:
        """Record an object already stored and inspected (a completed resumable upload) as a
        one-shot upload records its own: the document with its audit row and `document.stored`
        in one transaction, or the case's document with the same bytes (the object is then
        removed). Arguments as `_record`'s."""
        return await self._record(*args)

    async def rejected(self, case_id: UUID, document_id: UUID, refused: UploadRefused) -> None:
        """Publish `document.rejected` for an upload records refused."""
        await self._rejected(case_id, document_id, refused)

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
        referral: CenterReferral | None,
        storing: asyncio.Task[None] | None = None,
    ) -> StoreResult:
        # Its own transaction, committed here: the bytes are stored already (an upload's end,
        # after a stream no transaction was held across), or are being put in one request
        # (`storing`: a file of at most one part, whole in memory), awaited before the commit;
        # the document, its audit row and `document.stored` commit together once the object
        # is stored, or the object is removed by the caller. (The case's advisory lock is held
        # meanwhile: another upload to the same case records after this one's put.)

        def document_and_event() -> tuple[Document, CloudEvent[DocumentStored]]:
            doc = document_value(
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
                center_code=referral.center_code if referral else None,
                referral_id=referral.referral_id if referral else None,
            )
            stored = new_event(
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
                    referral_id=doc.referral_id,
                )
            )
            return doc, stored

        # A patient's uploads to the case are recorded one at a time (the case's lock is held
        # until commit), so two streamed at once cannot both pass the quota. A center's opinion
        # has no bound: a patient filling the quota must not keep the case from its opinion.
        quota = None if kind == DocumentKind.OPINION else self.case_quota_bytes
        # The upload's audit row and `document.stored` are written with the document, in the
        # same statement: BEGIN with the lock, that statement, COMMIT.
        twin_id: UUID | None = None
        async with self.upload_statements(self.db) as statements:
            try:
                async with statements.recording(lock_case=None if quota is None else case_id):
                    # Made once the BEGIN is on its way: `storing`'s first steps (the object's
                    # request signed and written) run then, so MinIO takes the bytes while the
                    # document and its event are made, not after.
                    doc, stored = document_and_event()
                    used, twin_id = await statements.add_unless_twin(
                        doc, quota=quota, stored=stored
                    )
                    if twin_id is None:
                        if quota is not None and used + size > quota:
                            raise CaseQuotaExceeded(quota, used)  # nothing recorded: rolled back
                        if storing is not None:
                            await storing  # the object first: a row never names a missing object
            except TwinRecorded:  # the same bytes, recorded at the same moment (a center's)
                twin_id = document_id  # not recorded: the twin is read again below
        if twin_id is None:
            return StoreResult(doc, created=True)
        async with self.db.unit_of_work() as uow:
            twin = await self.repo(uow).live_twin(case_id, sha256)
        await self._discard(key, storing)
        assert twin is not None
        if referral is not None and twin.referral_id != referral.referral_id:
            raise NotOwnUpload(twin.id)
        return StoreResult(twin, created=False)

    async def _rejected(self, case_id: UUID, document_id: UUID, refused: UploadRefused) -> None:
        # Its own unit of work, committed here: a refused upload's stream has no transaction
        # of its caller to join (none is held across a stream).
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

    async def delete_document(self, uow: UnitOfWork, case_id: UUID, document_id: UUID) -> Document:
        """Mark a document of a draft case deleted (NotADraft once the case was submitted,
        DocumentNotFound for no live document of the case); its object stays until the caller
        committed and calls `discard` with it."""
        repo = self.repo(uow)
        status = await repo.case_status(case_id)
        if status != CaseStatus.DRAFT:
            raise NotADraft(status)
        doc = await repo.document(document_id, lock=True)
        if doc is None or doc.case_id != case_id or doc.deleted_at is not None:
            raise DocumentNotFound(str(document_id))
        doc.deleted_at = utcnow()
        return doc

    async def discard(self, doc: Document) -> None:
        """Remove a deleted document's object from storage, once its deletion is committed."""
        await self.store.remove(doc.object_key)

    async def documents(
        self, uow: UnitOfWork, case_id: UUID, *, for_center: str | None = None
    ) -> list[Document]:
        """The case's live documents, oldest first. `for_center`: only what that center may
        see, the patient's documents and its own uploads (never another center's opinion,
        unless the patient shared it for a further opinion)."""
        return await self.repo(uow).documents(case_id, for_center=for_center)

    async def documents_listed(self, case_id: UUID, actor: str) -> list[Document]:
        """The case's live documents, oldest first, for the patient's listing, and `actor`'s
        audit row of it, in one statement (`repository.documents_listed`)."""
        return await self.listing(self.db, case_id, actor)

    async def document(
        self, uow: UnitOfWork, case_id: UUID, document_id: UUID, *, for_center: str | None = None
    ) -> Document:
        """One live document of the case (for `for_center`, only one that center may see)."""
        doc = await self.repo(uow).document(document_id)
        if doc is None or doc.case_id != case_id or doc.deleted_at is not None:
            raise DocumentNotFound(str(document_id))
        if for_center is not None and not readable_by(doc, for_center):
            raise DocumentNotFound(str(document_id))
        return doc

    async def open_download(
        self, uow: UnitOfWork, grant: DownloadGrant
    ) -> tuple[Document, Iterator[bytes]]:
        """The document a link grants and its bytes, if the grant still holds: the document is
        live and, for a center's link, its referral is still open (LinkRevoked otherwise)."""
        repo = self.repo(uow)
        doc = await repo.document(grant.document_id)
        if doc is None or doc.case_id != grant.case_id or doc.deleted_at is not None:
            raise LinkRevoked("the document was deleted")
        if grant.referral_id is not None:
            referral = await repo.referral(grant.referral_id)
            if referral is None or referral.closed_at is not None:
                raise LinkRevoked("the referral that granted it has ended")
            if not readable_by(doc, referral.center_code):
                raise LinkRevoked("the document is not this center's to read")
        stream = await asyncio.to_thread(self.store.open_stream, doc.object_key)
        return doc, stream

    async def referral(self, uow: UnitOfWork, referral_id: UUID) -> CenterReferral | None:
        """The referral records heard of from partners, if it has."""
        return await self.repo(uow).referral(referral_id)

    # ---------------------------------------------------------------------------- events

    async def on_case_status(self, uow: UnitOfWork, case_id: UUID, status: str) -> None:
        """Intake says the case is now `status`; withdrawal is final, whatever comes late."""
        await self.repo(uow).set_case_status(case_id, status)

    async def on_opinions_shared(
        self, uow: UnitOfWork, case_id: UUID, document_ids: list[UUID]
    ) -> None:
        """A further opinion was asked: the centers offered the case from now on read exactly
        the earlier opinions this round shares (the patient's consent), only of this case; an
        opinion shared for an earlier round and not now is no longer readable by them."""
        await self.repo(uow).share_opinions(case_id, document_ids)

    async def on_referral_offered(
        self, uow: UnitOfWork, referral_id: UUID, case_id: UUID, center_code: str
    ) -> None:
        """The center was offered the case: it may read the patient's documents (a referral
        first heard of after the case's withdrawal is born closed; one records knows stays as
        it is)."""
        await self.repo(uow).add_referral(referral_id, case_id, center_code)

    async def on_referral_accepted(
        self, uow: UnitOfWork, referral_id: UUID, case_id: UUID, center_code: str
    ) -> None:
        """The center accepted: it may now upload (its opinion) while the referral is open.
        The cases and routing topics are not ordered with each other: a referral first heard
        of here is made, born closed after the case's withdrawal (it grants nothing)."""
        await self.repo(uow).accept_referral(referral_id, case_id, center_code)

    async def on_referral_closed(
        self, uow: UnitOfWork, referral_id: UUID, case_id: UUID, center_code: str, reason: str
    ) -> None:
        """The center declined, let the offer expire or delivered its opinion: it reads and
        uploads no more (the first close stands). Recorded even if the offer itself has not
        been seen yet, so a late offer grants nothing."""
        await self.repo(uow).close_referral(referral_id, case_id, center_code, reason)

    async def on_follow_up_asked(
        self,
        uow: UnitOfWork,
        question_id: UUID,
        referral_id: UUID,
        case_id: UUID,
        asked_at: datetime,
    ) -> None:
        """The patient asked the center of `referral_id` a follow-up question: until it answers,
        that center may upload documents to answer it."""
        await self.repo(uow).add_question(question_id, referral_id, case_id, asked_at)

    async def on_follow_up_answered(self, uow: UnitOfWork, question_id: UUID) -> None:
        """The center answered: it uploads nothing more for this question."""
        await self.repo(uow).answer_question(question_id)

    async def open_question(
        self, uow: UnitOfWork, referral_id: UUID, question_id: UUID
    ) -> FollowUpQuestion | None:
        """The unanswered follow-up question `question_id` on `referral_id`, if there is one."""
        question = await self.repo(uow).question(question_id)
        if question is None or question.referral_id != referral_id or question.answered_at:
            return None
        return question

    async def on_case_withdrawn(self, uow: UnitOfWork, case_id: UUID) -> None:
        """The case was withdrawn: its status is final, and no center reads it any more (every
        open referral closed)."""
        await self.repo(uow).case_withdrawn(case_id)


async def on_credential_issued(
    uow: UnitOfWork,
    pepper: bytes,
    *,
    key_id: str,
    center_code: str,
    key_sha256: str,
    issued_at: datetime,
    repository: Callable[[Any], RecordsRepository] = RecordsRepository,
) -> None:
    """Partners issued a key to `center_code`: records accepts it from now on, checked against
    `hash_secret(key_sha256, pepper)`. A key records already knows is left as it is: a revoked
    key is never revived, and a key id is never moved to another center."""
    await repository(uow).add_key(
        key_id=key_id,
        center_code=center_code,
        secret_hash=hash_secret(key_sha256, pepper),
        issued_at=issued_at,
    )


async def on_credential_revoked(
    uow: UnitOfWork,
    *,
    key_id: str,
    center_code: str,
    revoked_at: datetime,
    repository: Callable[[Any], RecordsRepository] = RecordsRepository,
) -> None:
    """Partners revoked the key: records refuses it from now on, forever. Known only by its
    revocation (the issue was compacted away or comes later), the key is kept as revoked."""
    await repository(uow).revoke_key(key_id=key_id, center_code=center_code, revoked_at=revoked_at)


@dataclass
class _QuotaMeter:
    """Counts an upload's bytes against what the case's quota leaves (`quota` None: no bound)."""

    quota: int | None
    used: int
    fed: int = 0

    def feed(self, chunk: bytes | bytearray) -> None:
        self.fed += len(chunk)
        if self.quota is not None and self.used + self.fed > self.quota:
            raise CaseQuotaExceeded(self.quota, self.used)


async def _read_on(chunks: list[bytes], rest: AsyncIterator[bytes], size: int) -> bool:
    """Append what follows from `rest` to `chunks` until they hold more than `size` bytes or the
    end: whether they are the whole file. Kept as pieces (a growing buffer would copy them as
    it grows, and joining them once more)."""
    held = sum(map(len, chunks))
    while held <= size:
        try:
            chunk = await rest.__anext__()
        except StopAsyncIteration:
            return True
        chunks.append(chunk)
        held += len(chunk)
    return False


def _joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _chain(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The pieces of `first`, then those of `rest`; `first` is emptied as it goes (a part's
    worth of memory, not held for the rest of a long stream)."""
    first.reverse()
    while first:
        yield first.pop()
    async for chunk in rest:
        yield chunk


async def _read_head(upload: Upload) -> tuple[list[bytes], AsyncIterator[bytes]]:
    """The first chunks, at least HEAD_BYTES (or the whole file if smaller), and the iterator
    for the rest."""
    chunks: list[bytes] = []
    held = 0
    iterator = upload.chunks.__aiter__()
    while held < HEAD_BYTES:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            break
        chunks.append(chunk)
        held += len(chunk)
    return chunks, iterator


def _refuse_upload(
    status: str,
    kind: DocumentKind,
    translation_of: UUID | None,
    referral: CenterReferral | None,
    *,
    original_live: bool | None = None,
) -> None:
    """Refuse what no upload of `kind` to a case in `status` may be (see `check_upload`);
    `original_live`: whether the document a translation names is a live one of the case (None:
    not known yet, not checked)."""
    if status in CLOSED and not _answers_after_opinion(status, referral):
        raise CaseClosed(status)
    if (kind == DocumentKind.TRANSLATION) != (translation_of is not None):
        raise BadTranslation(
            "a translation names the document it translates "
            "(translation_of), and only a translation does"
        )
    if translation_of is not None and original_live is False:
        raise BadTranslation(f"there is no document {translation_of} in this case")


def _answers_after_opinion(status: str, referral: CenterReferral | None) -> bool:
    """A center's upload that answers a follow-up question: the case has its opinion (closed to
    the patient's uploads), the referral delivered it (the route checked the open question)."""
    return (
        status == CaseStatus.OPINION_DELIVERED
        and referral is not None
        and referral.closed_reason == "completed"
    )


def readable_by(doc: Document, center: str) -> bool:
    """A center reads the patient's documents, its own uploads, and the earlier opinions the
    patient shared for a further opinion; never another center's opinion otherwise."""
    return doc.center_code in (None, center) or doc.shared_at is not None


__all__ = [
    "CLOSED",
    "Records",
    "RejectionReason",
    "on_credential_issued",
    "on_credential_revoked",
    "readable_by",
]
