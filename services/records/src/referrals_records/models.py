"""Records' tables: documents, what records knows of each case and referral, the centers' keys
partners announced, and the audit of every download."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Index, MetaData, text
from sqlalchemy.orm import configure_mappers
from sqlmodel import Field, SQLModel

from referrals_common.tables import AccessAuditColumns, timestamp
from referrals_common.tables import utcnow as utcnow

metadata = MetaData()


class RecordsModel(SQLModel):
    metadata = metadata


class Document(RecordsModel, table=True):
    __tablename__ = "documents"
    __table_args__ = (
        # The same bytes uploaded twice to one case are one document.
        Index(
            "documents_case_sha256",
            "case_id",
            "sha256",
            unique=True,
            postgresql_where=text("deleted_at is null"),
        ),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    media_type: str = Field(max_length=127)
    size_bytes: int
    sha256: str = Field(max_length=64)
    object_key: str = Field(max_length=512)
    file_name: str = Field(max_length=255)
    translation_of: UUID | None = None
    uploaded_by: str = Field(max_length=120)
    center_code: str | None = Field(default=None, max_length=63)
    """The cancer center that uploaded this document (its opinion); null for the patient's."""
    referral_id: UUID | None = None
    """The referral a center uploaded this document for; null for the patient's documents."""
    shared_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    """When the patient agreed that a center's opinion goes to the centers asked for a further
    opinion (they may read it then); null: only its own center reads it."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    deleted_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


def document_value(**fields: Any) -> Document:
    """A document as a value, not a row of a session: what an upload's own statement inserts
    (`UploadStatements.add_unless_twin`) and its answer reads. Reads as any `Document` (the
    defaults, `created_at` among them, filled in), made without the table model's constructor,
    which sets each field through SQLAlchemy's instrumentation on a new instance state (57 µs of
    CPU against 16, for a row no session holds). Never add it to a session."""
    # Its fields are read through the mapper's attributes, which exist once the mappers are
    # configured (the constructor configures them on first use; 2 µs once they are).
    configure_mappers()
    return Document.model_construct(**fields)


class CaseState(RecordsModel, table=True):
    """The case's status as intake's events report it; no row means a draft nobody saw yet."""

    __tablename__ = "case_states"

    case_id: UUID = Field(primary_key=True)
    status: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class CenterReferral(RecordsModel, table=True):
    """A referral offered to a center: the center may read that case's documents (the patient's
    and its own uploads) while it is open, and upload (its opinion) once it accepted. It closes,
    and the center loses both rights at once, when the center declines, the offer expires, the
    patient withdraws the case, or the center delivered its opinion (completed)."""

    __tablename__ = "center_referrals"

    referral_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    center_code: str = Field(max_length=63, index=True)
    offered_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    accepted_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    """When partners reported the center's acceptance: from then on it may upload."""
    closed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    closed_reason: str | None = Field(default=None, max_length=32)
    """declined | expired | withdrawn | completed"""


class FollowUpQuestion(RecordsModel, table=True):
    """A patient's follow-up question on a center's opinion, as intake's event told it: while it
    is unanswered, the center that gave the opinion may upload documents to answer it, though
    its referral is completed."""

    __tablename__ = "follow_up_questions"

    question_id: UUID = Field(primary_key=True)
    referral_id: UUID = Field(index=True)
    case_id: UUID
    asked_at: datetime = Field(sa_column=timestamp())
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class CenterCredential(RecordsModel, table=True):
    """A center's API key as partners announced it (`referrals.center-credentials.v1`): records
    issues no keys and stores none, only what checks a presented key. `secret_hash` is
    `hash_secret(key_sha256, records' pepper)`, null when records learnt only the revocation
    (compaction kept no more); a revoked key stays revoked whatever arrives later."""

    __tablename__ = "center_credentials"

    key_id: str = Field(primary_key=True, max_length=32)
    center_code: str = Field(max_length=63, index=True)
    secret_hash: str | None = Field(default=None, max_length=64)
    issued_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class AccessAudit(RecordsModel, AccessAuditColumns, table=True):
    """The access audit (`referrals_common.tables.AccessAuditColumns`), with the document."""

    __tablename__ = "access_audit"

    document_id: UUID | None = None


class UploadSession(RecordsModel, table=True):
    """A resumable upload: a file of a declared size sent in numbered parts, each stored as a
    part of one MinIO multipart upload, then completed into one document (`document_id`, the
    name of its object) or refused. Abandoned, it expires and its parts are aborted.

    `state`: open (parts arrive) → completing → completed | refused; open → cancelled | expired.
    """

    __tablename__ = "upload_sessions"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    owner: str = Field(max_length=120)
    """Who may continue it: `case:<case id>` for the patient's front end, `center:<code>`."""
    uploaded_by: str = Field(max_length=120)
    kind: str = Field(max_length=32)
    translation_of: UUID | None = None
    file_name: str = Field(max_length=255)
    size_bytes: int
    part_size: int
    media_type: str | None = Field(default=None, max_length=127)
    """Sniffed from the first part's content."""
    document_id: UUID = Field(default_factory=uuid4)
    """The document's id if it becomes a new one (its object is `…/documents/<document_id>`)."""
    object_key: str = Field(max_length=512)
    storage_upload_id: str = Field(max_length=1024)
    center_code: str | None = Field(default=None, max_length=63)
    referral_id: UUID | None = None
    state: str = Field(default="open", max_length=16)
    refusal: str | None = Field(default=None, max_length=64)
    result_document_id: UUID | None = None
    """The document it became: `document_id`, or the case's document with the same bytes."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    expires_at: datetime = Field(sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class UploadPart(RecordsModel, table=True):
    """One part of a resumable upload: received (`etag` set) or being received (`etag` null,
    since `started_at`; a second copy of it waits until the first ends)."""

    __tablename__ = "upload_parts"

    upload_id: UUID = Field(primary_key=True)
    number: int = Field(primary_key=True)
    size_bytes: int
    checksum: str | None = Field(default=None, max_length=64)
    """Of the part's bytes (`resumable.PartChecksum`): a part sent again is compared with it."""
    etag: str | None = Field(default=None, max_length=128)
    started_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    received_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class UploadKey(RecordsModel, table=True):
    """An `Idempotency-Key` that created a resumable upload: the same request again answers the
    same upload (`referrals_common.api.idempotency`)."""

    __tablename__ = "upload_keys"

    owner: str = Field(primary_key=True, max_length=120)
    key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=64)
    upload_id: UUID
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
