"""Intake's tables: cases, their consents, timeline and document projection, API clients,
idempotency records and the access audit. Personal data lives only in `Case.personal_sealed`."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Column, Index, LargeBinary, MetaData, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from referrals_common.tables import AccessAuditColumns, ApiKeyColumns, timestamp
from referrals_common.tables import utcnow as utcnow

metadata = MetaData()


@functools.cache
def _static_defaults(model: type[SQLModel]) -> dict[str, Any]:
    return {
        name: field.default
        for name, field in model.model_fields.items()
        if field.default_factory is None and not field.is_required()
    }


def new_row(model: type[SQLModel], **values: Any) -> dict[str, Any]:
    """A new row of `model`'s table as its values by column, without making the model's
    instance (an instance sets each column through SQLAlchemy's instrumentation and pydantic:
    more than the insert itself): the model's constant defaults, then `values`. A column with
    a default factory or none must be given."""
    return {**_static_defaults(model), **values}


class IntakeModel(SQLModel):
    metadata = metadata


class Case(IntakeModel, table=True):
    __tablename__ = "cases"
    # The front end's case list: one client's cases, newest first by (created_at, id), paged by
    # keyset. Read backwards, this index gives each page without a sort.
    __table_args__ = (Index("cases_client_created", "client_id", "created_at", "id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    client_id: str = Field(index=True, max_length=64, description="the front end that opened it")
    status: str = Field(max_length=32, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    submitted_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    # When the case entered its status (its last transition; its creation before any): what
    # the time-in-state metric counts from. Null only on a row an older version wrote.
    status_since: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    icd10: str = Field(max_length=8)
    diagnosis_text: str | None = Field(default=None, max_length=500)
    histology: str | None = Field(default=None, max_length=500)
    morphology: str | None = Field(default=None, max_length=8)
    stage_tnm: str | None = Field(default=None, max_length=40)
    stage_group: str | None = Field(default=None, max_length=8)
    reasons: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    questions: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    preparation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    """The preparation checklist (`referrals_common.contracts.Preparation`), null if not given."""
    destination_preference: str = Field(max_length=16)
    destination_countries: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    locale: str = Field(max_length=5)
    age_group: str = Field(max_length=16)
    # AES-GCM ciphertext of {date_of_birth, email, phone, insurance}, bound to the case id.
    personal_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    withdrawal_reason: str | None = Field(default=None, max_length=32)
    opinion_outcome: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    """The delivered opinion's conclusion (`OpinionOutcome`), when the center recorded it."""
    patient_chooses_center: bool = False
    payer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    """Who pays (`Payer`: the kind, and for an insurer its code); the policy stays sealed."""
    center_proposal: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    """`case.centers_proposed` (the centers and the deadline), when the patient chooses."""
    opinion_referral_id: UUID | None = None
    opinion_center_code: str | None = Field(default=None, max_length=63)
    opinion_delivered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    opinion_round: int = 1
    """Which opinion the case is on: 1, then 2 and so on for each further opinion asked."""
    further_opinions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    """Each further opinion asked: round, reason, whether the patient agreed to share the
    earlier opinions (and when), which documents were shared, when it was asked."""


