"""Records' queries, on the session of a unit of work its caller opened: documents, the case
states and referrals records learned from events, follow-up questions, centers' keys, and the
rows of resumable uploads. Nothing here commits: the caller's unit of work does, with the outbox
rows of the same change.

A use case gets a repository from its unit of work (`Records.repository`) or its session
(`ResumableUploads.repository`) through a factory, so a unit test hands it an in-memory one
instead; the consumer's projection writes go through asyncpg itself in the inbox's transaction
(`RecordsRepository`). An upload's
own statements (its checks, its recording) are `UploadStatements`', run through asyncpg itself
outside any unit of work (`Records.upload_statements`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import (
    BigInteger,
    Text,
    Uuid,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from referrals_common.api.idempotency import claim_or_replay
from referrals_common.contracts import CaseStatus
from referrals_common.contracts.envelope import CloudEvent
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.outbox import OUTBOX_COLUMN_NAMES, outbox_parameters
from referrals_common.messaging.schema import outbox_table
from referrals_common.native_sql import (
    Autocommit,
    fetch_all_native,
    fetch_native,
    native_connection,
    native_transaction,
    run_native,
    unit_of_work_native,
)
from referrals_common.tables import access_audit_values
from referrals_records.models import (
    AccessAudit,
    CaseState,
    CenterCredential,
    CenterReferral,
    Document,
    FollowUpQuestion,
    UploadKey,
    UploadPart,
    UploadSession,
    document_value,
    utcnow,
)

QUOTA_LOCK_NAMESPACE = 0x0D0C
"""First key of the two-key advisory lock serialising one case's uploads as they are recorded
(the outbox relays use 0x0B0C)."""


@dataclass(frozen=True)
class UploadState:
    """What an upload to a case is checked against before its bytes flow (`upload_state`)."""

    status: str
    """The case's status as intake's events told it; a draft until one did."""
    live_bytes: int
    """The bytes the case's live documents take."""
    original_live: bool
    """Whether the document a translation names is a live document of the case."""


def _lock_key(case_id: UUID) -> int:
    return int.from_bytes(case_id.bytes[:4], "big", signed=True)


def _documents() -> Any:
    return Document.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it


@cache
def _upload_state() -> Any:
    """`upload_state`'s statement, built once (a statement object reused keeps its compiled
    form and cache key: building one per call cost more than running it)."""
    case_id = bindparam("case_id", type_=Uuid())
    status = (
        select(col(CaseState.status)).where(col(CaseState.case_id) == case_id).scalar_subquery()
    )
    used = (
        select(func.coalesce(func.sum(col(Document.size_bytes)), 0))
        .where(col(Document.case_id) == case_id, col(Document.deleted_at).is_(None))
        .scalar_subquery()
    )
    original = (
        select(col(Document.id))
        .where(
            col(Document.id) == bindparam("translation_of", type_=Uuid()),
            col(Document.case_id) == case_id,
            col(Document.deleted_at).is_(None),
        )
        .scalar_subquery()
    )
    return select(status, used, original)


