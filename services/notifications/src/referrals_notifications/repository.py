"""Reading and writing notifications' tables inside the caller's unit of work. Nothing here
commits: the consumer's inbox transaction does, or the sender's own (see `sender.py`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from sqlalchemy import Table, bindparam, exists, or_, select, tuple_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from referrals_notifications.models import (
    CaseContact,
    CaseSeen,
    Delivery,
    DocumentSeen,
    FrontEndWebhook,
    InformationRequestSeen,
    OpsAlert,
    ReferralSeen,
    metadata,
    utcnow,
)

PLANNED = (
    "id",
    "case_id",
    "trigger",
    "trigger_event_id",
    "audience",
    "facts",
    "occurred_at",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "trace_context",
)
"""The columns a planned delivery is written with (the rest are the sender's)."""


class NotificationsRepository:
    """What notifications learned of cases (contacts, documents, referrals, requests), the front
    ends' webhook subscriptions, the deliveries to send and the operators' alerts."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ what the events said
    async def remember_contact(
        self, case_id: UUID, *, sealed_contact: str, locale: str, front_end: str
    ) -> None:
        await self._upsert(
            CaseContact,
            "case_id",
            case_id=case_id,
            sealed_contact=sealed_contact,
            locale=locale,
            front_end=front_end,
            updated_at=utcnow(),
        )

    async def remember_case(self, case_id: UUID, *, locale: str, submitted_at: datetime) -> None:
        await self._upsert(
            CaseSeen, "case_id", case_id=case_id, locale=locale, submitted_at=submitted_at
        )

    async def remember_document(self, document_id: UUID, *, case_id: UUID, kind: str) -> None:
        await self._upsert(
            DocumentSeen, "document_id", document_id=document_id, case_id=case_id, kind=kind
        )

    async def remember_referral(
        self,
        referral_id: UUID,
        *,
        case_id: UUID,
        center_code: str,
        center_name: str,
        center_country: str,
    ) -> None:
        await self._upsert(
            ReferralSeen,
            "referral_id",
            referral_id=referral_id,
            case_id=case_id,
            center_code=center_code,
            center_name=center_name,
            center_country=center_country,
        )

    async def remember_information_request(
        self, request_id: UUID, *, case_id: UUID, checklist_items: list[str]
    ) -> None:
        await self._upsert(
            InformationRequestSeen,
            "request_id",
            request_id=request_id,
            case_id=case_id,
            checklist_items=checklist_items,
        )

    async def _upsert(self, model: Any, key: str, **values: Any) -> None:
        """The row as the latest event says it (a replayed event writes the same again)."""
        await self.session.execute(_upsert_statement(model.__table__, key, tuple(values)), values)

    async def case_seen(self, case_id: UUID) -> CaseSeen | None:
        return await self.session.get(CaseSeen, case_id)

    async def contact(self, case_id: UUID) -> CaseContact | None:
        return await self.session.get(CaseContact, case_id)

    async def contacts(self, case_ids: Collection[UUID]) -> dict[UUID, CaseContact]:
        found = await self.session.execute(_CONTACTS, {"case_ids": list(set(case_ids))})
        return {contact.case_id: contact for contact in found.scalars()}

    async def document(self, document_id: UUID) -> DocumentSeen | None:
        return await self.session.get(DocumentSeen, document_id)

    async def referral(self, referral_id: UUID) -> ReferralSeen | None:
        return await self.session.get(ReferralSeen, referral_id)

    async def information_request(self, request_id: UUID) -> InformationRequestSeen | None:
        return await self.session.get(InformationRequestSeen, request_id)

    # ------------------------------------------------------------------ front ends' webhooks
    async def front_end_webhook(
        self, front_end: str, *, for_update: bool = False
    ) -> FrontEndWebhook | None:
        """The front end's subscription; `for_update` locks it until the transaction ends (a
        change is applied over the version it read)."""
        if for_update:
            return await self.session.get(FrontEndWebhook, front_end, with_for_update=True)
        return await self.session.get(FrontEndWebhook, front_end)

    def add_front_end_webhook(self, row: FrontEndWebhook) -> None:
        self.session.add(row)

    async def webhook_audience(self, case_id: UUID) -> tuple[str | None, bool]:
        """The front end of the case's contact (None: no contact yet), and whether it has a
        webhook subscription now (for a case without a contact: whether any front end has).
        One query, where `contact` and `front_end_webhook` would be two."""
        front_end, subscribed = (
            await self.session.execute(_WEBHOOK_AUDIENCE, {"case_id": case_id})
        ).one()
        return front_end, bool(subscribed)

    # ------------------------------------------------------------------ deliveries and alerts
    async def add_delivery(self, delivery: Delivery) -> None:
        """A delivery to send, once per trigger event and audience: the same again adds none."""
        await self.session.execute(_ADD_DELIVERY, _planned(delivery))

    async def add_ping(self, delivery: Delivery) -> None:
        """A front end's test delivery, once per ping id."""
        await self.session.execute(_ADD_PING, _planned(delivery))

    async def claim_due(self, now: datetime, limit: int) -> list[Delivery]:
        """Up to `limit` pending deliveries due at `now`, earliest due first, each locked for the
        rest of the transaction and skipped by any other sender meanwhile.

        In the order of the case's history: a delivery waits while an earlier one of the same
        case to the same audience is still pending (being sent, waiting for the contact, or
        between retry rounds), so a claim holds at most one per case and audience, and the
        patient never reads the outcome before "we received your case"."""
        rows = await self.session.execute(_CLAIM_DUE, {"now": now, "limit": limit})
        return list(rows.scalars())

    def add_alert(self, alert: OpsAlert) -> None:
        self.session.add(alert)


