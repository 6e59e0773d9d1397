"""Resumable uploads: a large file sent in numbered parts that survive a dropped connection.

The client declares the file (kind, name, size) and gets an upload whose parts it sends one after
another (`PUT …/parts/<n>`, each `part_size` bytes, the last one the rest); after a dropped
connection it asks which parts arrived and goes on from the first missing one. Each part streams
from the request into MinIO as one part of a multipart upload, so nothing is kept on records'
disk or read twice. Completing the upload assembles the object and runs what a one-shot upload
runs (content type sniffed from the first part, the same `ContentInspector`, the size limit of
that type, the case's quota, the twin check by SHA-256) and records one document with its
`document.stored` event (`Records.record_document`): completing again answers the same document.

Parts are accepted in order: the document's SHA-256 and the inspection must see the bytes in
order, and this process keeps their running state between parts (`ProgressCache`). When another
process received the earlier parts (a restart, another replica), completion reads the assembled
object once instead; the result is the same. A part sent again is harmless: the same bytes answer
what was stored, other bytes are refused (409) and change nothing.

An upload nobody continues expires (`upload_ttl_hours` after its last part): `expire_uploads`
aborts its multipart upload in MinIO, which drops the parts.

Reading an upload (`view`) runs in its caller's unit of work, as records' other use cases do.
The steps that change one open their own short units of work and commit them: a part streams
for as long as the client takes to send it, and no transaction may stay open that long, so
each step reads and locks its rows, commits, streams, then records what arrived in another;
and a row change that follows an object-store action (a multipart upload created, completed or
aborted) commits at once, so the two cannot drift apart. Queries are
`repository.UploadRepository`'s (and `RecordsRepository`'s for documents and cases).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from referrals_common.contracts import DocumentKind
from referrals_common.db import Database, UnitOfWork
from referrals_records.inspection import (
    HEAD_BYTES,
    CaseQuotaExceeded,
    ContentInspector,
    UploadRefused,
    check_file_name,
    max_bytes_for,
    sniff,
    too_large,
)
from referrals_records.models import (
    CenterReferral,
    UploadKey,
    UploadPart,
    UploadSession,
    utcnow,
)
from referrals_records.repository import UploadRepository
from referrals_records.service import CLOSED, CaseClosed, Records, StoreResult
from referrals_records.storage import MultipartUploads

PART_LEASE = timedelta(minutes=15)
"""How long a part being received blocks a second copy of it (a crashed receiver's part is
taken over after this)."""


class UploadNotFound(Exception):
    """No such upload for this caller (another case's, another center's: the same answer)."""


class UploadGone(Exception):
    """The upload expired or was cancelled: its parts are gone (410)."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the upload was {state}: its parts are gone")
        self.state = state


class UploadClosed(Exception):
    """The upload takes no more parts: it was completed or refused (409)."""

    def __init__(self, session: UploadSession) -> None:
        super().__init__(f"the upload is {session.state}")
        self.session = session


class PartBeyondDeclaredSize(Exception):
    def __init__(self, parts: int) -> None:
        super().__init__(f"the declared size makes {parts} parts")
        self.parts = parts


class PartWrongSize(Exception):
    def __init__(self, number: int, expected: int) -> None:
        super().__init__(f"part {number} must be {expected} bytes")
        self.number = number
        self.expected = expected


class PartOutOfOrder(Exception):
    def __init__(self, expected: int) -> None:
        super().__init__(f"parts arrive in order: the next one is part {expected}")
        self.expected = expected


class PartBusy(Exception):
    """The same part is being received by another request."""


class PartDiffers(Exception):
    """A part sent again holds other bytes than the part received."""


class UploadIncomplete(Exception):
    def __init__(self, missing: list[int]) -> None:
        super().__init__(f"parts {missing[:20]} have not arrived")
        self.missing = missing


class UploadCompleting(Exception):
    """Another request is completing the upload."""


@dataclass
class UploadView:
    """An upload with the parts received (in order) and the bytes they hold."""

    session: UploadSession
    received: list[int]
    received_bytes: int

    @property
    def parts_total(self) -> int:
        return parts_total(self.session)

    @property
    def next_part(self) -> int | None:
        if self.session.state != "open":
            return None
        expected = len(self.received) + 1
        return expected if expected <= self.parts_total else None


