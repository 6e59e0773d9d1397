"""Where sessions, one-time codes and the cases this front end opened are kept.

Each store is a small interface with two implementations: PostgreSQL for real runs, memory for
the unit tests (no I/O). What is personal or secret arrives here already sealed or hashed
(`sessions.Sessions`, `signin`): a store only keeps bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from referrals_common.db import Database
from referrals_web.models import known_cases, login_codes, sessions, utcnow


@dataclass(frozen=True)
class StoredSession:
    id: str
    """SHA-256 (hex) of the cookie's value."""
    created_at: datetime
    expires_at: datetime
    locale: str
    case_id: UUID | None
    case_token_sealed: bytes | None
    data_sealed: bytes | None


@dataclass(frozen=True)
class LoginCode:
    case_id: UUID
    code_hash: str
    expires_at: datetime
    attempts: int


class SessionStore(Protocol):
    async def load(self, session_id: str) -> StoredSession | None: ...
    async def save(self, row: StoredSession) -> None: ...
    async def delete(self, session_id: str) -> None: ...
    async def purge_expired(self, now: datetime) -> int: ...


class LoginCodeStore(Protocol):
    async def put(self, code: LoginCode) -> None:
        """Keep this code for its case, replacing any earlier one (and its attempts)."""
        ...

    async def get(self, case_id: UUID) -> LoginCode | None: ...

    async def count_attempt(self, case_id: UUID) -> int:
        """One more attempt at the case's code; the number of attempts so far."""
        ...

    async def delete(self, case_id: UUID) -> None: ...


class CaseDirectory(Protocol):
    async def remember(self, case_id: UUID, reference: str) -> None: ...
    async def find(self, reference: str) -> list[UUID]: ...


# ------------------------------------------------------------------------------ memory


class MemorySessionStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredSession] = {}

    async def load(self, session_id: str) -> StoredSession | None:
        return self.rows.get(session_id)

    async def save(self, row: StoredSession) -> None:
        self.rows[row.id] = row

    async def delete(self, session_id: str) -> None:
        self.rows.pop(session_id, None)

    async def purge_expired(self, now: datetime) -> int:
        gone = [k for k, row in self.rows.items() if row.expires_at <= now]
        for key in gone:
            del self.rows[key]
        return len(gone)


class MemoryLoginCodeStore:
    def __init__(self) -> None:
        self.rows: dict[UUID, LoginCode] = {}

    async def put(self, code: LoginCode) -> None:
        self.rows[code.case_id] = code

    async def get(self, case_id: UUID) -> LoginCode | None:
        return self.rows.get(case_id)

    async def count_attempt(self, case_id: UUID) -> int:
        row = self.rows.get(case_id)
        if row is None:
            return 0
        self.rows[case_id] = replace(row, attempts=row.attempts + 1)
        return row.attempts + 1

    async def delete(self, case_id: UUID) -> None:
        self.rows.pop(case_id, None)


class MemoryCaseDirectory:
    def __init__(self) -> None:
        self.rows: dict[UUID, str] = {}

    async def remember(self, case_id: UUID, reference: str) -> None:
        self.rows[case_id] = reference

    async def find(self, reference: str) -> list[UUID]:
        return [case_id for case_id, ref in self.rows.items() if ref == reference]


# -------------------------------------------------------------------------- PostgreSQL


class PostgresSessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, session_id: str) -> StoredSession | None:
        async with self.db.unit_of_work() as uow:
            row = (
                await uow.session.execute(select(sessions).where(sessions.c.id == session_id))
            ).first()
        return StoredSession(**row._mapping) if row is not None else None

    async def save(self, row: StoredSession) -> None:
        values = {
            "id": row.id,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "locale": row.locale,
            "case_id": row.case_id,
            "case_token_sealed": row.case_token_sealed,
            "data_sealed": row.data_sealed,
        }
        statement = insert(sessions).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[sessions.c.id],
            set_={k: statement.excluded[k] for k in values if k not in ("id", "created_at")},
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def delete(self, session_id: str) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(delete(sessions).where(sessions.c.id == session_id))
            await uow.commit()

    async def purge_expired(self, now: datetime) -> int:
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(delete(sessions).where(sessions.c.expires_at <= now))
            await uow.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class PostgresLoginCodeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, code: LoginCode) -> None:
        values = {
            "case_id": code.case_id,
            "code_hash": code.code_hash,
            "expires_at": code.expires_at,
            "attempts": code.attempts,
        }
        statement = insert(login_codes).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[login_codes.c.case_id],
            set_={k: statement.excluded[k] for k in values if k != "case_id"},
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def get(self, case_id: UUID) -> LoginCode | None:
        async with self.db.unit_of_work() as uow:
            row = (
                await uow.session.execute(
                    select(login_codes).where(login_codes.c.case_id == case_id)
                )
            ).first()
        return LoginCode(**row._mapping) if row is not None else None

    async def count_attempt(self, case_id: UUID) -> int:
        async with self.db.unit_of_work() as uow:
            attempts = (
                await uow.session.execute(
                    update(login_codes)
                    .where(login_codes.c.case_id == case_id)
                    .values(attempts=login_codes.c.attempts + 1)
                    .returning(login_codes.c.attempts)
                )
            ).scalar()
            await uow.commit()
        return int(attempts or 0)

    async def delete(self, case_id: UUID) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(delete(login_codes).where(login_codes.c.case_id == case_id))
            await uow.commit()


class PostgresCaseDirectory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def remember(self, case_id: UUID, reference: str) -> None:
        statement = (
            insert(known_cases)
            .values(case_id=case_id, reference=reference, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def find(self, reference: str) -> list[UUID]:
        async with self.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(known_cases.c.case_id).where(known_cases.c.reference == reference)
            )
        return [row[0] for row in rows]