class CaseConsent(IntakeModel, table=True):
    __tablename__ = "case_consents"
    __table_args__ = (UniqueConstraint("case_id", "kind"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id", index=True)
    kind: str = Field(max_length=16, description="processing | cross_border")
    version: str = Field(max_length=32)
    granted_at: datetime = Field(sa_column=timestamp())


class TimelineEntry(IntakeModel, table=True):
    __tablename__ = "case_timeline"
    __table_args__ = (Index("case_timeline_case_at", "case_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id")
    at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str = Field(max_length=32)
    reason_code: str = Field(max_length=40)
    reason: str = Field(max_length=500)
    """The reason in English, as the status event carries it; shown as it is for a row without
    `params` (written before the codes were kept)."""
    next_step: str | None = Field(default=None, max_length=500)
    params: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    """What the reason's sentence is made of (`referrals_common.i18n.case_texts`), rendered in
    the case's language when read."""
    next_step_code: str | None = Field(default=None, max_length=40)


class CaseDocument(IntakeModel, table=True):
    """What intake knows of a document, from records' and translation's events."""

    __tablename__ = "case_documents"

    document_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str | None = Field(default=None, max_length=32)
    media_type: str | None = Field(default=None, max_length=100)
    size_bytes: int | None = None
    sha256: str | None = Field(default=None, max_length=64)
    translation_of: UUID | None = None
    stored: bool = False
    check: str = Field(
        default="pending",
        max_length=24,
        description="pending | accepted | translation_required | unreadable",
    )
    language: str | None = Field(default=None, max_length=8)
    check_detail: str | None = Field(default=None, max_length=500)
    acceptable_languages: list[str] | None = Field(default=None, sa_column=Column(JSONB))
    """For `translation_required`: the languages a translation may be in."""
    unreadable_reason: str | None = Field(default=None, max_length=32)
    """For `unreadable`: translation's `UnreadableReason`."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class ApiClient(IntakeModel, ApiKeyColumns, table=True):
    """A partner front end's key (`referrals_common.tables.ApiKeyColumns`)."""

    __tablename__ = "api_clients"

    takes_webhooks: bool = False
    """The front end takes its cases' updates by webhook (configured in notifications), so a
    case may reach the patient through it without an e-mail address or a phone number."""


class IdempotencyRecord(IntakeModel, table=True):
    __tablename__ = "idempotency_keys"

    client_id: str = Field(primary_key=True, max_length=64)
    operation: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class AccessAudit(IntakeModel, AccessAuditColumns, table=True):
    """The access audit (`referrals_common.tables.AccessAuditColumns`); intake's actors are
    `client:<key id>` and `case-token:<client>`."""

    __tablename__ = "access_audit"


def birth_date_of(personal: dict[str, object]) -> date | None:
    raw = personal.get("date_of_birth")
    return date.fromisoformat(str(raw)) if raw else None


class InformationRequest(IntakeModel, table=True):
    """A center's request for more information, as the patient sees and answers it.

    status: open | answered | expired | cancelled (the center declined or the case closed).
    `resume_status` is the case state the answer returns the case to (referred or accepted).
    """

    __tablename__ = "information_requests"
    __table_args__ = (Index("information_requests_case", "case_id", "requested_at"),)

    id: UUID = Field(primary_key=True, description="partners' request id")
    case_id: UUID = Field(foreign_key="cases.id")
    referral_id: UUID
    center_code: str = Field(max_length=63)
    reason: str = Field(max_length=4000)
    items: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    due_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    requested_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    status: str = Field(default="open", max_length=16)
    resume_status: str = Field(max_length=32)
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    answer: str | None = Field(default=None, max_length=4000)
    document_ids: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    shipments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    """Each: shipment_id, material, carrier, tracking_number, sent_on, received_at (or null)."""


class FollowUpQuestion(IntakeModel, table=True):
    """A question the patient asked the center after its opinion, and the center's answer."""

    __tablename__ = "follow_up_questions"
    __table_args__ = (Index("follow_up_questions_case", "case_id", "asked_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id")
    referral_id: UUID
    center_code: str = Field(max_length=63)
    question: str = Field(max_length=2000)
    asked_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    answer: str | None = Field(default=None, max_length=1000)
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    answer_document_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    """Documents the center attached to its answer (records' ids, kind `opinion`)."""


class Meeting(IntakeModel, table=True):
    """The consultation meeting a center offered, as partners' events tell it, with the
    patient's pending choice. Status offered | booked | held | missed | cancelled."""

    __tablename__ = "meetings"
    __table_args__ = (Index("meetings_case", "case_id", "created_at"),)

    id: UUID = Field(primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id")
    referral_id: UUID
    center_code: str = Field(max_length=63)
    status: str = Field(max_length=16)
    place: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    slots: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    note: str | None = Field(default=None, max_length=1000)
    booked_slot: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    patient_time_zone: str | None = Field(default=None, max_length=64)
    requested_slot_id: UUID | None = None
    """The time the patient chose, until partners books it (or a center's change crosses it)."""
    cancelled_by: str | None = Field(default=None, max_length=16)
    cancel_reason: str | None = Field(default=None, max_length=1000)
    """The patient's reason code, or the center's words."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class WebhookSubscription(IntakeModel, table=True):
    """A front end's webhook endpoint, subscribed through the API with its key. The signing
    secret is not kept here: it is shown to the front end once and sealed to notifications,
    which signs with it. `url` null: unsubscribed (the row keeps the version, which grows with
    every change and orders them for notifications)."""

    __tablename__ = "webhook_subscriptions"

    client_id: str = Field(primary_key=True, max_length=64)
    url: str | None = Field(default=None, max_length=2000)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    secret_issued_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class WebhookDeliveryAttempt(IntakeModel, table=True):
    """One attempt of notifications to deliver a webhook to a front end (its delivery log),
    from `notification.webhook_attempted`. `case_id` null: a test ping."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt"),
        Index("webhook_delivery_attempts_client", "client_id", "attempted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=64)
    delivery_id: UUID
    case_id: UUID | None = None
    event: str = Field(max_length=40)
    attempt: int
    attempted_at: datetime = Field(sa_column=timestamp())
    status_code: int | None = None
    outcome: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    next_attempt_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
