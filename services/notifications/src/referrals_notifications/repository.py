"""Reading and writing notifications' tables inside the caller's unit of work. Nothing here
commits: the consumer's inbox transaction does, or the sender's own (see `sender.py`).

The consumer's writes (what an event said, the deliveries it plans) are its hottest statements:
when the unit of work runs its own transaction on asyncpg (`UnitOfWork.native`, which the inbox
opens), they go through asyncpg itself (`referrals_common.native_sql`), without SQLAlchemy's work
per execution; otherwise (the sender, a test's unit of work) through the session as before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from typing import Any, NamedTuple, TypedDict
from uuid import UUID

from sqlalchemy import Table, bindparam, exists, or_, select, tuple_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from referrals_common.contracts import CloudEvent
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.outbox import outbox_columns
from referrals_common.native_sql import (
    REQUIRED,
    Autocommit,
    fetch_native,
    native_statement,
    run_native,
    unit_of_work_native,
)
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


class PlannedDelivery(TypedDict):
    """A delivery as the consumer plans it: the values of its row's `PLANNED` columns (a plain
    mapping, not a `Delivery`: the row is written by one statement and nothing reads it back)."""

    id: UUID
    case_id: UUID
    trigger: str
    trigger_event_id: UUID
    audience: str
    facts: dict[str, Any]
    occurred_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    trace_context: dict[str, str]


class Remembered(NamedTuple):
    """A row as an event says it (what later messages need to know), to be written by
    `remember`, or with the event's delivery by `add_delivery_and_audience`."""

    model: Any
    """The table's model (`CaseSeen`, `ReferralSeen`, ...)."""
    key: str
    """Its primary key's column: the row, if there, is set to these values."""
    values: dict[str, Any]


@dataclass(slots=True)
class ClaimedDelivery:
    """A delivery's row as the claim on asyncpg read it: plain values the sender reads and
    changes, written back by `save_claimed` (not an ORM `Delivery`: making one and changing it,
    every attribute instrumented, cost more than the rest of taking the row)."""

    id: UUID
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    case_id: UUID
    trigger: str
    trigger_event_id: UUID
    audience: str
    facts: dict[str, Any]
    occurred_at: datetime
    channel: str | None
    error_code: str | None
    sent_at: datetime | None
    trace_context: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class ClaimedContact:
    """A case's contact as the claim on asyncpg read it (its `CaseContact` row's values)."""

    case_id: UUID
    sealed_contact: str
    locale: str
    front_end: str
    updated_at: datetime


DeliveryRow = Delivery | ClaimedDelivery
"""A delivery the sender took: the session's row, or the claim's values on asyncpg."""
ContactRow = CaseContact | ClaimedContact
"""A case's contact as the claim gave it."""


class Claimed(NamedTuple):
    """A delivery `claim_due` took, its case's contact (None: not shared yet), and whether a
    later delivery of the same case to the same audience waits for it (see `claim_due`)."""

    delivery: DeliveryRow
    contact: ContactRow | None
    holds_back: bool