@cache
def _set_case_status() -> Any:
    """`set_case_status`'s statement, built once: the case's row inserted, or its status
    replaced unless the case was withdrawn."""
    states = CaseState.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    statement = insert(states).values(
        case_id=bindparam("case_id", type_=Uuid()),
        status=bindparam("status"),
        updated_at=bindparam("at", type_=states.c.updated_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[states.c.case_id],
        set_={"status": statement.excluded.status, "updated_at": statement.excluded.updated_at},
        where=states.c.status != CaseStatus.WITHDRAWN.value,
    )


@cache
def _referral_heard(heard: str) -> Any:
    """The statement, built once per `heard`, that writes what partners' event said of a
    referral: its row made unless records knows it, closed at birth (`withdrawn`) if its case
    was withdrawn; `offered`: a known row stays as it is; `accepted`: accepted now unless it
    was before; `closed`: closed now with the event's `reason` unless it was before (a new
    row of a withdrawn case keeps `withdrawn`)."""
    referrals = CenterReferral.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    at = bindparam("at", type_=referrals.c.offered_at.type)
    case_id = bindparam("case_id", type_=Uuid())
    withdrawn = (
        select(literal(1))
        .where(
            col(CaseState.case_id) == case_id,
            col(CaseState.status) == CaseStatus.WITHDRAWN.value,
        )
        .exists()
    )
    born_withdrawn = case((withdrawn, literal("withdrawn")), else_=None)
    reason = bindparam("reason", type_=referrals.c.closed_reason.type)
    row = {
        "referral_id": bindparam("referral_id", type_=Uuid()),
        "case_id": case_id,
        "center_code": bindparam("center_code"),
        "offered_at": at,
        "closed_at": case((withdrawn, at), else_=None),
        "closed_reason": born_withdrawn,
    }
    if heard == "accepted":
        row["accepted_at"] = at
    elif heard == "closed":
        row["closed_at"] = at
        row["closed_reason"] = func.coalesce(born_withdrawn, reason)
    statement = insert(referrals).from_select(list(row), select(*row.values()))
    if heard == "offered":
        return statement.on_conflict_do_nothing(index_elements=[referrals.c.referral_id])
    if heard == "accepted":
        return statement.on_conflict_do_update(
            index_elements=[referrals.c.referral_id],
            set_={"accepted_at": statement.excluded.accepted_at},
            where=referrals.c.accepted_at.is_(None),
        )
    assert heard == "closed"
    return statement.on_conflict_do_update(
        index_elements=[referrals.c.referral_id],
        set_={"closed_at": statement.excluded.closed_at, "closed_reason": reason},
        where=referrals.c.closed_at.is_(None),
    )


@cache
def _case_withdrawn() -> Any:
    """`case_withdrawn`'s statement, built once: the case's status `withdrawn` (final, as
    `_set_case_status` writes a status) and its open referrals closed (`withdrawn`), in a
    data-modifying CTE. Its parameters are named for no column of the tables it writes
    (SQLAlchemy's session would take such a name for a value to set)."""
    referrals = CenterReferral.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    states = CaseState.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    case_id = bindparam("withdrawn_case", type_=Uuid())
    at = bindparam("at", type_=referrals.c.closed_at.type)
    withdrawn = CaseStatus.WITHDRAWN.value
    closed = (
        update(referrals)
        .where(referrals.c.case_id == case_id, referrals.c.closed_at.is_(None))
        .values(closed_at=at, closed_reason=withdrawn)
        .cte("closed")
    )
    statement = insert(states).values(case_id=case_id, status=withdrawn, updated_at=at)
    return statement.on_conflict_do_update(
        index_elements=[states.c.case_id],
        set_={"status": statement.excluded.status, "updated_at": statement.excluded.updated_at},
        where=states.c.status != withdrawn,
    ).add_cte(closed)


@cache
def _add_question() -> Any:
    """`add_question`'s statement, built once: the question's row unless records knows it."""
    questions = FollowUpQuestion.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    return (
        insert(questions)
        .values(
            question_id=bindparam("question_id", type_=Uuid()),
            referral_id=bindparam("referral_id", type_=Uuid()),
            case_id=bindparam("case_id", type_=Uuid()),
            asked_at=bindparam("asked_at", type_=questions.c.asked_at.type),
        )
        .on_conflict_do_nothing(index_elements=[questions.c.question_id])
    )


@cache
def _answer_question() -> Any:
    """`answer_question`'s statement, built once: answered now unless it was before."""
    questions = FollowUpQuestion.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    return (
        update(questions)
        .where(
            # Not a column's name: SQLAlchemy keeps those for an UPDATE's SET.
            questions.c.question_id == bindparam("question", type_=Uuid()),
            questions.c.answered_at.is_(None),
        )
        .values(answered_at=bindparam("at", type_=questions.c.answered_at.type))
    )


@cache
def _share_opinions() -> Any:
    """`share_opinions`' statement, built once: of the case's documents centers uploaded,
    those named shared (since now, or since they were), the others not; only the rows whose
    sharing changes are written."""
    documents = _documents()
    named = documents.c.id == func.any(bindparam("shared", type_=ARRAY(Uuid())))
    return (
        update(documents)
        .where(
            # Not a column's name: SQLAlchemy keeps those for an UPDATE's SET.
            documents.c.case_id == bindparam("of_case", type_=Uuid()),
            documents.c.center_code.is_not(None),
            named.is_distinct_from(documents.c.shared_at.is_not(None)),
        )
        .values(
            shared_at=case((named, bindparam("at", type_=documents.c.shared_at.type)), else_=None)
        )
    )


@cache
def _add_unless_twin(bounded: bool) -> Any:
    """`add_unless_twin`'s statement (`bounded`: with a quota), built once: the case's live
    bytes and twin (`live`), the document inserted from it only if it may be (`added`), the
    audit row and the outbox row of its event only if it was (`audited`, `published`)."""
    documents, audits = _documents(), AccessAudit.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    params = {c.name: bindparam(c.name, type_=c.type) for c in documents.columns}
    case_id = params["case_id"]
    live = (
        select(
            func.coalesce(func.sum(col(Document.size_bytes)), 0).label("used"),
            select(col(Document.id))
            .where(
                col(Document.case_id) == case_id,
                col(Document.sha256) == params["sha256"],
                col(Document.deleted_at).is_(None),
            )
            .limit(1)
            .scalar_subquery()
            .label("twin"),
        )
        .where(col(Document.case_id) == case_id, col(Document.deleted_at).is_(None))
        .cte("live")
    )
    fits: ColumnElement[bool] = live.c.twin.is_(None)
    if bounded:
        size = cast(params["size_bytes"], BigInteger())
        fits = fits & (live.c.used + size <= bindparam("quota", type_=BigInteger()))
    added = (
        insert(documents)
        .from_select(list(params), select(*params.values()).where(fits))
        .returning(documents.c.id)
        .cte("added")
    )
    audit = {
        "at": params["created_at"],
        "actor": params["uploaded_by"],
        "action": literal("upload"),
        "case_id": case_id,
        "outcome": literal("ok"),
        "document_id": added.c.id,
    }
    audited = insert(audits).from_select(list(audit), select(*audit.values())).cte("audited")
    # The event's row from the parameters `outbox_parameters` gives (as `outbox_insert` reads
    # them), selected only from the added document: no document, no event.
    event = {
        name: cast(bindparam(f"out0_{name}", type_=Text()), JSONB)
        if name in ("payload", "headers")
        else bindparam(f"out0_{name}", type_=outbox_table.c[name].type)
        for name in OUTBOX_COLUMN_NAMES
    }
    published = (
        insert(outbox_table)
        .from_select(list(event), select(*event.values()).select_from(added))
        .cte("published")
    )
    return select(live.c.used, live.c.twin).add_cte(added).add_cte(audited).add_cte(published)


@cache
def _documents_listed() -> Any:
    """`documents_listed`'s statement, built once: the case's live documents, oldest first,
    read by the statement that writes the listing's audit row (a data-modifying CTE)."""
    audits = AccessAudit.__table__  # type: ignore[attr-defined]  # SQLModel's table classes have it
    case_id = bindparam("case_id", type_=Uuid())
    audited = (
        insert(audits)
        .values(
            at=bindparam("at", type_=audits.c.at.type),
            actor=bindparam("actor"),
            action=bindparam("action"),
            case_id=case_id,
            outcome="ok",
        )
        .cte("audited")
    )
    return (
        select(*_documents().columns)
        .where(col(Document.case_id) == case_id, col(Document.deleted_at).is_(None))
        .order_by(col(Document.created_at), col(Document.id))
        .add_cte(audited)
    )


async def documents_listed(engine: AsyncEngine, case_id: UUID, actor: str) -> list[Document]:
    """The case's live documents, oldest first (as `RecordsRepository.documents`), read by the
    statement that writes `actor`'s audit row of the listing (`list`): one statement through
    asyncpg on a pool connection, committed by itself. Was a unit of work's BEGIN, SELECT and
    ROLLBACK through the ORM, then the audit's BEGIN, INSERT and COMMIT."""
    values = {"case_id": case_id, **access_audit_values(actor, "list")}
    async with native_connection(engine) as executor:
        rows = await fetch_all_native(executor, _documents_listed(), values)
    return [document_value(**dict(row.items())) for row in rows]


class RecordsRepository:
    """Documents, case states, referrals, follow-up questions and centers' keys, on a unit of
    work's session (made when a query first asks for it).

    The consumer's projection writes (a case's status or withdrawal, a referral offered,
    accepted or closed, a follow-up question asked or answered, the opinions a further opinion
    shares: every event but a center's key) are one statement each, nothing read back: when
    the unit of work runs its own transaction on asyncpg (the inbox opened it,
    `UnitOfWork.native`) and this repository has the engine's dialect (`on`), they go through
    asyncpg itself in that transaction, and the event makes no ORM session at all."""

    def __init__(self, uow: UnitOfWork, dialect: Dialect | None = None) -> None:
        self._uow = uow
        self._dialect = dialect
        """The engine's dialect, to run the projection writes through asyncpg itself (None:
        everything through the session)."""

    @classmethod
    def on(cls, db: Database) -> Callable[[UnitOfWork], RecordsRepository]:
        """The repositories of `db`'s units of work, the projection writes through asyncpg when
        the unit of work has its own transaction there (see the class doc)."""
        return partial(cls, dialect=db.engine.dialect)

    @property
    def session(self) -> AsyncSession:
        return self._uow.session

    @property
    def _native(self) -> Autocommit | None:
        """The unit of work's own transaction on asyncpg, if it opened one and this repository
        may use it (a unit test's stand-in has none)."""
        return unit_of_work_native(self._uow, self._dialect)

    async def _write(self, statement: Any, values: dict[str, Any]) -> None:
        """One write that reads back nothing: through asyncpg in the unit of work's own
        transaction if it has one, else on the session's connection after what the session
        holds (what the transaction changed before, in order). The consumer's handlers write
        nothing through the session before such a write, so the asyncpg path has nothing to
        flush."""
        native = self._native
        if native is not None:
            await run_native(native, statement, values, returns=False)
            return
        await self.session.flush()
        connection = await self.session.connection()
        await connection.execute(statement, values)

    def add(self, row: Any) -> None:
        """A new row (a document, its audit row, a case state, a referral, a question)."""
        self.session.add(row)

    # ------------------------------------------------------------------------ cases

    async def case_state(self, case_id: UUID, *, lock: bool = False) -> CaseState | None:
        return await self.session.get(CaseState, case_id, with_for_update=lock)

    async def case_status(self, case_id: UUID) -> str:
        """The case's status as intake's events told it; a draft until one did."""
        row = await self.case_state(case_id)
        return row.status if row else CaseStatus.DRAFT

    async def set_case_status(self, case_id: UUID, status: str) -> None:
        """The case's status is now `status`, unless the case was withdrawn (withdrawal is
        final, whatever comes late). One statement: no row read, locked and written back."""
        await self._write(
            _set_case_status(), {"case_id": case_id, "status": status, "at": utcnow()}
        )

    # -------------------------------------------------------------------- documents

    async def document(self, document_id: UUID, *, lock: bool = False) -> Document | None:
        return await self.session.get(Document, document_id, with_for_update=lock)

    async def documents(self, case_id: UUID, *, for_center: str | None = None) -> list[Document]:
        """The case's live documents, oldest first. `for_center`: only what that center may
        see, the patient's documents and its own uploads (never another center's opinion,
        unless the patient shared it for a further opinion)."""
        query = select(Document).where(
            col(Document.case_id) == case_id, col(Document.deleted_at).is_(None)
        )
        if for_center is not None:
            query = query.where(
                or_(
                    col(Document.center_code).is_(None),
                    col(Document.center_code) == for_center,
                    col(Document.shared_at).is_not(None),
                )
            )
        rows = await self.session.execute(
            query.order_by(col(Document.created_at), col(Document.id))
        )
        return list(rows.scalars())

    async def share_opinions(self, case_id: UUID, document_ids: list[UUID]) -> None:
        """Of the case's documents centers uploaded (their opinions), exactly `document_ids`
        are shared (since now, or since an earlier round shared them), the others no longer.
        One statement, nothing read back."""
        await self._write(
            _share_opinions(), {"of_case": case_id, "shared": document_ids, "at": utcnow()}
        )

    async def live_twin(self, case_id: UUID, sha256: str) -> Document | None:
        """The case's live document with these bytes, if there is one."""
        rows = await self.session.execute(
            select(Document).where(
                col(Document.case_id) == case_id,
                col(Document.sha256) == sha256,
                col(Document.deleted_at).is_(None),
            )
        )
        return rows.scalars().first()

    async def live_bytes(self, case_id: UUID) -> int:
        """The bytes the case's live (not deleted) documents take."""
        total = await self.session.scalar(
            select(func.coalesce(func.sum(col(Document.size_bytes)), 0)).where(
                col(Document.case_id) == case_id, col(Document.deleted_at).is_(None)
            )
        )
        return int(total or 0)

    # -------------------------------------------------------------------- referrals

    async def referral(self, referral_id: UUID, *, lock: bool = False) -> CenterReferral | None:
        return await self.session.get(CenterReferral, referral_id, with_for_update=lock)

    async def add_referral(self, referral_id: UUID, case_id: UUID, center_code: str) -> None:
        """The referral's row, unless records knows it already; a referral first heard of
        after its case's withdrawal is born closed. One statement, nothing read back."""
        await self._referral_heard("offered", referral_id, case_id, center_code)

    async def accept_referral(self, referral_id: UUID, case_id: UUID, center_code: str) -> None:
        """The referral accepted now, unless it was before; made if records had not heard of
        it (born closed after its case's withdrawal, as `add_referral` makes it). One
        statement, nothing read back: no row read, locked and written back."""
        await self._referral_heard("accepted", referral_id, case_id, center_code)

    async def close_referral(
        self, referral_id: UUID, case_id: UUID, center_code: str, reason: str
    ) -> None:
        """The referral closed now for `reason`, unless it was before (the first close
        stands); made closed if records had not heard of it (`withdrawn` after its case's
        withdrawal). One statement, nothing read back."""
        await self._referral_heard("closed", referral_id, case_id, center_code, reason=reason)

    async def _referral_heard(
        self, heard: str, referral_id: UUID, case_id: UUID, center_code: str, **more: str
    ) -> None:
        # A referral its transaction wrote before (its acceptance or its end heard of before
        # its offer) is written first, so it is known here (`_write`).
        values = {
            "referral_id": referral_id,
            "case_id": case_id,
            "center_code": center_code,
            "at": utcnow(),
            **more,
        }
        await self._write(_referral_heard(heard), values)

    async def case_withdrawn(self, case_id: UUID) -> None:
        """The case's status `withdrawn` (final: `set_case_status`) and every open referral of
        the case closed (`withdrawn`): one statement, nothing read back."""
        await self._write(_case_withdrawn(), {"withdrawn_case": case_id, "at": utcnow()})

    async def question(self, question_id: UUID) -> FollowUpQuestion | None:
        return await self.session.get(FollowUpQuestion, question_id)

    async def add_question(
        self, question_id: UUID, referral_id: UUID, case_id: UUID, asked_at: datetime
    ) -> None:
        """The follow-up question's row, unless records knows it. One statement."""
        values = {
            "question_id": question_id,
            "referral_id": referral_id,
            "case_id": case_id,
            "asked_at": asked_at,
        }
        await self._write(_add_question(), values)

    async def answer_question(self, question_id: UUID) -> None:
        """The question answered now, unless it was before (or records never heard of it).
        One statement."""
        await self._write(_answer_question(), {"question": question_id, "at": utcnow()})

    # ---------------------------------------------------------------- centers' keys

    async def add_key(
        self, *, key_id: str, center_code: str, secret_hash: str, issued_at: datetime
    ) -> None:
        """A key partners issued, unless records knows its id already (a revoked key is never
        revived, a key id never moved to another center)."""
        await self.session.execute(
            insert(CenterCredential)
            .values(
                key_id=key_id,
                center_code=center_code,
                secret_hash=secret_hash,
                issued_at=issued_at,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["key_id"])
        )

    async def revoke_key(self, *, key_id: str, center_code: str, revoked_at: datetime) -> None:
        """The key revoked (its first revocation stands); a key known only by its revocation is
        kept as revoked."""
        statement = insert(CenterCredential).values(
            key_id=key_id, center_code=center_code, revoked_at=revoked_at, updated_at=utcnow()
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["key_id"],
                set_={
                    "revoked_at": func.coalesce(CenterCredential.revoked_at, revoked_at),
                    "updated_at": utcnow(),
                },
            )
        )


