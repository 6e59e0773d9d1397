"""Where sessions, one-time codes, the cases this front end opened, and the console's staff,
centers' keys and staff actions (and the ops screen's operators and their actions) are kept.

Each store is a small interface with two implementations: PostgreSQL for real runs, memory for
the unit tests (no I/O). What is personal or secret arrives here already sealed or hashed
(`sessions.Sessions`, `signin`): a store only keeps bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, cast
from uuid import UUID

from sqlalchemy import ColumnElement, CursorResult, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from referrals_common.db import Database
from referrals_web.models import (
    center_keys,
    console_actions,
    known_cases,
    login_codes,
    ops_actions,
    sessions,
    staff,
    utcnow,
)


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
    realm: str = "patient"
    """`patient` or `staff`: a session is loaded only in its own realm."""
    staff_id: UUID | None = None


@dataclass(frozen=True)
class LoginCode:
    owner_id: UUID
    """The case (a patient's code) or the staff member (a staff code)."""
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
        """Keep this code for its owner, replacing any earlier one (and its attempts)."""
        ...

    async def get(self, owner_id: UUID) -> LoginCode | None: ...

    async def count_attempt(self, owner_id: UUID) -> int:
        """One more attempt at the owner's code; the number of attempts so far."""
        ...

    async def delete(self, owner_id: UUID) -> None: ...


class CaseDirectory(Protocol):
    async def remember(self, case_id: UUID, reference: str) -> None: ...
    async def find(self, reference: str) -> list[UUID]: ...


@dataclass(frozen=True)
class StaffMember:
    """A center's staff member, as the console knows them."""

    id: UUID
    email: str
    """In lower case: the address the sign-in code goes to."""
    name: str
    center_code: str
    """The member's center; empty for an operator."""
    created_at: datetime
    disabled_at: datetime | None = None
    role: str = "center"
    """`center` (the console's staff of `center_code`) or `ops` (the ops screen's operator)."""

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class ConsoleAction:
    """One action a staff member took in the console, and how the platform answered."""

    at: datetime
    staff_id: UUID
    center_code: str
    referral_id: UUID | None
    action: str
    """`accept`, `decline`, `request_information`, `confirm_shipment`, `upload_opinion`,
    `deliver_opinion`, `answer_follow_up`, `download`, `sign_in`."""
    outcome: str
    """`ok`, or the problem's slug (`conflict`, `validation-failed`, …)."""


@dataclass(frozen=True)
class OpsAction:
    """One thing an operator did on the ops screen, and how the platform answered."""

    at: datetime
    staff_id: UUID
    action: str
    """`sign_in`, `find_case`, `view_timeline`, `view_dead_letters`, `replay_dead_letter`."""
    target: str
    """A case id, a reference, a dead letter (`topic partition:offset`), or empty."""
    outcome: str
    """`ok`, or the problem's slug."""


class OpsAudit(Protocol):
    async def record(self, action: OpsAction) -> None: ...
    async def recent(self, limit: int) -> list[OpsAction]:
        """The newest actions first."""
        ...


class StaffDirectory(Protocol):
    async def save(self, member: StaffMember) -> None:
        """Add the member, or replace the one with the same id."""
        ...

    async def by_email(self, email: str) -> StaffMember | None: ...
    async def get(self, staff_id: UUID) -> StaffMember | None: ...
    async def all(self) -> list[StaffMember]: ...


class CenterKeyStore(Protocol):
    async def put(self, center_code: str, sealed: bytes) -> None: ...
    async def get(self, center_code: str) -> bytes | None: ...


class ConsoleAudit(Protocol):
    async def record(self, action: ConsoleAction) -> None: ...
    async def of_referral(self, referral_id: UUID) -> list[ConsoleAction]:
        """The referral's actions, oldest first."""
        ...


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
        self.rows[code.owner_id] = code

    async def get(self, owner_id: UUID) -> LoginCode | None:
        return self.rows.get(owner_id)

    async def count_attempt(self, owner_id: UUID) -> int:
        row = self.rows.get(owner_id)
        if row is None:
            return 0
        self.rows[owner_id] = replace(row, attempts=row.attempts + 1)
        return row.attempts + 1

    async def delete(self, owner_id: UUID) -> None:
        self.rows.pop(owner_id, None)


class MemoryCaseDirectory:
    def __init__(self) -> None:
        self.rows: dict[UUID, str] = {}

    async def remember(self, case_id: UUID, reference: str) -> None:
        self.rows[case_id] = reference

    async def find(self, reference: str) -> list[UUID]:
        return [case_id for case_id, ref in self.rows.items() if ref == reference]


class MemoryStaffDirectory:
    def __init__(self) -> None:
        self.rows: dict[UUID, StaffMember] = {}

    async def save(self, member: StaffMember) -> None:
        self.rows[member.id] = member

    async def by_email(self, email: str) -> StaffMember | None:
        return next((m for m in self.rows.values() if m.email == email.casefold()), None)

    async def get(self, staff_id: UUID) -> StaffMember | None:
        return self.rows.get(staff_id)

    async def all(self) -> list[StaffMember]:
        return sorted(self.rows.values(), key=lambda m: (m.role, m.center_code, m.email))


class MemoryOpsAudit:
    def __init__(self) -> None:
        self.rows: list[OpsAction] = []

    async def record(self, action: OpsAction) -> None:
        self.rows.append(action)

    async def recent(self, limit: int) -> list[OpsAction]:
        return list(reversed(self.rows))[:limit]


class MemoryCenterKeyStore:
    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}

    async def put(self, center_code: str, sealed: bytes) -> None:
        self.rows[center_code] = sealed

    async def get(self, center_code: str) -> bytes | None:
        return self.rows.get(center_code)


