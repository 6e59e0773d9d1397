"""Partners' tables: the center registry and its keys, each case being routed, each referral (one
offer of a case to one center) with its deadline, the documents a center may fetch, webhook
subscriptions and deliveries, and the audit of every center and operator action."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic_core import PydanticUndefined
from sqlalchemy import BigInteger, Column, Index, MetaData, text
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlmodel import Field, SQLModel

from referrals_common.tables import (
    AccessAuditColumns,
    ApiKeyColumns,
    RetriedDeliveryColumns,
    json_column,
    timestamp,
)
from referrals_common.tables import utcnow as utcnow

metadata = MetaData()


class PartnersModel(SQLModel):
    metadata = metadata


class CenterRow(PartnersModel, table=True):
    """A center of the registry; `profile` is the registry entry (validated by `Center`)."""

    __tablename__ = "centers"

    code: str = Field(primary_key=True, max_length=63)
    profile: dict[str, Any] = Field(sa_column=json_column())
    active: bool = True
    seed_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class ApiClient(PartnersModel, ApiKeyColumns, table=True):
    """A key (`referrals_common.tables.ApiKeyColumns`) of a center (`role` center,
    `center_code` set) or of an operator (`role` ops)."""

    __tablename__ = "api_clients"

    role: str = Field(max_length=16)
    center_code: str | None = Field(default=None, max_length=63, index=True)


class RoutingCase(PartnersModel, table=True):
    """A case partners was asked to route; its row lock serialises everything about the case.

    status: awaiting_documents | choosing | further_opinion | offered | accepted | info_requested |
    completed | unroutable | withdrawn. `request` is the latest `case.ready_for_referral`
    (clinical summary, destination, consent, documents and their languages; for a further
    opinion, with the earlier opinions the patient shared).
    """

    __tablename__ = "routing_cases"

    case_id: UUID = Field(primary_key=True)
    status: str = Field(max_length=24, index=True)
    request: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    attempts: int = 0
    last_decision: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    unroutable_reason: str | None = Field(default=None, max_length=32)
    proposal: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    """`case.centers_proposed` as sent, while (and after) the patient chooses."""
    choose_by: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    opinion_round: int = 1
    """Which opinion the case is being routed for: 1, then 2 and so on for further opinions."""
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class Referral(PartnersModel, table=True):
    """One offer of a case to one center.

    status: offered | accepted | info_requested | declined | expired | completed | withdrawn.
    """

    __tablename__ = "referrals"
    __table_args__ = (
        # Never the same center twice for one case.
        Index("referrals_case_center", "case_id", "center_code", unique=True),
        # The scheduler's scan: open offers by deadline.
        Index("referrals_due", "answer_due_at", postgresql_where=text("status = 'offered'")),
        # The centers' loads: their referrals of the last `LOAD_WINDOW` (a range of this index,
        # not every referral ever made).
        Index("referrals_offered_at", "offered_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    case_id: UUID = Field(index=True)
    center_code: str = Field(max_length=63, index=True)
    attempt: int
    status: str = Field(max_length=24)
    offered_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    answer_due_at: datetime = Field(sa_column=timestamp())
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    expected_opinion_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    decline_reason: str | None = Field(default=None, max_length=32)
    decline_detail: str | None = Field(default=None, max_length=1000)
    info_message: str | None = Field(default=None, max_length=4000)
    opinion_document_id: UUID | None = None
    sealed_policy: str | None = Field(default=None, max_length=4000)
    """The patient's insurance policy as intake sealed it to partners' key for this referral
    once accepted (`case.policy_shared`); opened only to show it to this center."""
    outcome: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    """The opinion's conclusion (`OpinionOutcome`), when the center recorded it."""
    decision: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    routing: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    """Why this center was offered the case (`RoutingExplanation`), for this center only;
    null for referrals offered before partners recorded it."""
    offer: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())


class InformationRequest(PartnersModel, table=True):
    """A center's request for more information on one of its referrals, and the answer.

    status: open | answered | expired (not answered by `due_at`) | cancelled (the center
    declined, or the case was withdrawn). `resume_status` is what the referral goes back to once
    answered (offered or accepted); `reminders_sent` counts the reminders already emitted.
    """

    __tablename__ = "information_requests"
    __table_args__ = (
        # The scheduler's scan: open requests by due date.
        Index("information_requests_due", "due_at", postgresql_where=text("status = 'open'")),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    referral_id: UUID = Field(index=True)
    case_id: UUID
    center_code: str = Field(max_length=63)
    reason: str = Field(max_length=4000)
    items: list[dict[str, Any]] = Field(sa_column=json_column())
    due_at: datetime = Field(sa_column=timestamp())
    requested_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    resume_status: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)
    reminders_sent: int = 0
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    answer: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    """The patient's answer as `case.information_provided` carried it: written answer, new
    documents, preparation (shipments are rows of their own)."""


class Shipment(PartnersModel, table=True):
    """Physical material (slides, blocks) sent for a request; the center confirms receipt."""

    __tablename__ = "shipments"

    id: UUID = Field(primary_key=True)
    request_id: UUID = Field(index=True)
    referral_id: UUID = Field(index=True)
    case_id: UUID
    material: str = Field(max_length=24)
    carrier: str = Field(max_length=80)
    tracking_number: str = Field(max_length=40)
    sent_on: date
    received_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class FollowUpQuestion(PartnersModel, table=True):
    """A patient's follow-up question on a delivered opinion, and the center's answer."""

    __tablename__ = "follow_up_questions"

    id: UUID = Field(primary_key=True)
    referral_id: UUID = Field(index=True)
    case_id: UUID
    question: str = Field(max_length=2000)
    asked_at: datetime = Field(sa_column=timestamp())
    answer: str | None = Field(default=None, max_length=1000)
    answered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    answer_document_ids: list[str] = Field(default_factory=list, sa_column=json_column())
    """Documents the center attached to its answer, each uploaded for this referral."""