class TwinRecorded(Exception):
    """Another upload recorded the same bytes in the case at the same moment (the unique index
    on a live document's case and bytes): nothing was recorded, the twin is the answer."""


class UploadStatements:
    """An upload's own statements (`Records.store_document`, `record_document`), run through
    asyncpg itself on one pool connection outside any unit of work (`native_sql`): they are
    every upload's, and SQLAlchemy's session, connection and result objects cost more CPU than
    their round trips. Each statement commits by itself but within `recording`."""

    def __init__(self, executor: Autocommit) -> None:
        self.executor = executor

    async def upload_state(self, case_id: UUID, translation_of: UUID | None) -> UploadState:
        """What an upload to the case is checked against before its bytes flow: the case's
        status, the bytes its live documents take, and whether the document a translation
        names is a live document of the case. One statement, one snapshot, no transaction."""
        row = await fetch_native(
            self.executor, _upload_state(), {"case_id": case_id, "translation_of": translation_of}
        )
        assert row is not None  # scalar subqueries: always one row
        return UploadState(
            status=row[0] or CaseStatus.DRAFT,
            live_bytes=int(row[1] or 0),
            original_live=row[2] is not None,
        )

    def recording(self, lock_case: UUID | None) -> AbstractAsyncContextManager[None]:
        """A transaction for the `with` block, committed when it ends, rolled back when it
        raises. `lock_case`: the recording of that case's uploads is serialised (an advisory
        lock held until the transaction ends, taken in the BEGIN's round trip), so two uploads
        to it cannot both pass its quota."""
        lock = ""
        if lock_case is not None:
            # Two integers of our own: no input reaches the statement's text.
            lock = (
                f"select pg_advisory_xact_lock({QUOTA_LOCK_NAMESPACE:d}, {_lock_key(lock_case):d})"
            )
        return native_transaction(self.executor, first=lock)

    async def add_unless_twin(
        self, doc: Document, *, quota: int | None, stored: CloudEvent[Any]
    ) -> tuple[int, UUID | None]:
        """Insert `doc`, the audit row of its upload (by `doc.uploaded_by`) and `stored` (its
        event) into the outbox, unless the case has a live document with the same bytes, or
        (with a `quota`) the case's live documents and `doc` would take more than `quota`
        bytes: (the bytes the case's live documents took before, the twin's id). One
        statement, one round trip, one snapshot: run it in a `recording` that locks the case
        (then no other upload to the case records meanwhile); a concurrent twin of an
        unlocked upload (a center's) makes it raise `TwinRecorded`."""
        values = {column.name: getattr(doc, column.key) for column in _documents().columns}
        values["quota"] = quota
        values |= outbox_parameters([stored])
        try:
            row = await fetch_native(self.executor, _add_unless_twin(quota is not None), values)
        except asyncpg.UniqueViolationError:
            raise TwinRecorded from None
        assert row is not None  # the live bytes' aggregate: always one row
        return int(row[0] or 0), row[1]