class MemoryConsoleAudit:
    def __init__(self) -> None:
        self.rows: list[ConsoleAction] = []

    async def record(self, action: ConsoleAction) -> None:
        self.rows.append(action)

    async def of_referral(self, referral_id: UUID) -> list[ConsoleAction]:
        return [a for a in self.rows if a.referral_id == referral_id]


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
            "realm": row.realm,
            "staff_id": row.staff_id,
        }
        statement = insert(sessions).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[sessions.c.id],
            # A row never changes realm: a cookie of one realm cannot become the other's.
            set_={
                k: statement.excluded[k] for k in values if k not in ("id", "created_at", "realm")
            },
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
            # A DELETE's result is a cursor result (it has a row count).
            result = cast(
                "CursorResult[Any]",
                await uow.session.execute(delete(sessions).where(sessions.c.expires_at <= now)),
            )
            await uow.commit()
        return int(result.rowcount or 0)


class PostgresLoginCodeStore:
    """One-time codes in `table` (patients' `login_codes`, keyed by case; staff's
    `staff_login_codes`, keyed by staff member): the first column is the owner."""

    def __init__(self, db: Database, table: Table = login_codes) -> None:
        self.db = db
        self.table = table
        self.owner = next(iter(table.primary_key.columns))

    async def put(self, code: LoginCode) -> None:
        values = {
            self.owner.name: code.owner_id,
            "code_hash": code.code_hash,
            "expires_at": code.expires_at,
            "attempts": code.attempts,
        }
        statement = insert(self.table).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[self.owner],
            set_={k: statement.excluded[k] for k in values if k != self.owner.name},
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def get(self, owner_id: UUID) -> LoginCode | None:
        async with self.db.unit_of_work() as uow:
            row = (
                await uow.session.execute(select(self.table).where(self.owner == owner_id))
            ).first()
        if row is None:
            return None
        found = row._mapping
        return LoginCode(
            owner_id=found[self.owner.name],
            code_hash=found["code_hash"],
            expires_at=found["expires_at"],
            attempts=found["attempts"],
        )

    async def count_attempt(self, owner_id: UUID) -> int:
        async with self.db.unit_of_work() as uow:
            attempts = (
                await uow.session.execute(
                    update(self.table)
                    .where(self.owner == owner_id)
                    .values(attempts=self.table.c.attempts + 1)
                    .returning(self.table.c.attempts)
                )
            ).scalar()
            await uow.commit()
        return int(attempts or 0)

    async def delete(self, owner_id: UUID) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(delete(self.table).where(self.owner == owner_id))
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


