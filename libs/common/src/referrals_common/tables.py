"""What every service's tables (its `models.py`) are made of: the clock of their default times,
the timestamp and JSON columns, and the columns two or more services' tables share.

- `utcnow`: the time a row's default timestamps take (aware, UTC).
- `timestamp()`, `json_column()`: a fresh `timestamp with time zone` (not null unless asked) or
  `JSON` column for a field's `sa_column` (a column belongs to one table: call it per field).
- `ApiKeyColumns`: an API key as a service that issues keys keeps it (intake's front ends',
  partners' centers and operators): only the hash of its secret, checked by
  `referrals_common.edge.principals.verify_api_key`.
- `AccessAuditColumns`: the access audit's row (`access_audit` in intake, records and partners),
  as `referrals_common.edge.principals.AccessLog` writes it; a service adds the identifier it
  audits besides the case (records a document, partners a referral).
- `RetriedDeliveryColumns`: a delivery that a process sends and retries under the platform's one
  retry policy (`referrals_common.webhooks.policy`): partners' webhook deliveries to centers,
  notifications' deliveries to patients and front ends.

Each service keeps its own `MetaData`, its tables and their names: these only spare each
`models.py` writing the same column definitions again. The schema is the migrations' (alembic):
nothing here changes a table's DDL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

TIMESTAMP = DateTime(timezone=True)
"""`timestamp with time zone`: every time a table keeps."""


def utcnow() -> datetime:
    """Now, aware, in UTC: the default of a row's timestamps."""
    return datetime.now(UTC)


def timestamp(nullable: bool = False) -> Column[datetime]:
    """A new `timestamp with time zone` column, not null unless `nullable`."""
    return Column(TIMESTAMP, nullable=nullable)


def json_column(nullable: bool = False) -> Column[Any]:
    """A new `JSON` column, not null unless `nullable`."""
    return Column(JSON, nullable=nullable)


class ApiKeyColumns(SQLModel):
    """An API key (`<prefix>_<key_id>_<secret>`, `referrals_common.auth.api_keys`): its id,
    whose it is, the hash of its secret with the service's pepper, when it was issued and, once
    revoked, when."""

    key_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=120)
    secret_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class AccessAuditColumns(SQLModel):
    """One row of a service's access audit: who (`actor`: `client:<key id>`, `center:<code>`,
    `case-token:<client>`, `ops:<key id>`) did what (`action`, a route or a use case) on which
    case, with which outcome (ok, denied, ...)."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP, nullable=False)
    actor: str = Field(max_length=120)
    action: str = Field(max_length=120)
    case_id: UUID | None = Field(default=None, index=True)
    outcome: str = Field(max_length=16)


def access_audit_values(actor: str, action: str) -> dict[str, Any]:
    """`AccessAuditColumns`' who, what and when for a row written now: `actor` and `action` cut
    to their columns' 120 characters. One place for every way a row is written (an ORM row, a
    statement's parameters)."""
    return {"at": utcnow(), "actor": actor[:120], "action": action[:120]}


class RetriedDeliveryColumns(SQLModel):
    """A message a process sends and retries until it is settled: `status` pending until then,
    the `attempts` made so far, when the next one is due, and what went wrong the last time."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP, nullable=False)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP, nullable=False)