@asynccontextmanager
async def upload_statements(engine: AsyncEngine) -> AsyncIterator[UploadStatements]:
    """`UploadStatements` on a connection of `engine`'s pool for the `with` block."""
    async with native_connection(engine) as executor:
        yield UploadStatements(executor)


class UploadRepository:
    """The rows of resumable uploads: sessions, their parts, their idempotency keys."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: UploadSession | UploadPart) -> None:
        self.session.add(row)

    async def claim(self, key: UploadKey) -> UploadKey | None:
        """Claim an idempotency key for a new upload; the earlier claim when the same request
        came with it before (a different request with it: 422)."""
        return await claim_or_replay(self.session, key)

    async def upload(self, upload_id: UUID, *, lock: bool = False) -> UploadSession | None:
        return await self.session.get(UploadSession, upload_id, with_for_update=lock)

    async def part(self, upload_id: UUID, number: int, *, lock: bool = False) -> UploadPart | None:
        return await self.session.get(UploadPart, (upload_id, number), with_for_update=lock)

    async def received(self, upload_id: UUID) -> list[tuple[int, int]]:
        """(number, bytes) of the parts stored, in order."""
        rows = await self.session.execute(
            select(col(UploadPart.number), col(UploadPart.size_bytes))
            .where(col(UploadPart.upload_id) == upload_id, col(UploadPart.etag).is_not(None))
            .order_by(col(UploadPart.number))
        )
        return [(n, s) for n, s in rows.all()]

    async def received_before(self, upload_id: UUID, number: int) -> list[int]:
        """The numbers of the parts stored before part `number`, in order."""
        rows = await self.session.execute(
            select(col(UploadPart.number))
            .where(
                col(UploadPart.upload_id) == upload_id,
                col(UploadPart.number) < number,
                col(UploadPart.etag).is_not(None),
            )
            .order_by(col(UploadPart.number))
        )
        return [n for (n,) in rows.all()]

    async def etags(self, upload_id: UUID) -> list[tuple[int, str]]:
        """(number, the object store's etag) of every part, in order."""
        rows = await self.session.execute(
            select(col(UploadPart.number), col(UploadPart.etag))
            .where(col(UploadPart.upload_id) == upload_id)
            .order_by(col(UploadPart.number))
        )
        return [(n, str(e)) for n, e in rows.all()]

    async def drop_unfinished_part(self, upload_id: UUID, number: int) -> None:
        """Forget a part whose receiving failed (one received stays)."""
        await self.session.execute(
            delete(UploadPart).where(
                col(UploadPart.upload_id) == upload_id,
                col(UploadPart.number) == number,
                col(UploadPart.etag).is_(None),
            )
        )

    async def drop_parts(self, upload_ids: Sequence[UUID]) -> None:
        """Forget every part of these uploads."""
        await self.session.execute(
            delete(UploadPart).where(col(UploadPart.upload_id).in_(list(upload_ids)))
        )

    async def expired(self, now: datetime, limit: int) -> list[UploadSession]:
        """Up to `limit` open or completing uploads past their expiry, locked; rows another
        transaction holds are skipped (replicas sweep at once)."""
        rows = await self.session.execute(
            select(UploadSession)
            .where(
                col(UploadSession.state).in_(("open", "completing")),
                col(UploadSession.expires_at) <= now,
            )
            .order_by(col(UploadSession.expires_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())