class PostgresStaffDirectory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, member: StaffMember) -> None:
        values = {
            "id": member.id,
            "email": member.email.casefold(),
            "name": member.name,
            "center_code": member.center_code,
            "created_at": member.created_at,
            "disabled_at": member.disabled_at,
            "role": member.role,
        }
        statement = insert(staff).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[staff.c.id],
            set_={k: statement.excluded[k] for k in values if k not in ("id", "created_at")},
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def _one(self, where: ColumnElement[bool]) -> StaffMember | None:
        async with self.db.unit_of_work() as uow:
            row = (await uow.session.execute(select(staff).where(where))).first()
        return StaffMember(**row._mapping) if row is not None else None

    async def by_email(self, email: str) -> StaffMember | None:
        return await self._one(staff.c.email == email.casefold())

    async def get(self, staff_id: UUID) -> StaffMember | None:
        return await self._one(staff.c.id == staff_id)

    async def all(self) -> list[StaffMember]:
        async with self.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(staff).order_by(staff.c.role, staff.c.center_code, staff.c.email)
            )
        return [StaffMember(**row._mapping) for row in rows]


class PostgresCenterKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, center_code: str, sealed: bytes) -> None:
        statement = insert(center_keys).values(
            center_code=center_code, key_sealed=sealed, updated_at=utcnow()
        )
        statement = statement.on_conflict_do_update(
            index_elements=[center_keys.c.center_code],
            set_={
                "key_sealed": statement.excluded.key_sealed,
                "updated_at": statement.excluded.updated_at,
            },
        )
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(statement)
            await uow.commit()

    async def get(self, center_code: str) -> bytes | None:
        async with self.db.unit_of_work() as uow:
            return (
                await uow.session.execute(
                    select(center_keys.c.key_sealed).where(center_keys.c.center_code == center_code)
                )
            ).scalar()


class PostgresConsoleAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, action: ConsoleAction) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                insert(console_actions).values(
                    at=action.at,
                    staff_id=action.staff_id,
                    center_code=action.center_code,
                    referral_id=action.referral_id,
                    action=action.action,
                    outcome=action.outcome,
                )
            )
            await uow.commit()

    async def of_referral(self, referral_id: UUID) -> list[ConsoleAction]:
        async with self.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(
                    console_actions.c.at,
                    console_actions.c.staff_id,
                    console_actions.c.center_code,
                    console_actions.c.referral_id,
                    console_actions.c.action,
                    console_actions.c.outcome,
                )
                .where(console_actions.c.referral_id == referral_id)
                .order_by(console_actions.c.at, console_actions.c.id)
            )
        return [ConsoleAction(**row._mapping) for row in rows]


class PostgresOpsAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, action: OpsAction) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                insert(ops_actions).values(
                    at=action.at,
                    staff_id=action.staff_id,
                    action=action.action,
                    target=action.target[:300],
                    outcome=action.outcome[:40],
                )
            )
            await uow.commit()

    async def recent(self, limit: int) -> list[OpsAction]:
        async with self.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(
                    ops_actions.c.at,
                    ops_actions.c.staff_id,
                    ops_actions.c.action,
                    ops_actions.c.target,
                    ops_actions.c.outcome,
                )
                .order_by(ops_actions.c.at.desc(), ops_actions.c.id.desc())
                .limit(limit)
            )
        return [OpsAction(**row._mapping) for row in rows]
