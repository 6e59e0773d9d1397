"""Notifications' tables: the sealed contact of each case, what it learned of documents, referrals
and information requests (to word its messages), the delivery table that makes each message go out
once, and the alerts operators must see."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Index, MetaData, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from referrals_common.tables import (
    RetriedDeliveryColumns,
    json_column,
    timestamp,
)
from referrals_common.tables import utcnow as utcnow

metadata = MetaData()


class NotificationsModel(SQLModel):
    metadata = metadata


class CaseContact(NotificationsModel, table=True):
    """How to reach the patient: still sealed (opened only at the moment of sending)."""

    __tablename__ = "case_contacts"

    case_id: UUID = Field(primary_key=True)
    sealed_contact: str = Field(max_length=4000)
    locale: str = Field(max_length=5)
    front_end: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())


class CaseSeen(NotificationsModel, table=True):
    """A submitted case: before submission the front end talks to the patient itself."""

    __tablename__ = "cases_seen"

    case_id: UUID = Field(primary_key=True)
    locale: str = Field(max_length=5)
    submitted_at: datetime = Field(sa_column=timestamp())


class DocumentSeen(NotificationsModel, table=True):
    __tablename__ = "documents_seen"

    document_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)


class ReferralSeen(NotificationsModel, table=True):
    __tablename__ = "referrals_seen"

    referral_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    center_code: str = Field(max_length=63)
    center_name: str = Field(max_length=200)
    center_country: str = Field(max_length=2)


class InformationRequestSeen(NotificationsModel, table=True):
    """A center's request for information that asks for parts of the preparation checklist.

    The patient's answer carries the checklist as it is now, whatever the request asked; the
    answer's message says the checklist went only when the request asked for it and the answer
    completes the parts asked. Requests that ask for none of it are not kept.
    """

    __tablename__ = "information_requests_seen"

    request_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    checklist_items: list[str] = Field(sa_column=json_column())
    """The checklist's parts asked for: family_history, medications, allergies."""


class Delivery(NotificationsModel, RetriedDeliveryColumns, table=True):
    """One message to one audience (the patient, or the front end by webhook) about one event.

    Written in the consumer's transaction with the event's inbox row, so an event redelivered
    finds its deliveries and adds none. `audience` patient is sent by e-mail or SMS (chosen when
    sending, from the sealed contact's preference); `channel` records which one went out.
    status: pending | sent | failed | skipped.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("trigger_event_id", "audience", name="deliveries_once"),
        Index("deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )

    case_id: UUID = Field(index=True)
    trigger: str = Field(max_length=32)
    trigger_event_id: UUID
    audience: str = Field(max_length=16)
    facts: dict[str, Any] = Field(sa_column=json_column())
    occurred_at: datetime = Field(sa_column=timestamp())
    channel: str | None = Field(default=None, max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    sent_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))
    trace_context: dict[str, str] | None = Field(default=None, sa_column=json_column(nullable=True))
    """W3C trace context of the event that caused the message: sending continues its trace."""


class OpsAlert(NotificationsModel, table=True):
    """Something operators must follow up: an unroutable case, a notification that failed."""

    __tablename__ = "ops_alerts"

    id: int | None = Field(default=None, primary_key=True)
    case_id: UUID = Field(index=True)
    kind: str = Field(max_length=32)
    detail: str = Field(max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
    resolved_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True))


class FrontEndWebhook(NotificationsModel, table=True):
    """A partner front end's webhook subscription, as intake's `webhook.subscription_changed`
    events left it: where to POST its cases' updates and the signing secret, still sealed
    (opened only at the moment of sending). `url` null: unsubscribed (the row keeps the
    version, so an older change replayed cannot bring the subscription back)."""

    __tablename__ = "front_end_webhooks"

    front_end: str = Field(primary_key=True, max_length=64)
    url: str | None = Field(default=None, max_length=2000)
    sealed_secret: str | None = Field(default=None, max_length=4000)
    version: int
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp())
