"""Translation's tables: what it knows of each case (where the opinion will come from) and the
outcome of each document's check, kept so a verdict can wait for the destination."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import MetaData
from sqlmodel import Field, SQLModel

from referrals_common.tables import json_column, timestamp
from referrals_common.tables import utcnow as utcnow

metadata = MetaData()


class TranslationModel(SQLModel):
    metadata = metadata


class CaseLanguages(TranslationModel, table=True):
    """One row per case translation has heard of; its lock serialises a case's checks.

    `acceptable` is null until the case is submitted (its destination is then known).
    """

    __tablename__ = "cases"

    case_id: UUID = Field(primary_key=True)
    acceptable: list[str] | None = Field(default=None, sa_column=json_column(nullable=True))
    destination: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    withdrawn: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class DocumentCheck(TranslationModel, table=True):
    """The outcome of reading one document; `verdict` is set when its event is written."""

    __tablename__ = "document_checks"

    document_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    media_type: str = Field(max_length=127)
    translation_of: UUID | None = None
    # accepted | imaging | unreadable: what reading the document found, before any destination.
    outcome: str = Field(max_length=16)
    main_language: str | None = Field(default=None, max_length=2)
    languages: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=json_column(nullable=True)
    )
    confidence: float = 0.0
    pages: int = 0
    method: str | None = Field(default=None, max_length=16)
    unreadable_reason: str | None = Field(default=None, max_length=32)
    unreadable_detail: str | None = Field(default=None, max_length=500)
    seconds: float = 0.0
    # accepted | translation_required | unreadable, once the event is in the outbox.
    verdict: str | None = Field(default=None, max_length=24)
    checked_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    decided_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