def parts_total(session: UploadSession) -> int:
    return max(1, -(-session.size_bytes // session.part_size))


def part_length(session: UploadSession, number: int) -> int:
    total = parts_total(session)
    if number < total:
        return session.part_size
    return session.size_bytes - (total - 1) * session.part_size


class PartChecksum:
    """Tells a part sent again with the same bytes from one with other bytes. CRC-32, not a
    cryptographic hash: either answer changes nothing stored (the part received stays), so a
    collision could only turn a 409 into a harmless 200, and the document's SHA-256 is taken
    once over the file; a second SHA-256 pass over every part cost ~2.5 CPU-s a GB."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, chunk: bytes) -> None:
        self.value = zlib.crc32(chunk, self.value)

    def hexdigest(self) -> str:
        return f"crc32:{self.value:08x}"


@dataclass
class _Progress:
    """The running SHA-256 and inspection of an upload's bytes up to `next_part`."""

    next_part: int
    digest: Any
    inspector: ContentInspector

    def copy(self) -> _Progress:
        return _Progress(self.next_part, self.digest.copy(), copy.deepcopy(self.inspector))


@dataclass
class ProgressCache:
    """Uploads in progress in this process, least recently used dropped first (a dropped one is
    inspected from the assembled object at completion)."""

    capacity: int = 256
    items: OrderedDict[UUID, _Progress] = field(default_factory=OrderedDict)

    def get(self, upload_id: UUID) -> _Progress | None:
        found = self.items.get(upload_id)
        if found is not None:
            self.items.move_to_end(upload_id)
        return found

    def put(self, upload_id: UUID, progress: _Progress) -> None:
        self.items[upload_id] = progress
        self.items.move_to_end(upload_id)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)

    def drop(self, upload_id: UUID) -> None:
        self.items.pop(upload_id, None)


@dataclass
class ResumableUploads:
    records: Records
    multipart: MultipartUploads
    part_size: int
    ttl: timedelta
    progress: ProgressCache = field(default_factory=ProgressCache)
    repository: Callable[[Any], UploadRepository] = UploadRepository
    """Makes the repository of a unit of work's session (an in-memory one in unit tests)."""

    @property
    def db(self) -> Database:
        return self.records.db

    def repo(self, uow: UnitOfWork) -> UploadRepository:
        """The uploads' repository on `uow`'s session."""
        return self.repository(uow.session)

    # ------------------------------------------------------------------------ creating

    async def create(
        self,
        *,
        case_id: UUID,
        owner: str,
        uploaded_by: str,
        kind: DocumentKind,
        file_name: str,
        size_bytes: int,
        translation_of: UUID | None,
        idempotency_key: str,
        request_hash: str,
        referral: CenterReferral | None = None,
    ) -> tuple[UploadSession, bool]:
        """Open an upload of `size_bytes` (True: the same request with this key had opened it,
        which is answered again). Refuses what a one-shot upload would refuse up front: a closed
        case, a bad translation, a bad name, a size over every limit or over the case's quota."""
        name = check_file_name(file_name)
        largest = max(
            self.records.limits.dicom,
            self.records.limits.pdf,
            self.records.limits.image,
            self.records.limits.docx,
            self.records.limits.text,
        )
        if size_bytes > largest:
            raise too_large(largest)
        upload_id = uuid4()
        document_id = uuid4()
        key = f"cases/{case_id}/documents/{document_id}"
        async with self.db.unit_of_work() as uow:
            uploads = self.repo(uow)
            first = await uploads.claim(
                UploadKey(
                    owner=owner, key=idempotency_key, request_hash=request_hash, upload_id=upload_id
                ),
            )
            if first is not None:
                session = await uploads.upload(first.upload_id)
                assert session is not None
                return session, True
            await self.records.check_upload(uow, case_id, kind, translation_of)
            if kind != DocumentKind.OPINION:
                quota = await self.records.quota_left(uow, case_id)
                if size_bytes > quota:
                    raise CaseQuotaExceeded(
                        self.records.case_quota_bytes, self.records.case_quota_bytes - quota
                    )
            storage_upload_id = await self.multipart.create(key)
            now = utcnow()
            session = UploadSession(
                id=upload_id,
                case_id=case_id,
                owner=owner,
                uploaded_by=uploaded_by,
                kind=kind,
                translation_of=translation_of,
                file_name=name,
                size_bytes=size_bytes,
                part_size=self.part_size,
                document_id=document_id,
                object_key=key,
                storage_upload_id=storage_upload_id,
                center_code=referral.center_code if referral else None,
                referral_id=referral.referral_id if referral else None,
                created_at=now,
                updated_at=now,
                expires_at=now + self.ttl,
            )
            uploads.add(session)
            try:
                # Committed here: the multipart upload just created is aborted if its row is not.
                await uow.commit()
            except BaseException:
                await self.multipart.abort(key, storage_upload_id)
                raise
        return session, False

    # ------------------------------------------------------------------------- reading

    async def _owned(
        self, uow: UnitOfWork, owner: str, case_id: UUID, upload_id: UUID, *, lock: bool
    ) -> UploadSession:
        session = await self.repo(uow).upload(upload_id, lock=lock)
        if session is None or session.owner != owner or session.case_id != case_id:
            raise UploadNotFound(str(upload_id))
        return session

    async def view(self, uow: UnitOfWork, owner: str, case_id: UUID, upload_id: UUID) -> UploadView:
        """The upload and the parts received so far (404 for anyone but its owner; 410 once it
        expired or was cancelled), read in the caller's unit of work."""
        session = await self._owned(uow, owner, case_id, upload_id, lock=False)
        return await self._view(uow, session)

    async def _view_now(self, owner: str, case_id: UUID, upload_id: UUID) -> UploadView:
        """`view` in a unit of work of its own: after a part streamed, the state it left."""
        async with self.db.unit_of_work() as uow:
            return await self.view(uow, owner, case_id, upload_id)

    async def _view(self, uow: UnitOfWork, session: UploadSession) -> UploadView:
        if session.state in ("expired", "cancelled"):
            raise UploadGone(session.state)
        if session.state == "open" and session.expires_at <= utcnow():
            raise UploadGone("expired")
        parts = await self.repo(uow).received(session.id)
        if session.state == "completed":
            numbers = list(range(1, parts_total(session) + 1))
            return UploadView(session, numbers, session.size_bytes)
        return UploadView(session, [n for n, _ in parts], sum(s for _, s in parts))

    # --------------------------------------------------------------------------- parts

    async def put_part(
        self,
        owner: str,
        case_id: UUID,
        upload_id: UUID,
        number: int,
        length: int | None,
        chunks: AsyncIterator[bytes],
    ) -> tuple[UploadView, bool]:
        """Receive part `number` (True: it had been received with the same bytes already)."""
        async with self.db.unit_of_work() as uow:
            session = await self._owned(uow, owner, case_id, upload_id, lock=True)
            if session.state != "open":
                await self._view(uow, session)  # expired, cancelled: 410
                raise UploadClosed(session)
            if session.expires_at <= utcnow():
                raise UploadGone("expired")
            total = parts_total(session)
            if number > total:
                raise PartBeyondDeclaredSize(total)
            expected = part_length(session, number)
            if length != expected:
                raise PartWrongSize(number, expected)
            uploads = self.repo(uow)
            part = await uploads.part(upload_id, number, lock=True)
            if part is not None and part.etag is not None:
                received_sha = part.checksum
            else:
                received_sha = None
                if part is not None and part.started_at > utcnow() - PART_LEASE:
                    raise PartBusy()
                have = await uploads.received_before(upload_id, number)
                if len(have) != number - 1:
                    missing = next(n for n in range(1, number) if n not in set(have))
                    raise PartOutOfOrder(missing)
                if part is None:
                    uploads.add(UploadPart(upload_id=upload_id, number=number, size_bytes=expected))
                else:
                    part.started_at = utcnow()
                # Committed before the part streams: its lease is taken, no transaction held.
                await uow.commit()
        if received_sha is not None:
            again = PartChecksum()
            async for chunk in chunks:
                again.update(chunk)
            if again.hexdigest() != received_sha:
                raise PartDiffers()
            return await self._view_now(owner, case_id, upload_id), True
        try:
            await self._receive(session, number, expected, chunks)
        except UploadRefused as refused:
            await self._refuse(session, refused)
            raise
        except BaseException:
            async with self.db.unit_of_work() as uow:
                await self.repo(uow).drop_unfinished_part(upload_id, number)
                await uow.commit()
            raise
        return await self._view_now(owner, case_id, upload_id), False

    async def _receive(
        self, session: UploadSession, number: int, length: int, chunks: AsyncIterator[bytes]
    ) -> None:
        """Stream one part into MinIO while hashing and inspecting it, then record it."""
        upload_id = session.id
        if number == 1:
            progress: _Progress | None = None
        else:
            kept = self.progress.get(upload_id)
            progress = kept.copy() if kept is not None and kept.next_part == number else None
        part_digest = PartChecksum()
        media_type = session.media_type
        state: dict[str, Any] = {"progress": progress, "media_type": media_type, "size": 0}

        async def body() -> AsyncIterator[bytes]:
            head = bytearray()
            async for chunk in _blocks(chunks):
                state["size"] += len(chunk)
                if state["size"] > length:
                    raise PartWrongSize(number, length)
                if number == 1 and state["media_type"] is None:
                    head += chunk
                    if len(head) < min(HEAD_BYTES, length):
                        continue
                    chunk, head = bytes(head), bytearray()
                    state["media_type"], state["progress"] = self._first_part(session, chunk)
                self._feed(state["progress"], part_digest, chunk)
                yield chunk
            if head:  # a part shorter than the head: the whole file
                state["media_type"], state["progress"] = self._first_part(session, bytes(head))
                self._feed(state["progress"], part_digest, bytes(head))
                yield bytes(head)
            if state["size"] != length:
                raise PartWrongSize(number, length)

        etag = await self.multipart.put_part(
            session.object_key, session.storage_upload_id, number, body(), length
        )
        async with self.db.unit_of_work() as uow:
            uploads = self.repo(uow)
            part = await uploads.part(upload_id, number, lock=True)
            row = await uploads.upload(upload_id, lock=True)
            assert part is not None
            assert row is not None
            part.etag, part.checksum, part.received_at = etag, part_digest.hexdigest(), utcnow()
            if number == 1:
                row.media_type = state["media_type"]
            row.updated_at = utcnow()
            row.expires_at = row.updated_at + self.ttl  # abandoned: counted from the last part
            await uow.commit()
        if state["progress"] is not None:
            state["progress"].next_part = number + 1
            self.progress.put(upload_id, state["progress"])
        else:
            self.progress.drop(upload_id)

    def _first_part(self, session: UploadSession, head: bytes) -> tuple[str, _Progress]:
        """Sniff the type from the file's first bytes and refuse it as a one-shot upload would
        (a type records does not take, a declared size over that type's limit)."""
        media_type = sniff(head, session.file_name)
        limit = max_bytes_for(media_type, self.records.limits)
        if session.size_bytes > limit:
            raise too_large(limit)
        inspector = ContentInspector(media_type, max_bytes=limit)
        return media_type, _Progress(1, hashlib.sha256(), inspector)

    @staticmethod
    def _feed(progress: _Progress | None, part_digest: Any, chunk: bytes) -> None:
        part_digest.update(chunk)
        if progress is not None:
            progress.inspector.feed(chunk)
            progress.digest.update(chunk)

    # ----------------------------------------------------------------------- completing

    async def complete(self, owner: str, case_id: UUID, upload_id: UUID) -> StoreResult:
        """Assemble the parts into one document, inspected like a one-shot upload; the upload's
        document again if it was completed already."""
        async with self.db.unit_of_work() as uow:
            session = await self._owned(uow, owner, case_id, upload_id, lock=True)
            if session.state == "completed":
                assert session.result_document_id is not None
                doc = await self.records.repo(uow).document(session.result_document_id)
                assert doc is not None
                return StoreResult(doc, created=False)
            if session.state == "completing":
                raise UploadCompleting()
            view = await self._view(uow, session)
            if session.state != "open":
                raise UploadClosed(session)
            total = parts_total(session)
            missing = [n for n in range(1, total + 1) if n not in set(view.received)]
            if missing:
                raise UploadIncomplete(missing)
            status = await self.records.case_status(uow, case_id)
            etags = await self.repo(uow).etags(upload_id)
            if status not in CLOSED:
                session.state = "completing"
                session.updated_at = utcnow()
            await uow.commit()
        if status in CLOSED:
            await self._close(session, "refused", "case_closed")
            raise CaseClosed(status)
        try:
            await self.multipart.complete(session.object_key, session.storage_upload_id, etags)
        except BaseException:
            await self._set_state(upload_id, "open")
            raise
        try:
            progress = self.progress.get(upload_id)
            if progress is not None and progress.next_part == total + 1:
                digest, inspector = progress.digest, progress.inspector
            else:
                digest, inspector = await self._inspect_assembled(session)
            inspector.finish()
            referral = None
            if session.referral_id is not None:
                async with self.db.unit_of_work() as uow:
                    referral = await self.records.referral(uow, session.referral_id)
            result = await self.records.record_document(
                case_id,
                session.document_id,
                DocumentKind(session.kind),
                str(session.media_type),
                session.size_bytes,
                digest.hexdigest(),
                session.object_key,
                session.file_name,
                session.translation_of,
                session.uploaded_by,
                referral,
            )
        except UploadRefused as refused:
            await self.records.store.remove(session.object_key)
            await self.records.rejected(case_id, session.document_id, refused)
            await self._close(session, "refused", str(refused.reason), abort=False)
            raise
        except BaseException:
            await self.records.store.remove(session.object_key)
            await self._close(session, "refused", "not_stored", abort=False)
            raise
        finally:
            self.progress.drop(upload_id)
        async with self.db.unit_of_work() as uow:
            uploads = self.repo(uow)
            row = await uploads.upload(upload_id, lock=True)
            assert row is not None
            row.state, row.result_document_id, row.updated_at = (
                "completed",
                result.document.id,
                utcnow(),
            )
            await uploads.drop_parts([upload_id])
            await uow.commit()
        return result

    async def _inspect_assembled(self, session: UploadSession) -> tuple[Any, ContentInspector]:
        """The SHA-256 and inspection of the assembled object, read once (the parts were
        received by another process)."""
        media_type = str(session.media_type)
        inspector = ContentInspector(
            media_type, max_bytes=max_bytes_for(media_type, self.records.limits)
        )
        digest = hashlib.sha256()

        def read() -> None:
            for chunk in self.records.store.open_stream(session.object_key):
                inspector.feed(chunk)
                digest.update(chunk)

        await asyncio.to_thread(read)
        return digest, inspector

    # ---------------------------------------------------------------- ending otherwise

    async def cancel(self, owner: str, case_id: UUID, upload_id: UUID) -> None:
        """Drop an open upload and its parts (a completed one stays: its document is deleted
        as a document)."""
        async with self.db.unit_of_work() as uow:
            session = await self._owned(uow, owner, case_id, upload_id, lock=False)
            await self._view(uow, session)
            if session.state != "open":
                raise UploadClosed(session)
        await self._close(session, "cancelled", None)

    async def _refuse(self, session: UploadSession, refused: UploadRefused) -> None:
        await self.records.rejected(session.case_id, session.document_id, refused)
        await self._close(session, "refused", str(refused.reason))

    async def _close(
        self, session: UploadSession, state: str, reason: str | None, *, abort: bool = True
    ) -> None:
        if abort:
            await self.multipart.abort(session.object_key, session.storage_upload_id)
        self.progress.drop(session.id)
        async with self.db.unit_of_work() as uow:
            uploads = self.repo(uow)
            row = await uploads.upload(session.id, lock=True)
            assert row is not None
            row.state, row.refusal, row.updated_at = state, reason, utcnow()
            await uploads.drop_parts([session.id])
            await uow.commit()

    async def _set_state(self, upload_id: UUID, state: str) -> None:
        async with self.db.unit_of_work() as uow:
            row = await self.repo(uow).upload(upload_id, lock=True)
            assert row is not None
            row.state, row.updated_at = state, utcnow()
            await uow.commit()

    async def expire_uploads(self, now: datetime | None = None, limit: int = 100) -> int:
        """Abort the uploads nobody continued before their expiry (their parts are dropped from
        MinIO); how many. Replicas may run this at once: each takes other rows."""
        now = now or utcnow()
        async with self.db.unit_of_work() as uow:
            uploads = self.repo(uow)
            expired = await uploads.expired(now, limit)
            for session in expired:
                await self.multipart.abort(session.object_key, session.storage_upload_id)
                session.state, session.updated_at = "expired", now
                self.progress.drop(session.id)
            if expired:
                await uploads.drop_parts([s.id for s in expired])
            await uow.commit()
        return len(expired)


BLOCK_BYTES = 1024 * 1024


async def _blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The request's small network chunks (~64 KiB) as blocks of `BLOCK_BYTES`: hashing,
    inspecting and sending pay their per-call cost once a block (bench/resumable.py)."""
    block = bytearray()
    async for chunk in chunks:
        block += chunk
        if len(block) >= BLOCK_BYTES:
            yield bytes(block)
            block = bytearray()
    if block:
        yield bytes(block)


async def expire_uploads_forever(uploads: ResumableUploads, interval_seconds: float) -> None:
    """Run `expire_uploads` every `interval_seconds` (in records' consumer process)."""
    import logging

    log = logging.getLogger(__name__)
    while True:
        try:
            count = await uploads.expire_uploads()
            if count:
                log.info("expired %d abandoned uploads", count)
        except Exception:  # a failed sweep is retried at the next tick
            log.exception("the sweep of abandoned uploads failed")
        await asyncio.sleep(interval_seconds)
