"""Records' use cases against a fake unit of work and an in-memory repository: what a case's
and a referral's events change, who may delete and download what, and how an upload is refused
or recorded. No database, no object store; the integration tests run the same rules on real
ones (tests/integration/records)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from referrals_common.auth.api_keys import hash_secret
from referrals_common.contracts import CaseStatus, DocumentKind
from referrals_common.contracts.envelope import CloudEvent, EventData
from referrals_records.inspection import CaseQuotaExceeded, SizeLimits, UploadRefused
from referrals_records.links import DownloadGrant
from referrals_records.models import (
    AccessAudit,
    CaseState,
    CenterReferral,
    Document,
    FollowUpQuestion,
    UploadKey,
    UploadSession,
    utcnow,
)
from referrals_records.repository import UploadState
from referrals_records.resumable import ResumableUploads, UploadGone, UploadNotFound
from referrals_records.service import (
    BadTranslation,
    CaseClosed,
    DocumentNotFound,
    LinkRevoked,
    NotADraft,
    Records,
    on_credential_issued,
    on_credential_revoked,
)
from referrals_records.storage import StoredObject
from referrals_records.uploads import Upload
from tests.unit.fakes import FakeUnitOfWork, SessionUsed

pytestmark = pytest.mark.unit

CASE = uuid.UUID("00000000-0000-4000-8000-00000000000c")
CHARITE, NIO = "charite-berlin", "nio-warsaw"
MB = 1024 * 1024
LIMITS = SizeLimits(dicom=20 * MB, pdf=5 * MB, image=5 * MB, docx=5 * MB, text=MB)


@dataclass
class FakeRecordsRepository:
    """`RecordsRepository` in memory: the rows a use case reads and adds, and what it asked."""

    documents_by_id: dict[UUID, Document] = field(default_factory=dict)
    cases: dict[UUID, CaseState] = field(default_factory=dict)
    referrals: dict[UUID, CenterReferral] = field(default_factory=dict)
    questions: dict[UUID, FollowUpQuestion] = field(default_factory=dict)
    added: list[Any] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    locked_cases: list[UUID] = field(default_factory=list)
    """The cases whose uploads' recording was serialised (`UploadStatements.recording`)."""
    events: list[CloudEvent[EventData]] = field(default_factory=list)
    """The events written with the documents (`add_unless_twin`), in order."""

    def add(self, row: Any) -> None:
        self.added.append(row)
        if isinstance(row, Document):
            self.documents_by_id[row.id] = row
        elif isinstance(row, CaseState):
            self.cases[row.case_id] = row
        elif isinstance(row, CenterReferral):
            self.referrals[row.referral_id] = row
        elif isinstance(row, FollowUpQuestion):
            self.questions[row.question_id] = row

    async def case_state(self, case_id: UUID, *, lock: bool = False) -> CaseState | None:
        return self.cases.get(case_id)

    async def case_status(self, case_id: UUID) -> str:
        row = self.cases.get(case_id)
        return row.status if row else CaseStatus.DRAFT

    async def set_case_status(self, case_id: UUID, status: str) -> None:
        row = self.cases.get(case_id)
        if row is None:
            self.add(CaseState(case_id=case_id, status=status))
        elif row.status != CaseStatus.WITHDRAWN:
            row.status = status

    async def document(self, document_id: UUID, *, lock: bool = False) -> Document | None:
        return self.documents_by_id.get(document_id)

    def _live(self, case_id: UUID) -> list[Document]:
        return [
            d for d in self.documents_by_id.values() if d.case_id == case_id and not d.deleted_at
        ]

    async def documents(self, case_id: UUID, *, for_center: str | None = None) -> list[Document]:
        return self._live(case_id)

    async def share_opinions(self, case_id: UUID, document_ids: list[UUID]) -> None:
        shared = set(document_ids)
        for doc in self.documents_by_id.values():
            if doc.case_id != case_id or doc.center_code is None:
                continue
            if doc.id in shared and doc.shared_at is None:
                doc.shared_at = utcnow()
            elif doc.id not in shared:
                doc.shared_at = None

    async def live_twin(self, case_id: UUID, sha256: str) -> Document | None:
        return next((d for d in self._live(case_id) if d.sha256 == sha256), None)

    async def live_bytes(self, case_id: UUID) -> int:
        return sum(d.size_bytes for d in self._live(case_id))

    async def upload_state(self, case_id: UUID, translation_of: UUID | None) -> UploadState:
        original = self.documents_by_id.get(translation_of) if translation_of else None
        return UploadState(
            status=await self.case_status(case_id),
            live_bytes=await self.live_bytes(case_id),
            original_live=original is not None
            and original.case_id == case_id
            and not original.deleted_at,
        )

    async def add_unless_twin(
        self, doc: Document, *, quota: int | None, stored: CloudEvent[EventData]
    ) -> tuple[int, UUID | None]:
        twin = await self.live_twin(doc.case_id, doc.sha256)
        used = await self.live_bytes(doc.case_id)
        if twin is None and (quota is None or used + doc.size_bytes <= quota):
            self.add(doc)
            self.add(
                AccessAudit(
                    at=doc.created_at,
                    actor=doc.uploaded_by,
                    action="upload",
                    case_id=doc.case_id,
                    document_id=doc.id,
                    outcome="ok",
                )
            )
            self.events.append(stored)
        return used, twin.id if twin else None

    async def referral(self, referral_id: UUID, *, lock: bool = False) -> CenterReferral | None:
        return self.referrals.get(referral_id)

    async def add_referral(self, referral_id: UUID, case_id: UUID, center_code: str) -> None:
        await self._known_referral(referral_id, case_id, center_code)

    async def _known_referral(
        self, referral_id: UUID, case_id: UUID, center_code: str
    ) -> CenterReferral:
        """The referral's row, made (born closed after its case's withdrawal) if not known."""
        referral = self.referrals.get(referral_id)
        if referral is None:
            referral = CenterReferral(
                referral_id=referral_id, case_id=case_id, center_code=center_code
            )
            if await self.case_status(case_id) == CaseStatus.WITHDRAWN:
                referral.closed_at, referral.closed_reason = utcnow(), "withdrawn"
            self.add(referral)
        return referral

    async def accept_referral(self, referral_id: UUID, case_id: UUID, center_code: str) -> None:
        referral = await self._known_referral(referral_id, case_id, center_code)
        referral.accepted_at = referral.accepted_at or utcnow()

    async def close_referral(
        self, referral_id: UUID, case_id: UUID, center_code: str, reason: str
    ) -> None:
        referral = await self._known_referral(referral_id, case_id, center_code)
        if referral.closed_at is None:
            referral.closed_at, referral.closed_reason = utcnow(), reason

    async def case_withdrawn(self, case_id: UUID) -> None:
        await self.set_case_status(case_id, CaseStatus.WITHDRAWN)
        for referral in self.referrals.values():
            if referral.case_id == case_id and referral.closed_at is None:
                referral.closed_at, referral.closed_reason = utcnow(), "withdrawn"

    async def question(self, question_id: UUID) -> FollowUpQuestion | None:
        return self.questions.get(question_id)

    async def add_question(
        self, question_id: UUID, referral_id: UUID, case_id: UUID, asked_at: datetime
    ) -> None:
        if question_id not in self.questions:
            self.add(
                FollowUpQuestion(
                    question_id=question_id,
                    referral_id=referral_id,
                    case_id=case_id,
                    asked_at=asked_at,
                )
            )

    async def answer_question(self, question_id: UUID) -> None:
        question = self.questions.get(question_id)
        if question is not None and question.answered_at is None:
            question.answered_at = utcnow()

    async def add_key(
        self, *, key_id: str, center_code: str, secret_hash: str, issued_at: datetime
    ) -> None:
        self.keys.setdefault(
            key_id, {"center_code": center_code, "secret_hash": secret_hash, "revoked_at": None}
        )

    async def revoke_key(self, *, key_id: str, center_code: str, revoked_at: datetime) -> None:
        key = self.keys.setdefault(
            key_id, {"center_code": center_code, "secret_hash": None, "revoked_at": None}
        )
        key["revoked_at"] = key["revoked_at"] or revoked_at