class Meeting(PartnersModel, table=True):
    """The consultation meeting a center offered to explain its opinion: its times, the booked
    one, and how it ended. Status offered | booked | held | missed | cancelled."""

    __tablename__ = "meetings"
    __table_args__ = (
        Index("meetings_booked_start", "starts_at", postgresql_where=text("status = 'booked'")),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    referral_id: UUID = Field(index=True)
    case_id: UUID
    center_code: str = Field(max_length=63)
    status: str = Field(default="offered", max_length=16)
    place: dict[str, Any] = Field(sa_column=json_column())
    """The `MeetingPlace`: mode, video link or address, the center's time zone and language."""
    slots: list[dict[str, Any]] = Field(sa_column=json_column())
    """The offered `MeetingSlot`s, in time order."""
    note: str | None = Field(default=None, max_length=1000)
    slot_id: UUID | None = None
    """The booked slot."""
    starts_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    patient_time_zone: str | None = Field(default=None, max_length=64)
    sequence: int = 0
    """The calendar SEQUENCE: grows with every change the patient's calendar must follow."""
    reminders_sent: int = 0
    cancelled_by: str | None = Field(default=None, max_length=16)
    cancel_reason: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class CaseDocument(PartnersModel, table=True):
    """A stored document as records announced it: what an offer lists and an opinion cites."""

    __tablename__ = "case_documents"

    document_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    media_type: str = Field(max_length=127)
    referral_id: UUID | None = None
    """For a center's upload (its opinion), the referral it was uploaded for; else null."""


class Webhook(PartnersModel, table=True):
    """A center's HTTPS endpoint for offers; the signing secret is encrypted at rest."""

    __tablename__ = "webhooks"

    center_code: str = Field(primary_key=True, max_length=63)
    url: str = Field(max_length=2000)
    secret_encrypted: str = Field(max_length=400)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class WebhookDelivery(PartnersModel, RetriedDeliveryColumns, table=True):
    """One offer to POST to a center's webhook; status pending | delivered | failed |
    cancelled (the offer ended, by an answer, an expiry or a withdrawal, before it was sent)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    event_id: UUID = Field(unique=True)
    center_code: str = Field(max_length=63, index=True)
    referral_id: UUID = Field(index=True)
    payload: dict[str, Any] = Field(sa_column=json_column())
    last_status_code: int | None = None
    delivered_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class AccessAudit(PartnersModel, AccessAuditColumns, table=True):
    """The access audit (`referrals_common.tables.AccessAuditColumns`), with the referral."""

    __tablename__ = "access_audit"

    referral_id: UUID | None = None


class IdempotencyRecord(PartnersModel, table=True):
    """A center's `Idempotency-Key` on one of its actions on a referral: the request it was first
    used for (`request_hash`) and the referral it acted on; a replay answers the referral as it
    is (`referrals_common.api.idempotency`)."""

    __tablename__ = "idempotency_keys"

    center_code: str = Field(primary_key=True, max_length=63)
    operation: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=64)
    referral_id: UUID
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class DeadLetterReplay(PartnersModel, table=True):
    """An operator's replay of one dead letter (`POST /v1/ops/dead-letters/.../replay`), keyed by
    the operator's `Idempotency-Key`: the same request again answers this row and publishes
    nothing. Also the replay's audit: who sent which record back, and when."""

    __tablename__ = "dead_letter_replays"

    operator: str = Field(primary_key=True, max_length=120)
    """`ops:<key id>`."""
    key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=64)
    topic: str = Field(max_length=249, index=True)
    """The original topic the record went back to."""
    dlq_partition: int
    dlq_offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: str = Field(max_length=64)
    case_id: str = Field(max_length=64)
    replayed_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


_Row = TypeVar("_Row", bound=PartnersModel)


def new_row(model: type[_Row], **fields: Any) -> _Row:
    """A new row of `model` (not yet in any session) with `fields` and the model's defaults for
    the others, as `model(**fields)` makes it, without its constructor: a table model's
    constructor sets each field through SQLAlchemy's instrumentation and asks pydantic, for each
    default factory, whether it takes the other fields (`inspect.signature` every time): ~10
    times the CPU, for a referral each routed case. Like the constructor's, the row goes to the
    database through a session (`session.add`) or a statement of its own, and its attributes
    are set as any row's."""
    row: _Row = manager_of_class(model).new_instance()
    values = {name: factory() for name, factory in _defaults(model)}
    values.update(fields)
    row.__dict__.update(values)
    return row


@functools.cache
def _defaults(model: type[PartnersModel]) -> tuple[tuple[str, Callable[[], Any]], ...]:
    """Each field of `model` with a default, and what makes its value."""
    configure_mappers()  # at once when done: as the constructor does on first use
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            defaults.append((name, info.default_factory))  # type: ignore[arg-type]  # no validated data taken
        elif info.default is not PydanticUndefined:
            defaults.append((name, functools.partial(_same, info.default)))
    return tuple(defaults)


def _same(value: Any) -> Any:
    return value