def _planned(delivery: Delivery) -> dict[str, Any]:
    return {name: getattr(delivery, name) for name in PLANNED}


# The statements of every event are built once and given their values when run: a statement built
# with its values is built, and its cache key computed, again on every event (more CPU than
# PostgreSQL's side of the insert). Core inserts on the tables: the ORM's bulk path is not needed
# for one row that nothing loads back.
_DELIVERIES: Table = metadata.tables["deliveries"]
_ADD_DELIVERY = insert(_DELIVERIES).on_conflict_do_nothing(constraint="deliveries_once")
_ADD_PING = insert(_DELIVERIES).on_conflict_do_nothing()
_CASE_FRONT_END = (
    select(col(CaseContact.front_end))
    .where(col(CaseContact.case_id) == bindparam("case_id"))
    .scalar_subquery()
)
_WEBHOOK_AUDIENCE = select(
    _CASE_FRONT_END,
    exists().where(
        col(FrontEndWebhook.url).is_not(None),
        or_(_CASE_FRONT_END.is_(None), col(FrontEndWebhook.front_end) == _CASE_FRONT_END),
    ),
)


def _claim_due() -> Any:
    """See `NotificationsRepository.claim_due`: `now` and `limit` are given when it runs."""
    earlier = aliased(Delivery)
    waits_for_earlier = exists().where(
        col(earlier.case_id) == Delivery.case_id,
        col(earlier.audience) == Delivery.audience,
        col(earlier.status) == "pending",
        tuple_(earlier.occurred_at, earlier.created_at, earlier.id)
        < tuple_(Delivery.occurred_at, Delivery.created_at, Delivery.id),
    )
    return (
        select(Delivery)
        .where(
            col(Delivery.status) == "pending",
            col(Delivery.next_attempt_at) <= bindparam("now"),
            ~waits_for_earlier,
        )
        .order_by(col(Delivery.next_attempt_at))
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


# The sender's queries, built once too (it claims every `sender_interval_seconds`, busy or not).
_CLAIM_DUE = _claim_due()
_CONTACTS = select(CaseContact).where(
    col(CaseContact.case_id).in_(bindparam("case_ids", expanding=True))
)


@cache
def _upsert_statement(table: Table, key: str, columns: tuple[str, ...]) -> Insert:
    """Insert `columns`, or on a conflict on `key` set the others to the values given."""
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[key],
        set_={column: statement.excluded[column] for column in columns if column != key},
    )


RepositoryFactory = Callable[[AsyncSession], NotificationsRepository]
"""How a use case gets its repository from the unit of work's session (a test passes a fake)."""
