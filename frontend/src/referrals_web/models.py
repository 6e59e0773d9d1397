"""The web application's own tables: server-side sessions, one-time sign-in codes and the
cases it opened (by reference).

Nothing here is the platform's data: a session points at a case and keeps its access token
sealed (AES-256-GCM, bound to the session's row), and the answers of a form in progress
sealed the same way. A session's row id is the SHA-256 of the cookie's value, so a copy of the
table opens no session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Uuid

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

__all__ = ["UUID", "known_cases", "login_codes", "metadata", "sessions", "utcnow"]
