"""Reading and writing translation's tables inside the caller's unit of work. Nothing here
commits: the consumer's inbox transaction does.

Every statement goes through asyncpg itself, on the transaction the unit of work runs there
(`UnitOfWork.native`, which the consumer's inbox opens; a unit of work that has none yet opens
it with its first statement here). No ORM session is made: for an event whose work is three or
four short statements, SQLAlchemy's session, identity map and flush cost more CPU than the round
trips (issue 25). A case's paths are serialised by its row's lock, as before: the statement that
reads or writes the row of a case takes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol
from uuid import UUID

from referrals_translation.models import CaseLanguages, DocumentCheck, utcnow

_READ_ALREADY: Final = "SELECT document_id FROM document_checks WHERE document_id = ANY($1::uuid[])"
_IS_READ: Final = "SELECT true FROM document_checks WHERE document_id = $1"
_CASE: Final = (
    "SELECT case_id, acceptable, destination, withdrawn, updated_at FROM cases WHERE case_id = $1"
)
_LOCKED_CASE: Final = (
    "SELECT case_id, acceptable, destination, withdrawn, updated_at FROM cases WHERE case_id = $1"
    " FOR UPDATE"
)
# A new row is visible to this transaction at once and held by it: a concurrent insert of the
# same case waits for ours, then does nothing and locks the row we made.
_NEW_CASE: Final = (
    "INSERT INTO cases (case_id, withdrawn, updated_at) VALUES ($1, false, $2) "
    "ON CONFLICT (case_id) DO NOTHING"
    " RETURNING case_id, acceptable, destination, withdrawn, updated_at"
)
_ADD_CHECK: Final = (
    "INSERT INTO document_checks (document_id, case_id, kind, media_type, translation_of, "
    "outcome, main_language, "
    "languages, confidence, pages, method, unreadable_reason, unreadable_detail, seconds, "
    "verdict, checked_at, decided_at) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
)
# The case's destination, on its row made or locked by the upsert (PostgreSQL locks a
# conflicting row even when the update's condition leaves it as it is); a row is returned only
# when this set it. (The documents waiting for it are read by a statement of their own: one
# after the lock, so a document committed while this waited for the row is seen.)
_SET_DESTINATION: Final = (
    "INSERT INTO cases (case_id, acceptable, destination, withdrawn, updated_at)"
    " VALUES ($1, $2, $3, false, $4)"
    " ON CONFLICT (case_id) DO UPDATE SET acceptable = excluded.acceptable,"
    " destination = excluded.destination, updated_at = excluded.updated_at"
    " WHERE cases.acceptable IS NULL AND NOT cases.withdrawn"
    " RETURNING true"
)
_WAITING_CHECKS: Final = (
    "SELECT document_id, case_id, kind, media_type, translation_of, outcome, main_language, "
    "languages, confidence, pages, method, unreadable_reason, unreadable_detail, seconds, "
    "verdict, checked_at, decided_at FROM document_checks"
    " WHERE case_id = $1 AND verdict IS NULL ORDER BY checked_at"
)
_VERDICTS: Final = (
    "UPDATE document_checks AS d SET verdict = v.verdict, decided_at = v.decided_at"
    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(document_id, verdict,"
    " decided_at) WHERE d.document_id = v.document_id"
)
_WITHDRAW: Final = (
    "INSERT INTO cases (case_id, withdrawn, updated_at) VALUES ($1, true, $2) "
    "ON CONFLICT (case_id) DO UPDATE SET withdrawn = true, updated_at = excluded.updated_at"
)
OPENING: Final = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
"""What a unit of work without a transaction of its own on asyncpg opens it with (the default
level: it changes nothing)."""


class UnitOfWorkLike(Protocol):
    native: Any

    async def open_with(self, statement: str) -> str | None: ...


class TranslationRepository:
    """The cases translation has heard of and the readings of their documents."""

    def __init__(self, uow: UnitOfWorkLike) -> None:
        self._uow = uow

    async def _connection(self) -> Any:
        """The unit of work's transaction on asyncpg, opened now if it has none yet."""
        if self._uow.native is None and await self._uow.open_with(OPENING) is None:
            raise RuntimeError("the unit of work already runs a transaction of SQLAlchemy's")
        return self._uow.native

    async def read_already(self, document_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these documents have been read (their check is kept)."""
        connection = await self._connection()
        return {row[0] for row in await connection.fetch(_READ_ALREADY, list(document_ids))}

    async def is_read(self, document_id: UUID) -> bool:
        """Whether the document has been read (its check is kept)."""
        connection = await self._connection()
        return bool(await connection.fetchval(_IS_READ, document_id))

    async def add_check(self, check: DocumentCheck) -> None:
        """Keep a document's reading (with its verdict, when it has one already)."""
        connection = await self._connection()
        await connection.execute(
            _ADD_CHECK,
            check.document_id,
            check.case_id,
            check.kind,
            check.media_type,
            check.translation_of,
            check.outcome,
            check.main_language,
            json.dumps(check.languages),
            check.confidence,
            check.pages,
            check.method,
            check.unreadable_reason,
            check.unreadable_detail,
            check.seconds,
            check.verdict,
            check.checked_at,
            check.decided_at,
        )

    async def case(self, case_id: UUID) -> CaseLanguages | None:
        """The case's row as it is, if there is one: neither created nor locked."""
        connection = await self._connection()
        row = await connection.fetchrow(_CASE, case_id)
        return None if row is None else CaseLanguages(**row)

    async def locked_case(self, case_id: UUID) -> CaseLanguages:
        """The case's row, created on first sight, locked until the transaction ends: a case's
        readings and its destination are applied one at a time, so neither misses the other."""
        # Locked first: the row is there for most events (a case's first document made it), and
        # then this is the one round trip. A row seen missing is inserted (and so held).
        connection = await self._connection()
        row = await connection.fetchrow(_LOCKED_CASE, case_id)
        if row is None:
            row = await connection.fetchrow(_NEW_CASE, case_id, utcnow())
        if row is None:  # made meanwhile by a transaction that has committed since
            row = await connection.fetchrow(_LOCKED_CASE, case_id)
        assert row is not None
        return CaseLanguages(**row)

    async def set_destination(
        self, case_id: UUID, acceptable: list[str], destination: dict[str, Any]
    ) -> bool:
        """Keep where the case's opinion will come from (the case's row made if translation had
        not heard of it, and locked), unless it is withdrawn or has a destination already (the
        first stands): whether it was kept. One statement."""
        connection = await self._connection()
        kept = await connection.fetchval(
            _SET_DESTINATION, case_id, json.dumps(acceptable), json.dumps(destination), utcnow()
        )
        return bool(kept)

    async def waiting_checks(self, case_id: UUID) -> list[DocumentCheck]:
        """The case's documents read but without a verdict, in the order they were read."""
        connection = await self._connection()
        return [DocumentCheck(**row) for row in await connection.fetch(_WAITING_CHECKS, case_id)]

    async def record_verdicts(self, checks: Sequence[DocumentCheck]) -> None:
        """Write the verdicts given to these checks (`verdict`, `decided_at`), in one statement."""
        if not checks:
            return
        connection = await self._connection()
        await connection.execute(
            _VERDICTS,
            [check.document_id for check in checks],
            [check.verdict for check in checks],
            [check.decided_at for check in checks],
        )

    async def withdraw(self, case_id: UUID) -> None:
        """The case is withdrawn (its row made if translation had not heard of it), in one
        statement that also takes the row's lock."""
        connection = await self._connection()
        await connection.execute(_WITHDRAW, case_id, utcnow())


RepositoryFactory = Callable[[Any], TranslationRepository]
"""How a use case gets its repository from the unit of work (a test passes a fake)."""