@dataclass
class FakeStore:
    """The object store: what was put, removed and opened."""

    objects: dict[str, bytes] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """Set: a one-request put waits for it (to see what happens meanwhile)."""
    fail: Exception | None = None
    """Set: a one-request put fails with it."""
    puts: list[str] = field(default_factory=list)
    """The keys of the one-request puts begun, as each begins."""

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, media_type: str, inspect: Any
    ) -> StoredObject:
        data = bytearray()
        async for chunk in chunks:
            inspect(chunk)
            data += chunk
        self.objects[key] = bytes(data)
        return StoredObject(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def put_object(
        self, key: str, data: list[bytes], *, media_type: str, sha256: str
    ) -> None:
        self.puts.append(key)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        whole = b"".join(data)
        # As MinIO does with a signed payload: bytes that do not have the digest are refused.
        assert hashlib.sha256(whole).hexdigest() == sha256, "the put is signed with its digest"
        self.objects[key] = whole

    async def remove(self, key: str) -> None:
        self.removed.append(key)
        self.objects.pop(key, None)

    def open_stream(self, key: str) -> Iterator[bytes]:
        return iter([self.objects[key]])


class FakeDatabase:
    """Hands out the units of work a use case opens itself, and an upload's own statements
    (`UploadStatements`, on `repo`), each with a unit of work of its own in `opened`: it is
    committed when their `recording` commits."""

    def __init__(self) -> None:
        self.opened: list[FakeUnitOfWork] = []

    def unit_of_work(self) -> FakeUnitOfWork:
        self.opened.append(FakeUnitOfWork())
        return self.opened[-1]

    @asynccontextmanager
    async def upload_statements(
        self, repo: FakeRecordsRepository
    ) -> AsyncIterator[FakeUploadStatements]:
        yield FakeUploadStatements(repo, self.unit_of_work())


@dataclass
class FakeUploadStatements:
    """`UploadStatements` on the in-memory repository; `uow` stands for its connection."""

    repo: FakeRecordsRepository
    uow: FakeUnitOfWork

    async def upload_state(self, case_id: UUID, translation_of: UUID | None) -> UploadState:
        return await self.repo.upload_state(case_id, translation_of)

    @asynccontextmanager
    async def recording(self, lock_case: UUID | None) -> AsyncIterator[None]:
        if lock_case is not None:
            self.repo.locked_cases.append(lock_case)
        await asyncio.sleep(0)  # the BEGIN's round trip: other tasks run meanwhile
        try:
            yield
        except BaseException:
            self.uow.rolled_back = True
            raise
        self.uow.committed = True

    async def add_unless_twin(
        self, doc: Document, *, quota: int | None, stored: CloudEvent[EventData]
    ) -> tuple[int, UUID | None]:
        return await self.repo.add_unless_twin(doc, quota=quota, stored=stored)


@pytest.fixture
def repo() -> FakeRecordsRepository:
    return FakeRecordsRepository()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def records(repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase) -> Records:
    return Records(
        db=db,
        store=store,
        limits=LIMITS,
        case_quota_bytes=MB,
        repository=lambda session: repo,
        upload_statements=lambda db: db.upload_statements(repo),
    )


def document(
    case_id: UUID = CASE,
    *,
    center: str | None = None,
    referral_id: UUID | None = None,
    size: int = 1000,
    content: bytes = b"",
) -> Document:
    doc_id = uuid.uuid4()
    return Document(
        id=doc_id,
        case_id=case_id,
        kind=DocumentKind.OPINION if center else DocumentKind.PATHOLOGY_REPORT,
        media_type="application/pdf",
        size_bytes=size,
        sha256=hashlib.sha256(content or doc_id.bytes).hexdigest(),
        object_key=f"cases/{case_id}/documents/{doc_id}",
        file_name="Ivanenko biopsy.pdf",
        uploaded_by="case-token:clinic",
        center_code=center,
        referral_id=referral_id,
        created_at=utcnow(),
    )


def grant(doc: Document, referral_id: UUID | None = None) -> DownloadGrant:
    return DownloadGrant(
        document_id=doc.id,
        case_id=doc.case_id,
        actor="center:charite-berlin" if referral_id else "case-token:clinic",
        referral_id=referral_id,
        download_name="pathology-report-1.pdf",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


def pdf(size: int = 2000) -> bytes:
    body = b"%PDF-1.7\n" + b"0" * size
    return body + b"\nstartxref\n0\n%%EOF\n"


def upload(content: bytes, name: str = "scan.pdf") -> Upload:
    async def chunks() -> AsyncIterator[bytes]:
        yield content

    return Upload(fields={}, file_name=name, chunks=chunks(), declared_bytes=len(content))


# ------------------------------------------------------------------- cases and referrals


async def test_an_offer_then_an_acceptance_then_a_decline_open_and_close_the_centers_access(
    records: Records, repo: FakeRecordsRepository
) -> None:
    uow, referral_id = FakeUnitOfWork(), uuid.uuid4()

    await records.on_referral_offered(uow, referral_id, CASE, CHARITE)
    offered = repo.referrals[referral_id]
    assert (offered.center_code, offered.accepted_at, offered.closed_at) == (CHARITE, None, None)

    await records.on_referral_accepted(uow, referral_id, CASE, CHARITE)
    accepted_at = offered.accepted_at
    assert accepted_at is not None

    await records.on_referral_closed(uow, referral_id, CASE, CHARITE, "declined")
    await records.on_referral_closed(uow, referral_id, CASE, CHARITE, "expired")
    assert offered.closed_reason == "declined"  # the first close stands
    assert offered.accepted_at == accepted_at
    assert uow.committed is False  # the consumer's inbox transaction commits, not the use case
    assert uow.outbox.events == []


async def test_a_referral_first_heard_of_after_the_withdrawal_is_born_closed(
    records: Records, repo: FakeRecordsRepository
) -> None:
    uow, referral_id = FakeUnitOfWork(), uuid.uuid4()
    await records.on_case_status(uow, CASE, CaseStatus.WITHDRAWN)

    await records.on_referral_offered(uow, referral_id, CASE, NIO)

    assert repo.referrals[referral_id].closed_reason == "withdrawn"
    assert uow.committed is False


async def test_withdrawal_is_final_whatever_status_comes_late(
    records: Records, repo: FakeRecordsRepository
) -> None:
    uow = FakeUnitOfWork()
    await records.on_case_status(uow, CASE, CaseStatus.SUBMITTED)
    await records.on_case_status(uow, CASE, CaseStatus.WITHDRAWN)

    await records.on_case_status(uow, CASE, CaseStatus.SUBMITTED)

    assert repo.cases[CASE].status == CaseStatus.WITHDRAWN
    assert uow.committed is False


async def test_a_further_opinion_shares_exactly_the_opinions_the_patient_chose(
    records: Records, repo: FakeRecordsRepository
) -> None:
    kept, dropped, chosen = (document(center=CHARITE) for _ in range(3))
    patients = document()
    dropped.shared_at = utcnow()  # shared in an earlier round
    for doc in (kept, dropped, chosen, patients):
        repo.add(doc)
    uow = FakeUnitOfWork()

    await records.on_opinions_shared(uow, CASE, [chosen.id])

    assert chosen.shared_at is not None
    assert dropped.shared_at is None
    assert kept.shared_at is None
    assert patients.shared_at is None  # a patient's document is no opinion to share
    assert uow.committed is False


async def test_a_follow_up_question_is_open_until_answered_and_only_on_its_referral(
    records: Records, repo: FakeRecordsRepository
) -> None:
    uow, question, referral_id = FakeUnitOfWork(), uuid.uuid4(), uuid.uuid4()
    await records.on_follow_up_asked(uow, question, referral_id, CASE, utcnow())

    assert await records.open_question(uow, referral_id, question) is not None
    assert await records.open_question(uow, uuid.uuid4(), question) is None

    await records.on_follow_up_answered(uow, question)
    assert await records.open_question(uow, referral_id, question) is None
    assert uow.committed is False


async def test_a_key_partners_issued_is_kept_as_its_peppered_digest_and_its_revocation_stands(
    repo: FakeRecordsRepository,
) -> None:
    uow, pepper, digest = (
        FakeUnitOfWork(),
        b"a pepper of 16 bytes or more",
        hashlib.sha256(b"secret").hexdigest(),
    )
    first, later = utcnow(), utcnow() + timedelta(hours=1)

    await on_credential_issued(
        uow,
        pepper,
        key_id="k1",
        center_code=CHARITE,
        key_sha256=digest,
        issued_at=first,
        repository=lambda session: repo,
    )
    for revoked_at in (first, later):
        await on_credential_revoked(
            uow,
            key_id="k1",
            center_code=CHARITE,
            revoked_at=revoked_at,
            repository=lambda session: repo,
        )

    assert repo.keys["k1"]["secret_hash"] == hash_secret(digest, pepper)
    assert repo.keys["k1"]["secret_hash"] != digest
    assert repo.keys["k1"]["revoked_at"] == first
    assert uow.committed is False


# ------------------------------------------------------------------ deleting, downloading


async def test_a_draft_cases_document_is_marked_deleted_and_its_object_stays_until_commit(
    records: Records, repo: FakeRecordsRepository, store: FakeStore
) -> None:
    doc = document()
    repo.add(doc)
    uow = FakeUnitOfWork()

    deleted = await records.delete_document(uow, CASE, doc.id)

    assert deleted is doc
    assert doc.deleted_at is not None
    assert uow.committed is False
    assert store.removed == []  # the caller removes it once the deletion is committed
    await records.discard(deleted)
    assert store.removed == [doc.object_key]


async def test_a_submitted_cases_document_stays_and_another_cases_is_not_found(
    records: Records, repo: FakeRecordsRepository
) -> None:
    doc, other = document(), document(uuid.uuid4())
    repo.add(doc)
    repo.add(other)
    uow = FakeUnitOfWork()

    with pytest.raises(DocumentNotFound):
        await records.delete_document(uow, CASE, other.id)
    await records.on_case_status(uow, CASE, CaseStatus.SUBMITTED)
    with pytest.raises(NotADraft):
        await records.delete_document(uow, CASE, doc.id)

    assert doc.deleted_at is None
    assert other.deleted_at is None
    assert uow.committed is False


async def test_a_centers_link_stops_opening_when_its_referral_ends_or_the_document_is_not_its_own(
    records: Records, repo: FakeRecordsRepository, store: FakeStore
) -> None:
    referral_id = uuid.uuid4()
    repo.add(CenterReferral(referral_id=referral_id, case_id=CASE, center_code=CHARITE))
    patients, others_opinion = document(), document(center=NIO)
    for doc in (patients, others_opinion):
        repo.add(doc)
        store.objects[doc.object_key] = b"%PDF-1.7 bytes"
    uow = FakeUnitOfWork()

    opened, chunks = await records.open_download(uow, grant(patients, referral_id))
    assert opened is patients
    assert b"".join(chunks) == b"%PDF-1.7 bytes"

    with pytest.raises(LinkRevoked, match="not this center's"):
        await records.open_download(uow, grant(others_opinion, referral_id))

    await records.on_referral_closed(uow, referral_id, CASE, CHARITE, "declined")
    with pytest.raises(LinkRevoked, match="referral that granted it has ended"):
        await records.open_download(uow, grant(patients, referral_id))

    patients.deleted_at = utcnow()
    with pytest.raises(LinkRevoked, match="deleted"):
        await records.open_download(uow, grant(patients))
    assert uow.committed is False


# ------------------------------------------------------------------------------ uploading


async def test_an_upload_to_a_closed_case_is_refused_before_a_byte_is_stored(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    repo.add(CaseState(case_id=CASE, status=CaseStatus.WITHDRAWN))

    with pytest.raises(CaseClosed):
        await records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", None
        )

    assert store.objects == {}
    assert [uow.committed for uow in db.opened] == [False]


async def test_the_cases_checks_are_read_while_the_file_arrives_and_still_answered_first(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    # The checks' round trip is off the upload's path: the file is read meanwhile (with the
    # checks read first, this upload would wait forever for its own body).
    body_read = asyncio.Event()
    answer = repo.upload_state

    async def upload_state_once_the_body_is_read(
        case_id: UUID, translation_of: UUID | None
    ) -> UploadState:
        await body_read.wait()
        return await answer(case_id, translation_of)

    repo.upload_state = upload_state_once_the_body_is_read  # type: ignore[method-assign]

    def arriving(content: bytes, name: str) -> Upload:
        async def chunks() -> AsyncIterator[bytes]:
            yield content
            body_read.set()

        return Upload(fields={}, file_name=name, chunks=chunks(), declared_bytes=len(content))

    result = await asyncio.wait_for(
        records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, arriving(pdf(), "scan.pdf"), "t", None
        ),
        timeout=5,
    )
    assert result.created

    # What the case refuses is still the answer, before what the file is: a closed case's
    # upload of a file records would refuse anyway publishes no `document.rejected`.
    body_read.clear()
    repo.add(CaseState(case_id=CASE, status=CaseStatus.WITHDRAWN))
    outboxes_before = len(db.opened)
    with pytest.raises(CaseClosed):
        await asyncio.wait_for(
            records.store_document(
                CASE, DocumentKind.PATHOLOGY_REPORT, arriving(b"MZ\x90\x00", "x.exe"), "t", None
            ),
            timeout=5,
        )
    assert all(not uow.committed for uow in db.opened[outboxes_before:])


async def test_a_translation_must_name_a_document_of_the_case(
    records: Records, repo: FakeRecordsRepository, store: FakeStore
) -> None:
    elsewhere = document(uuid.uuid4())
    repo.add(elsewhere)

    with pytest.raises(BadTranslation):
        await records.store_document(
            CASE, DocumentKind.TRANSLATION, upload(pdf()), "case-token:clinic", elsewhere.id
        )
    with pytest.raises(BadTranslation):
        await records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", elsewhere.id
        )
    assert store.objects == {}


async def test_a_stored_upload_commits_its_document_audit_row_and_event_in_its_own_unit_of_work(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    content = pdf()

    result = await records.store_document(
        CASE, DocumentKind.PATHOLOGY_REPORT, upload(content), "case-token:clinic", None
    )

    assert result.created is True
    doc = result.document
    assert store.objects == {doc.object_key: content}
    assert doc.sha256 == hashlib.sha256(content).hexdigest()
    assert [type(row).__name__ for row in repo.added] == ["Document", "AccessAudit"]
    assert repo.locked_cases == [CASE]  # the quota is checked again under the case's lock
    # The checks and the quota left, then the record: only the last commits (none over a stream)
    assert [uow.committed for uow in db.opened] == [False, True]
    # `document.stored` written with the document (in the committed unit of work's statement)
    assert [event.type for event in repo.events] == ["referrals.document.stored.v1"]
    assert repo.events[0].data.document_id == doc.id


async def test_a_small_file_is_recorded_while_it_is_put_and_committed_only_once_stored(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    store.gate = asyncio.Event()
    task = asyncio.create_task(
        records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", None
        )
    )
    for _ in range(50):  # until the record waits for the object
        await asyncio.sleep(0.01)
        if repo.added:
            break

    assert [type(row).__name__ for row in repo.added] == ["Document", "AccessAudit"]
    assert store.objects == {}, "the put is still under way"
    assert [uow.committed for uow in db.opened] == [False, False], "no commit before the object"
    store.gate.set()
    result = await task
    assert store.objects == {result.document.object_key: pdf()}
    assert [uow.committed for uow in db.opened] == [False, True]


async def test_a_small_files_put_goes_out_before_its_document_is_made(
    records: Records, store: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the recording's BEGIN is on its way the put writes its request, so MinIO stores
    # the bytes while records makes the document and its event, not after.
    from referrals_records import service

    happened: list[str] = []
    real = service.document_value

    def made(**fields: Any) -> Document:
        happened.append(f"document, {len(store.puts)} put begun")
        return real(**fields)

    monkeypatch.setattr(service, "document_value", made)
    result = await records.store_document(
        CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", None
    )
    assert happened == ["document, 1 put begun"]
    assert store.objects == {result.document.object_key: pdf()}


async def test_an_uploads_document_is_made_as_a_value_with_no_orm_instance_state(
    records: Records, repo: FakeRecordsRepository
) -> None:
    # Its statement inserts it and the answer reads it: the table model's constructor (every
    # field set through SQLAlchemy's instrumentation on a new instance state) cost 57 µs of CPU
    # against 16 for a row no session holds.
    from sqlalchemy import inspect

    content = pdf()
    result = await records.store_document(
        CASE, DocumentKind.PATHOLOGY_REPORT, upload(content), "case-token:clinic", None
    )

    doc = result.document
    assert inspect(doc, raiseerr=False) is None
    assert (doc.case_id, doc.kind, doc.size_bytes, doc.file_name) == (
        CASE,
        DocumentKind.PATHOLOGY_REPORT,
        len(content),
        "scan.pdf",
    )
    assert doc.created_at.tzinfo is not None and doc.deleted_at is None and doc.shared_at is None
    assert repo.added[0] is doc


async def test_a_failed_put_commits_no_row_and_leaves_no_object(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    store.fail = ConnectionError("object storage away")

    with pytest.raises(ConnectionError):
        await records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", None
        )

    assert [uow.committed for uow in db.opened] == [False, False]
    assert store.objects == {}
    assert len(store.removed) == 1


async def test_a_small_file_refused_at_its_end_is_never_stored(
    records: Records, store: FakeStore, db: FakeDatabase
) -> None:
    truncated = pdf()[:-20]  # no `%%EOF`: cut short

    with pytest.raises(UploadRefused):
        await records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(truncated), "case-token:clinic", None
        )

    assert store.objects == {}
    assert store.removed == [], "nothing was sent, so nothing had to be removed"
    assert [uow.outbox.types() for uow in db.opened if uow.committed] == [
        ["referrals.document.rejected.v1"]
    ]


async def test_the_same_bytes_again_are_the_same_document_and_the_second_object_is_removed(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    content = pdf()
    first = await records.store_document(
        CASE, DocumentKind.PATHOLOGY_REPORT, upload(content), "case-token:clinic", None
    )

    again = await records.store_document(
        CASE, DocumentKind.PATHOLOGY_REPORT, upload(content, "again.pdf"), "case-token:clinic", None
    )

    assert again.created is False
    assert again.document is first.document
    assert list(store.objects) == [first.document.object_key]
    assert len(store.removed) == 1
    assert [event.type for event in repo.events] == ["referrals.document.stored.v1"]


async def test_an_upload_past_the_quota_is_refused_and_published_as_rejected(
    records: Records, repo: FakeRecordsRepository, store: FakeStore, db: FakeDatabase
) -> None:
    repo.add(document(size=MB - 500))  # the quota (1 MB) is nearly full

    with pytest.raises(CaseQuotaExceeded):
        await records.store_document(
            CASE, DocumentKind.PATHOLOGY_REPORT, upload(pdf()), "case-token:clinic", None
        )

    assert store.objects == {}
    rejected = [uow for uow in db.opened if uow.outbox.events]
    assert [uow.outbox.types() for uow in rejected] == [["referrals.document.rejected.v1"]]
    assert rejected[0].committed is True


async def test_use_cases_go_through_their_repository_never_the_session(
    store: FakeStore,
) -> None:
    records = Records(db=FakeDatabase(), store=store, limits=LIMITS)

    with pytest.raises(SessionUsed):
        await records.documents(FakeUnitOfWork(), CASE)


# ---------------------------------------------------------------------- resumable uploads


@dataclass
class FakeUploadRepository:
    """`UploadRepository` in memory: upload sessions and the parts received."""

    uploads: dict[UUID, UploadSession] = field(default_factory=dict)
    parts: dict[UUID, list[tuple[int, int]]] = field(default_factory=dict)
    claims: dict[tuple[str, str], UploadKey] = field(default_factory=dict)

    def add(self, row: Any) -> None:
        if isinstance(row, UploadSession):
            self.uploads[row.id] = row

    async def claim(self, key: UploadKey) -> UploadKey | None:
        first = self.claims.get((key.owner, key.key))
        if first is None:
            self.claims[(key.owner, key.key)] = key
        return first

    async def upload(self, upload_id: UUID, *, lock: bool = False) -> UploadSession | None:
        return self.uploads.get(upload_id)

    async def received(self, upload_id: UUID) -> list[tuple[int, int]]:
        return self.parts.get(upload_id, [])


@dataclass
class FakeMultipart:
    created: list[str] = field(default_factory=list)

    async def create(self, key: str) -> str:
        self.created.append(key)
        return f"storage-{len(self.created)}"


@pytest.fixture
def uploads_repo() -> FakeUploadRepository:
    return FakeUploadRepository()


@pytest.fixture
def multipart() -> FakeMultipart:
    return FakeMultipart()


@pytest.fixture
def uploads(
    records: Records, uploads_repo: FakeUploadRepository, multipart: FakeMultipart
) -> ResumableUploads:
    return ResumableUploads(
        records=records,
        multipart=multipart,
        part_size=5 * MB,
        ttl=timedelta(hours=24),
        repository=lambda session: uploads_repo,
    )


def opened(owner: str = f"case:{CASE}", **changes: Any) -> UploadSession:
    now = utcnow()
    session = UploadSession(
        case_id=CASE,
        owner=owner,
        uploaded_by="case-token:clinic",
        kind=DocumentKind.IMAGING_STUDY,
        file_name="study.dcm",
        size_bytes=12 * MB,
        part_size=5 * MB,
        object_key=f"cases/{CASE}/documents/{uuid.uuid4()}",
        storage_upload_id="storage-1",
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=24),
    )
    for name, value in changes.items():
        setattr(session, name, value)
    return session


async def test_an_upload_is_read_in_the_callers_unit_of_work_by_its_owner_only(
    uploads: ResumableUploads, uploads_repo: FakeUploadRepository
) -> None:
    session = opened()
    uploads_repo.add(session)
    uploads_repo.parts[session.id] = [(1, 5 * MB)]
    uow = FakeUnitOfWork()

    view = await uploads.view(uow, f"case:{CASE}", CASE, session.id)

    assert (view.received, view.received_bytes, view.next_part, view.parts_total) == (
        [1],
        5 * MB,
        2,
        3,
    )
    with pytest.raises(UploadNotFound):
        await uploads.view(uow, f"center:{CHARITE}:{uuid.uuid4()}", CASE, session.id)
    assert uow.committed is False


async def test_an_upload_past_its_expiry_or_cancelled_is_gone(
    uploads: ResumableUploads, uploads_repo: FakeUploadRepository
) -> None:
    late = opened(expires_at=utcnow() - timedelta(seconds=1))
    cancelled = opened(state="cancelled")
    for session in (late, cancelled):
        uploads_repo.add(session)

    for session in (late, cancelled):
        with pytest.raises(UploadGone):
            await uploads.view(FakeUnitOfWork(), f"case:{CASE}", CASE, session.id)


async def test_an_upload_to_a_closed_case_opens_no_multipart_upload(
    uploads: ResumableUploads,
    repo: FakeRecordsRepository,
    multipart: FakeMultipart,
    db: FakeDatabase,
) -> None:
    repo.add(CaseState(case_id=CASE, status=CaseStatus.OPINION_DELIVERED))

    with pytest.raises(CaseClosed):
        await uploads.create(
            case_id=CASE,
            owner=f"case:{CASE}",
            uploaded_by="case-token:clinic",
            kind=DocumentKind.IMAGING_STUDY,
            file_name="study.dcm",
            size_bytes=12 * MB,
            translation_of=None,
            idempotency_key="key-0001",
            request_hash="hash",
        )

    assert multipart.created == []
    assert [uow.committed for uow in db.opened] == [False]
