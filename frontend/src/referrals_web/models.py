"""The web application's own tables: server-side sessions, one-time sign-in codes, the cases it
opened (by reference), and for the center console the staff accounts, each center's partner API
key (sealed) and what each staff member did.

Nothing here is the platform's data: a session points at a case and keeps its access token
sealed (AES-256-GCM, bound to the session's row), and the answers of a form in progress
sealed the same way. A session's row id is the SHA-256 of the cookie's value, so a copy of the
table opens no session. Patients' and staff's sessions share the table but not a realm: a
session of one realm is never loaded as the other's.

A center's partner API key is sealed (AES-256-GCM with a key derived from the session secret,
bound to the center's code): the browser never sees it, and a copy of the table opens nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
)

metadata = MetaData()


def utcnow() -> datetime:
    return datetime.now(UTC)


sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("locale", String(5), nullable=False),
    Column("case_id", Uuid(), nullable=True),
    Column("case_token_sealed", LargeBinary(), nullable=True),
    Column("data_sealed", LargeBinary(), nullable=True),
    Column("realm", String(10), nullable=False, server_default="patient"),
    Column("staff_id", Uuid(), nullable=True),
)

login_codes = Table(
    "login_codes",
    metadata,
    Column("case_id", Uuid(), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0),
)

known_cases = Table(
    "known_cases",
    metadata,
    Column("case_id", Uuid(), primary_key=True),
    Column("reference", String(9), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
"""The cases opened through this front end, by the reference the patient sees (`3F0F-6C7D`):
how a patient who kept only the reference signs in again."""

staff = Table(
    "staff",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("center_code", String(63), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    Column("role", String(10), nullable=False, server_default="center"),
)
"""A center's staff member (`role` `center`): signs in to the console with a code sent to `email`
(kept in lower case) and sees only the referrals of `center_code`; or one of the platform's
operators (`role` `ops`, `center_code` empty): signs in to the ops screen (/ops) the same way."""

center_keys = Table(
    "center_keys",
    metadata,
    Column("center_code", String(63), primary_key=True),
    Column("key_sealed", LargeBinary(), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""Each center's partner API key (`ccr_…`), sealed: the console calls partners and records
with it on the staff's behalf."""

staff_login_codes = Table(
    "staff_login_codes",
    metadata,
    Column("staff_id", Uuid(), primary_key=True),
    Column("code_hash", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0),
)

console_actions = Table(
    "console_actions",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("staff_id", Uuid(), nullable=False, index=True),
    Column("center_code", String(63), nullable=False),
    Column("referral_id", Uuid(), nullable=True, index=True),
    Column("action", String(40), nullable=False),
    Column("outcome", String(40), nullable=False),
)
"""Who did what in the console: partners' audit names only the center (its key), this names
the staff member behind each action."""

ops_actions = Table(
    "ops_actions",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("staff_id", Uuid(), nullable=False, index=True),
    Column("action", String(40), nullable=False),
    Column("target", String(300), nullable=False),
    Column("outcome", String(40), nullable=False),
)
"""Who did what on the ops screen (`sign_in`, `view_timeline`, `replay_dead_letter`, …) and on
what (a case id, a dead letter `topic partition:offset`): partners' audit names only the ops
key the web application holds, this names the operator behind each call."""

__all__ = [
    "UUID",
    "center_keys",
    "console_actions",
    "known_cases",
    "login_codes",
    "metadata",
    "ops_actions",
    "sessions",
    "staff",
    "staff_login_codes",
    "utcnow",
]