class NotificationsRepository:
    """What notifications learned of cases (contacts, documents, referrals, requests), the front
    ends' webhook subscriptions, the deliveries to send and the operators' alerts."""

    def __init__(self, uow: UnitOfWork, dialect: Dialect | None = None) -> None:
        self._uow = uow
        self._dialect = dialect
        self._announced: list[list[Any]] = _no_events()
        """The outbox's columns of the events `announce`d, until `save_claimed` writes them."""
        """The engine's dialect, to run the consumer's writes through asyncpg itself (None:
        everything through the session)."""

    @classmethod
    def on(cls, db: Database) -> RepositoryFactory:
        """The repositories of `db`'s units of work, the consumer's writes through asyncpg
        when the unit of work has its own transaction there (see the module doc)."""
        return partial(cls, dialect=db.engine.dialect)

    @property
    def session(self) -> AsyncSession:
        return self._uow.session

    @property
    def native(self) -> Autocommit | None:
        """The unit of work's own transaction on asyncpg (`UnitOfWork.native`), if it opened one
        and this repository may use it."""
        return unit_of_work_native(self._uow, self._dialect)

    async def _run(self, statement: Insert, values: Mapping[str, Any]) -> None:
        native = self.native
        if native is not None:
            await run_native(native, statement, values, returns=False)
        else:
            await self.session.execute(statement, values)

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
        await self.remember(self.case_row(case_id, locale=locale, submitted_at=submitted_at))

    @staticmethod
    def case_row(case_id: UUID, *, locale: str, submitted_at: datetime) -> Remembered:
        """A submitted case's row, as `remember_case` writes it."""
        return Remembered(
            CaseSeen,
            "case_id",
            {"case_id": case_id, "locale": locale, "submitted_at": submitted_at},
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
        await self.remember(
            self.referral_row(
                referral_id,
                case_id=case_id,
                center_code=center_code,
                center_name=center_name,
                center_country=center_country,
            )
        )

    @staticmethod
    def referral_row(
        referral_id: UUID,
        *,
        case_id: UUID,
        center_code: str,
        center_name: str,
        center_country: str,
    ) -> Remembered:
        """A referral's row, as `remember_referral` writes it."""
        return Remembered(
            ReferralSeen,
            "referral_id",
            {
                "referral_id": referral_id,
                "case_id": case_id,
                "center_code": center_code,
                "center_name": center_name,
                "center_country": center_country,
            },
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
        await self.remember(Remembered(model, key, values))

    async def remember(self, row: Remembered) -> None:
        """The row as the latest event says it (a replayed event writes the same again)."""
        await self._run(
            _upsert_statement(row.model.__table__, row.key, tuple(row.values)), row.values
        )

    async def case_seen(self, case_id: UUID) -> CaseSeen | None:
        return await self.session.get(CaseSeen, case_id)

    async def contact(self, case_id: UUID) -> CaseContact | None:
        return await self.session.get(CaseContact, case_id)

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
    async def add_delivery(self, delivery: PlannedDelivery) -> None:
        """A delivery to send, once per trigger event and audience: the same again adds none."""
        await self._run(_ADD_DELIVERY, delivery)

    async def add_delivery_and_audience(
        self, delivery: PlannedDelivery, remembering: Remembered | None = None
    ) -> tuple[str | None, bool]:
        """`add_delivery`, and the case's `webhook_audience` in the same statement (one round
        trip instead of two: the answer reads no table the insert writes); with `remembering`,
        that row's `remember` in it too (one round trip instead of two more: the audience's
        query reads neither table it writes)."""
        if remembering is None:
            statement: Any = _ADD_DELIVERY_AND_AUDIENCE
            values: Mapping[str, Any] = delivery
        else:
            columns = tuple(remembering.values)
            for shared in set(columns) & set(PLANNED):  # one parameter of the statement each
                if remembering.values[shared] != delivery[shared]:  # type: ignore[literal-required]
                    raise ValueError(f"the row and the delivery give {shared} different values")
            upsert = _upsert_statement(remembering.model.__table__, remembering.key, columns)
            statement = _add_delivery_remembering(upsert)
            values = {**remembering.values, **delivery}
        native = self.native
        if native is not None:
            row = await fetch_native(native, statement, values)
            assert row is not None  # a SELECT without FROM: always one row
            front_end, subscribed = row[0], row[1]
        else:
            found = await self.session.execute(statement, values)
            front_end, subscribed = found.one()
        return front_end, bool(subscribed)

    async def add_ping(self, delivery: PlannedDelivery) -> None:
        """A front end's test delivery, once per ping id."""
        await self.session.execute(_ADD_PING, dict(delivery))

    async def claim_due(self, now: datetime, limit: int) -> list[Claimed]:
        """Up to `limit` pending deliveries due at `now`, earliest due first, each locked for the
        rest of the transaction and skipped by any other sender meanwhile, each with its case's
        contact (None: not shared yet), read in the same statement (not locked).

        In the order of the case's history: a delivery waits while an earlier one of the same
        case to the same audience is still pending (being sent, waiting for the contact, or
        between retry rounds), so a claim holds at most one per case and audience, and the
        patient never reads the outcome before "we received your case". Each claimed one says
        whether it `holds_back` such a later one (read in the same statement): only then, or
        when the claim was full, can a claim right after its batch find more (the sender
        claims again only then).

        With the engine's dialect (`on`) and a unit of work that has sent nothing yet, the claim
        begins the unit of work's own transaction on asyncpg (`UnitOfWork.open_with`) and runs
        there: the rows come back as plain values (`ClaimedDelivery`, `ClaimedContact`), whose
        changes the sender writes with `save_claimed`. Otherwise they are the session's ORM
        rows, written by its flush."""
        if self._dialect is not None and await self._uow.open_with(_BEGIN_CLAIM) is not None:
            native = self.native
            assert native is not None  # the transaction just begun
            found = await _fetch_all(native, _CLAIM_DUE_ROWS, {"now": now, "limit": limit})
            return [_claimed(row) for row in found]
        rows = await self.session.execute(_CLAIM_DUE, {"now": now, "limit": limit})
        return [Claimed(delivery, contact, bool(held)) for delivery, contact, held in rows.all()]

    async def announce(self, event: CloudEvent[Any]) -> None:
        """Put the sender's `event` in the outbox, in the claim's transaction: on asyncpg, its
        row (with the trace context current now) is written by `save_claimed`'s statement with
        the batch's rows, in the order announced; otherwise through the unit of work's outbox
        at once, as before."""
        if self.native is None:
            await self._uow.outbox.add(event)
            return
        columns: tuple[list[Any], ...] = outbox_columns([event])
        for column, value in zip(self._announced, columns, strict=True):
            column.extend(value)

    async def save_claimed(self, deliveries: Collection[DeliveryRow]) -> None:
        """What the sender changed on the deliveries `claim_due` gave (status, attempts,
        channel, times, errors) and the events it `announce`d: one statement for all of them in
        the asyncpg transaction the claim began (was one more, the outbox's, per event);
        nothing to do for the session's rows (its flush writes them)."""
        native = self.native
        if native is None:
            return
        announced, self._announced = self._announced, _no_events()
        columns = [[getattr(delivery, name) for delivery in deliveries] for name in SENDERS]
        if announced[0]:
            await native.connection.execute(_SAVE_CLAIMED_ANNOUNCING, *columns, *announced)
        elif deliveries:
            await native.connection.execute(_SAVE_CLAIMED, *columns)

    def add_alert(self, alert: OpsAlert) -> None:
        self.session.add(alert)


# The statements of every event are built once and given their values when run: a statement built
# with its values is built, and its cache key computed, again on every event (more CPU than
# PostgreSQL's side of the insert). Core inserts on the tables: the ORM's bulk path is not needed
# for one row that nothing loads back. Each names its columns as bound parameters, so that it
# compiles to the same statement for asyncpg (`native_sql`) as for the session.
_DELIVERIES: Table = metadata.tables["deliveries"]


def _values(table: Table, columns: Collection[str]) -> dict[str, Any]:
    """`columns` of `table` as bound parameters of their own names and types."""
    return {column: bindparam(column, type_=table.c[column].type) for column in columns}


_PLAN = insert(_DELIVERIES).values(_values(_DELIVERIES, PLANNED))
_ADD_DELIVERY = _PLAN.on_conflict_do_nothing(constraint="deliveries_once")
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
# The delivery's insert as a data-modifying CTE of the audience's query: PostgreSQL runs it
# whether or not the query reads it, and the query does not (it sees the tables as they were
# before the statement, and reads neither deliveries nor anything the insert changes).
_ADD_DELIVERY_AND_AUDIENCE = _WEBHOOK_AUDIENCE.add_cte(_ADD_DELIVERY.cte("planned"))


@cache
def _add_delivery_remembering(upsert: Insert) -> Any:
    """`_ADD_DELIVERY_AND_AUDIENCE` that also writes `upsert`'s row, in a CTE of its own (built
    once per table and columns: `_upsert_statement` gives the same statement each time)."""
    return _ADD_DELIVERY_AND_AUDIENCE.add_cte(upsert.cte("remembered"))


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
    # A claimed row has no earlier pending one: any other pending one of its case and audience
    # is later, and waits for it.
    later = aliased(Delivery)
    holds_back = exists().where(
        col(later.case_id) == Delivery.case_id,
        col(later.audience) == Delivery.audience,
        col(later.status) == "pending",
        col(later.id) != Delivery.id,
    )
    # The contact joined (it was a second query): only the deliveries' rows are locked.
    return (
        select(Delivery, CaseContact, holds_back.label("holds_back"))
        .outerjoin(CaseContact, col(CaseContact.case_id) == col(Delivery.case_id))
        .where(
            col(Delivery.status) == "pending",
            col(Delivery.next_attempt_at) <= bindparam("now"),
            ~waits_for_earlier,
        )
        .order_by(col(Delivery.next_attempt_at))
        .limit(bindparam("limit"))
        .with_for_update(of=Delivery, skip_locked=True)
    )


# The sender's queries, built once too (it claims after every round that sent something, and
# when woken by a planned delivery: `sender.DueSignal`).
_CLAIM_DUE = _claim_due()
_CONTACTS: Table = metadata.tables["case_contacts"]
# The same claim as plain columns for asyncpg (deliveries', the contact's, then whether it holds
# a later one back), made objects by `_claimed`.
_CLAIM_DUE_ROWS = _CLAIM_DUE.with_only_columns(
    *_DELIVERIES.c, *_CONTACTS.c, _CLAIM_DUE.selected_columns.holds_back
)
_DELIVERY_COLUMNS = tuple(column.name for column in _DELIVERIES.c)
_CONTACT_COLUMNS = tuple(column.name for column in _CONTACTS.c)
# The claim's transaction is begun by a statement that does nothing (`open_with` sends it with
# the BEGIN in one round trip and returns only its status; the claim's rows come next).
_BEGIN_CLAIM = "select"

SENDERS = (
    "id",
    "status",
    "attempts",
    "channel",
    "sent_at",
    "error_code",
    "last_error",
    "next_attempt_at",
)
"""The columns the sender changes on a claimed delivery (with its id), as `save_claimed` writes
them."""
# One statement for a batch's rows (was the session's flush of the rows it loaded).
_SAVE_CLAIMED = """
update deliveries d set status = r.status, attempts = r.attempts, channel = r.channel,
    sent_at = r.sent_at, error_code = r.error_code, last_error = r.last_error,
    next_attempt_at = r.next_attempt_at
from unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[], $8::timestamptz[])
    as r(id, status, attempts, channel, sent_at, error_code, last_error, next_attempt_at)
where d.id = r.id
"""

# With the events the sender announced, their outbox rows inserted by a data-modifying CTE of
# the same statement (the columns `outbox_columns` gives, in their order: unnest keeps it, so
# the rows' `seq` is the order announced; payload and headers as JSON text).
_SAVE_CLAIMED_ANNOUNCING = """
with announced as (
    insert into outbox (id, aggregate_id, slot, topic, event_type, payload, headers)
    select e.id, e.aggregate_id, e.slot, e.topic, e.event_type, e.payload::jsonb,
        e.headers::jsonb
    from unnest($9::uuid[], $10::text[], $11::int2[], $12::text[], $13::text[], $14::text[],
                $15::text[])
        as e(id, aggregate_id, slot, topic, event_type, payload, headers)
)
update deliveries d set status = r.status, attempts = r.attempts, channel = r.channel,
    sent_at = r.sent_at, error_code = r.error_code, last_error = r.last_error,
    next_attempt_at = r.next_attempt_at
from unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[], $8::timestamptz[])
    as r(id, status, attempts, channel, sent_at, error_code, last_error, next_attempt_at)
where d.id = r.id
"""


def _no_events() -> list[list[Any]]:
    """The outbox's columns of no events (see `outbox_columns`)."""
    return [[] for _ in range(7)]


async def _fetch_all(executor: Autocommit, statement: Any, values: Mapping[str, Any]) -> list[Any]:
    """Every row of `statement` with `values` on `executor`'s connection (`fetch_native` gives
    the first): the values in the statement's order, converted as the dialect converts them,
    the statement's own for its literals."""
    sql, binds = native_statement(statement, executor.dialect)
    arguments = []
    for name, convert, own in binds:
        value = values[name] if own is REQUIRED or name in values else own
        arguments.append(value if convert is None else convert(value))
    return list(await executor.connection.fetch(sql, *arguments))


def _claimed(row: Any) -> Claimed:
    """A claimed row as asyncpg gives it: the delivery's values, its case's contact's if it has
    one, and whether it holds a later one back."""
    width, contact_end = len(_DELIVERY_COLUMNS), len(_DELIVERY_COLUMNS) + len(_CONTACT_COLUMNS)
    delivery = ClaimedDelivery(**dict(zip(_DELIVERY_COLUMNS, row[:width], strict=True)))
    contact = dict(zip(_CONTACT_COLUMNS, row[width:contact_end], strict=True))
    holds_back = bool(row[contact_end])
    if contact["case_id"] is None:  # outer-joined: the case has no contact yet
        return Claimed(delivery, None, holds_back)
    return Claimed(delivery, ClaimedContact(**contact), holds_back)


@cache
def _upsert_statement(table: Table, key: str, columns: tuple[str, ...]) -> Insert:
    """Insert `columns`, or on a conflict on `key` set the others to the values given."""
    statement = insert(table).values(_values(table, columns))
    return statement.on_conflict_do_update(
        index_elements=[key],
        set_={column: statement.excluded[column] for column in columns if column != key},
    )


RepositoryFactory = Callable[[UnitOfWork], NotificationsRepository]
"""How a use case gets its repository from its unit of work (a test passes a fake)."""
