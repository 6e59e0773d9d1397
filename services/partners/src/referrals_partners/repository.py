"""Partners' queries, on the session of the caller's unit of work. Nothing here commits: the
caller (an API route's unit of work, a consumer's inbox transaction, a scheduler round) does.

`PartnersRepository(session)` is what the use cases (`service.Partners`) and the API's routes read
and write through; `Partners` builds it from `uow.session` with an injectable factory, so a unit
test hands the use cases an in-memory repository instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    CursorResult,
    DateTime,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    exists,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import Insert, Update
from sqlmodel import col

from referrals_common.contracts import CaseFollowUpAsked, CloudEvent, DocumentStored, EventData
from referrals_common.contracts.information import Shipment as ShipmentNotice
from referrals_common.contracts.meetings import MeetingStatus
from referrals_common.messaging.outbox import outbox_insert, outbox_parameters
from referrals_common.native_sql import (
    REQUIRED,
    Autocommit,
    fetch_native,
    native_statement,
    run_native,
)
from referrals_partners.models import (
    ApiClient,
    CaseDocument,
    CenterRow,
    DeadLetterReplay,
    FollowUpQuestion,
    InformationRequest,
    Meeting,
    Referral,
    RoutingCase,
    Shipment,
    Webhook,
    WebhookDelivery,
    utcnow,
)

OPEN = ("offered", "accepted", "info_requested")
"""A referral's states while its center may still answer or deliver."""
OPEN_MEETINGS = (MeetingStatus.OFFERED.value, MeetingStatus.BOOKED.value)
"""A meeting's states while it may still take place."""
LOADED = ("offered", "accepted", "info_requested", "completed")
"""A referral's states that count towards its center's load."""


class CenterVersion(NamedTuple):
    """What routing needs to know of a center each time (`PartnersRepository.center_versions`);
    its profile is read only when its version changed."""

    code: str
    updated_at: datetime
    active: bool
    load: int
    webhook: bool


class PartnersRepository:
    """The routing cases, referrals and what hangs off them, centers and webhooks."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: object) -> None:
        """A new row, written with the unit of work."""
        self.session.add(row)

    async def refresh(self, row: object) -> None:
        """`row` as the database has it now (after a lock was taken)."""
        await self.session.refresh(row)

    # ----------------------------------------------------------------------- cases
    async def lock_case(self, case_id: UUID) -> RoutingCase:
        """The case's row, created on first sight, locked until the transaction ends."""
        # Locked first: the row is there for all but a case's first event, and then this is the
        # one round trip. A row seen missing is inserted, then locked.
        case = await self.session.get(
            RoutingCase, case_id, with_for_update=True, populate_existing=True
        )
        if case is not None:
            return case
        await self.session.execute(
            insert(RoutingCase)
            .values(
                case_id=case_id, status="new", attempts=0, created_at=utcnow(), updated_at=utcnow()
            )
            .on_conflict_do_nothing(index_elements=["case_id"])
        )
        case = await self.session.get(
            RoutingCase, case_id, with_for_update=True, populate_existing=True
        )
        assert case is not None
        return case

    async def case_unless_locked(self, case_id: UUID) -> RoutingCase | None:
        """The case's row locked for this transaction, or None if another scheduler or an API
        call holds it (SKIP LOCKED: that case is handled next round)."""
        rows = await self.session.execute(
            select(RoutingCase)
            .where(col(RoutingCase.case_id) == case_id)
            .with_for_update(skip_locked=True)
        )
        return rows.scalar_one_or_none()

    async def case(
        self, case_id: UUID, *, lock: bool = False, fresh: bool = False
    ) -> RoutingCase | None:
        """The case's row (`lock`: locked until the transaction ends; `fresh`: as the database
        has it, not as this session last read it)."""
        return await self.session.get(
            RoutingCase, case_id, with_for_update=lock, populate_existing=fresh
        )

    async def set_case_status(self, case_id: UUID, status: str, at: datetime) -> None:
        await self.session.execute(
            RoutingCase.__table__.update()  # type: ignore[attr-defined]  # SQLModel leaves __table__ undeclared
            .where(col(RoutingCase.case_id) == case_id)
            .values(status=status, updated_at=at)
        )

    async def anything_due(
        self,
        now: datetime,
        *,
        request_reminders: Sequence[timedelta],
        meeting_reminders: Sequence[timedelta],
        deliveries_at: datetime,
    ) -> bool:
        """Whether any of the scheduler's polls has work now, asked in one statement: an offer
        past its answer deadline (`offers_due`), an open information request past due or whose
        next reminder (`request_reminders`, before its due time) is due
        (`requests_to_handle`), a patient's choice past its deadline (`cases_choosing_past`), a
        booked meeting whose next reminder (`meeting_reminders`, before it starts) is due
        (`meetings_to_remind`), a webhook delivery due at `deliveries_at`
        (`next_delivery_due`). False: every poll would find nothing to do; True: one may (a
        row another scheduler holds is counted too)."""
        request, meeting = InformationRequest, Meeting
        reminder_due = [
            (col(request.reminders_sent) == sent) & (col(request.due_at) <= now + before)
            for sent, before in enumerate(request_reminders)
        ]
        meeting_due = [
            (col(meeting.reminders_sent) == sent) & (col(meeting.starts_at) <= now + before)
            for sent, before in enumerate(meeting_reminders)
        ]
        checks = [
            exists().where(col(Referral.status) == "offered", col(Referral.answer_due_at) <= now),
            exists().where(
                col(request.status) == "open", or_(col(request.due_at) <= now, *reminder_due)
            ),
            exists().where(
                col(RoutingCase.status) == "choosing", col(RoutingCase.choose_by) <= now
            ),
            exists().where(
                col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= deliveries_at,
            ),
        ]
        if meeting_due:
            checks.append(
                exists().where(
                    col(meeting.status) == MeetingStatus.BOOKED.value,
                    col(meeting.starts_at) > now,
                    or_(*meeting_due),
                )
            )
        return bool(await self.session.scalar(select(or_(*checks))))

    async def cases_choosing_past(self, now: datetime, limit: int) -> list[UUID]:
        """Cases whose patient's choice is past its deadline, locked (SKIP LOCKED)."""
        rows = await self.session.execute(
            select(col(RoutingCase.case_id))
            .where(col(RoutingCase.status) == "choosing", col(RoutingCase.choose_by) <= now)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [case_id for (case_id,) in rows.all()]

    async def cases_by_status(self, status: str, limit: int) -> list[RoutingCase]:
        """The most recently changed first."""
        rows = await self.session.execute(
            select(RoutingCase)
            .where(col(RoutingCase.status) == status)
            .order_by(col(RoutingCase.updated_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())

    async def ready_requests(self, case_ids: set[UUID]) -> dict[UUID, dict[str, Any]]:
        """The latest `case.ready_for_referral` of each case."""
        if not case_ids:
            return {}
        rows = await self.session.execute(
            select(col(RoutingCase.case_id), col(RoutingCase.request)).where(
                col(RoutingCase.case_id).in_(list(case_ids))
            )
        )
        return {case_id: request or {} for case_id, request in rows.all()}

    # ------------------------------------------------------------------- referrals
    async def referral(self, referral_id: UUID, *, fresh: bool = False) -> Referral | None:
        return await self.session.get(Referral, referral_id, populate_existing=fresh)

    async def open_referral(self, case_id: UUID) -> Referral | None:
        rows = await self.session.execute(
            select(Referral).where(col(Referral.case_id) == case_id, col(Referral.status).in_(OPEN))
        )
        return rows.scalars().first()

    async def referrals_of_case(self, case_id: UUID) -> list[Referral]:
        """Every referral of the case, in attempt order (entities: a referral this transaction
        just changed counts as it is now)."""
        rows = await self.session.execute(_REFERRALS_OF_CASE, {"case_id": case_id})
        return list(rows.scalars().all())

    async def opinions_given(self, case_id: UUID) -> int:
        given = await self.session.scalar(
            select(func.count())
            .select_from(Referral)
            .where(col(Referral.case_id) == case_id, col(Referral.status) == "completed")
        )
        return int(given or 0)

    async def offers_due(self, now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
        """(referral id, case id) of offers past their answer deadline, the oldest first."""
        rows = await self.session.execute(
            select(col(Referral.id), col(Referral.case_id))
            .where(col(Referral.status) == "offered", col(Referral.answer_due_at) <= now)
            .order_by(col(Referral.answer_due_at))
            .limit(limit)
        )
        return [(referral_id, case_id) for referral_id, case_id in rows.all()]

    async def delivered_outcomes(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(center code, recorded outcome) of every delivered opinion."""
        rows = await self.session.execute(
            select(col(Referral.center_code), col(Referral.outcome)).where(
                col(Referral.status) == "completed"
            )
        )
        return [(code, outcome) for code, outcome in rows.all()]

    async def referrals_page(self, query: Select[Any]) -> list[Referral]:
        """The referrals a built query (a center's list, a page of it) selects."""
        found: list[Referral] = list((await self.session.execute(query)).scalars())
        return found

    async def latest_referral_with_center(self, case_id: UUID) -> tuple[Referral, CenterRow] | None:
        """The case's latest referral and its center's row."""
        rows = await self.session.execute(
            select(Referral, CenterRow)
            .join(CenterRow, col(CenterRow.code) == col(Referral.center_code))
            .where(col(Referral.case_id) == case_id)
            .order_by(col(Referral.attempt).desc())
            .limit(1)
        )
        latest = rows.first()
        return (latest[0], latest[1]) if latest is not None else None

    # ------------------------------------------------------------------- documents
    async def store_document(self, stored: DocumentStored) -> None:
        """Records stored a document of the case (once per document id)."""
        await self.session.execute(
            insert(CaseDocument)
            .values(
                document_id=stored.document_id,
                case_id=stored.case_id,
                kind=str(stored.kind),
                media_type=str(stored.media_type),
                referral_id=stored.referral_id,
            )
            .on_conflict_do_nothing(index_elements=["document_id"])
        )

    async def document(self, document_id: UUID) -> CaseDocument | None:
        return await self.session.get(CaseDocument, document_id)

    async def documents(self, ids: Sequence[UUID]) -> list[CaseDocument]:
        """The stored ones of `ids`, in their order (records' events may still be on their
        way for the others)."""
        rows = await self.session.execute(_DOCUMENTS, {"ids": list(ids)})
        by_id = {d.document_id: d for d in rows.scalars()}
        return [by_id[i] for i in ids if i in by_id]

    # --------------------------------------------------------- information requests
    async def information_request(
        self, request_id: UUID, *, fresh: bool = False
    ) -> InformationRequest | None:
        return await self.session.get(InformationRequest, request_id, populate_existing=fresh)

    async def end_requests(self, referral_id: UUID, status: str) -> None:
        """The referral's open request ends as `status` (the center declined, the case
        closed)."""
        await self.session.execute(
            update(InformationRequest)
            .where(
                col(InformationRequest.referral_id) == referral_id,
                col(InformationRequest.status) == "open",
            )
            .values(status=status)
        )

    async def requests_to_handle(
        self, now: datetime, reminders: int, limit: int
    ) -> list[tuple[UUID, UUID]]:
        """(request id, case id) of open requests past due or with a reminder left, by due
        time."""
        rows = await self.session.execute(
            select(col(InformationRequest.id), col(InformationRequest.case_id))
            .where(col(InformationRequest.status) == "open")
            .where(
                (col(InformationRequest.due_at) <= now)
                | (col(InformationRequest.reminders_sent) < reminders)
            )
            .order_by(col(InformationRequest.due_at))
            .limit(limit)
        )
        return [(request_id, case_id) for request_id, case_id in rows.all()]

    async def add_shipment(
        self, shipment: ShipmentNotice, request: InformationRequest, referral: Referral
    ) -> None:
        """A shipment the patient announced in an answer (once per shipment id)."""
        await self.session.execute(
            insert(Shipment)
            .values(
                id=shipment.shipment_id,
                request_id=request.id,
                referral_id=referral.id,
                case_id=referral.case_id,
                material=str(shipment.material),
                carrier=shipment.carrier,
                tracking_number=shipment.tracking_number,
                sent_on=shipment.sent_on,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )

    async def shipment(self, shipment_id: UUID) -> Shipment | None:
        """The shipment, locked until the transaction ends."""
        return await self.session.get(Shipment, shipment_id, with_for_update=True)

    async def information_of(self, referral_ids: set[UUID]) -> list[InformationRequest]:
        """The referrals' information requests, oldest first."""
        if not referral_ids:
            return []
        rows = await self.session.execute(
            select(InformationRequest)
            .where(col(InformationRequest.referral_id).in_(list(referral_ids)))
            .order_by(col(InformationRequest.requested_at))
        )
        return list(rows.scalars())

    async def shipments_of(self, request_ids: list[UUID]) -> list[Shipment]:
        """The requests' shipments, by the day they were sent."""
        if not request_ids:
            return []
        rows = await self.session.execute(
            select(Shipment)
            .where(col(Shipment.request_id).in_(request_ids))
            .order_by(col(Shipment.sent_on))
        )
        return list(rows.scalars())

    # ---------------------------------------------------------- follow-up questions
    async def add_follow_up(self, asked: CaseFollowUpAsked, referral: Referral) -> bool:
        """The patient's follow-up question (once per question id); False: known already."""
        inserted = await self.session.execute(
            insert(FollowUpQuestion)
            .values(
                id=asked.question_id,
                referral_id=referral.id,
                case_id=referral.case_id,
                question=asked.question,
                asked_at=asked.asked_at,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(col(FollowUpQuestion.id))
        )
        return inserted.first() is not None

    async def follow_up(self, question_id: UUID) -> FollowUpQuestion | None:
        """The question, locked until the transaction ends."""
        return await self.session.get(FollowUpQuestion, question_id, with_for_update=True)

    async def follow_ups_of(self, referral_ids: set[UUID]) -> list[FollowUpQuestion]:
        """The referrals' follow-up questions, oldest first."""
        if not referral_ids:
            return []
        rows = await self.session.execute(
            select(FollowUpQuestion)
            .where(col(FollowUpQuestion.referral_id).in_(list(referral_ids)))
            .order_by(col(FollowUpQuestion.asked_at))
        )
        return list(rows.scalars())

    async def meetings_of(self, referral_ids: set[UUID]) -> list[Meeting]:
        """The referrals' meetings, oldest first."""
        if not referral_ids:
            return []
        rows = await self.session.execute(
            select(Meeting)
            .where(col(Meeting.referral_id).in_(list(referral_ids)))
            .order_by(col(Meeting.created_at))
        )
        return list(rows.scalars())

    async def meeting(self, meeting_id: UUID, *, lock: bool = False) -> Meeting | None:
        """The meeting (`lock`: locked until the transaction ends)."""
        return await self.session.get(Meeting, meeting_id, with_for_update=lock)

    async def open_meeting(self, referral_id: UUID) -> Meeting | None:
        """The referral's meeting offered or booked, if any (one at a time)."""
        rows = await self.session.execute(
            select(Meeting).where(
                col(Meeting.referral_id) == referral_id,
                col(Meeting.status).in_(OPEN_MEETINGS),
            )
        )
        return rows.scalars().first()

    async def end_open_meetings(self, case_id: UUID, *, status: str, cancelled_by: str) -> None:
        """The case's meetings offered or booked end as `status`, quietly."""
        await self.session.execute(
            update(Meeting)
            .where(col(Meeting.case_id) == case_id, col(Meeting.status).in_(OPEN_MEETINGS))
            .values(status=status, cancelled_by=cancelled_by)
        )

    async def meetings_to_remind(
        self, reminders_sent: int, now: datetime, before: timedelta, limit: int
    ) -> list[Meeting]:
        """Booked meetings that have had `reminders_sent` reminders and start within `before`
        (not yet started), soonest first, locked (SKIP LOCKED: several schedulers share them)."""
        rows = await self.session.execute(
            select(Meeting)
            .where(
                col(Meeting.status) == MeetingStatus.BOOKED.value,
                col(Meeting.reminders_sent) == reminders_sent,
                col(Meeting.starts_at) <= now + before,
                col(Meeting.starts_at) > now,
            )
            .order_by(col(Meeting.starts_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(rows.scalars())

    # ------------------------------------------------------------ operators' reads
    async def information_requests_of_case(self, case_id: UUID) -> list[InformationRequest]:
        rows = await self.session.execute(
            select(InformationRequest).where(col(InformationRequest.case_id) == case_id)
        )
        return list(rows.scalars())

    async def deliveries_of(self, referral_ids: list[UUID]) -> list[WebhookDelivery]:
        """The webhook deliveries of the referrals."""
        if not referral_ids:
            return []
        rows = await self.session.execute(
            select(WebhookDelivery).where(col(WebhookDelivery.referral_id).in_(referral_ids))
        )
        return list(rows.scalars())

    async def offers_past_due(self, now: datetime) -> list[Referral]:
        """Offers past their answer deadline, not yet expired."""
        rows = await self.session.execute(
            select(Referral).where(
                col(Referral.status) == "offered", col(Referral.answer_due_at) < now
            )
        )
        return list(rows.scalars())

    async def opinions_past_due(self, now: datetime) -> list[Referral]:
        """Accepted referrals past the opinion's expected date."""
        rows = await self.session.execute(
            select(Referral).where(
                col(Referral.status) == "accepted", col(Referral.expected_opinion_at) < now
            )
        )
        return list(rows.scalars())

    async def requests_past_due(self, now: datetime) -> list[InformationRequest]:
        """Open requests for information past their due time, not yet expired."""
        rows = await self.session.execute(
            select(InformationRequest).where(
                col(InformationRequest.status) == "open", col(InformationRequest.due_at) < now
            )
        )
        return list(rows.scalars())

    async def choices_past_due(self, now: datetime) -> list[RoutingCase]:
        """Cases whose patient's choice of center is past its deadline, not yet offered."""
        rows = await self.session.execute(
            select(RoutingCase).where(
                col(RoutingCase.status) == "choosing", col(RoutingCase.choose_by) < now
            )
        )
        return list(rows.scalars())

    async def replays(self, topic: str) -> list[DeadLetterReplay]:
        """Every replay of the dead letters of `topic`, oldest first."""
        rows = await self.session.execute(
            select(DeadLetterReplay)
            .where(col(DeadLetterReplay.topic) == topic)
            .order_by(col(DeadLetterReplay.replayed_at))
        )
        return list(rows.scalars())

    # --------------------------------------------------------------------- centers
    async def center_row(self, code: str, *, lock: bool = False) -> CenterRow | None:
        return await self.session.get(CenterRow, code, with_for_update=lock)

    async def center_versions(self, since: datetime) -> list[CenterVersion]:
        """Every center's version, whether it is active and has a webhook, and its load, in one
        statement: the version is when its row last changed (`updated_at`), the load the
        referrals offered to it since `since` that count towards its load (`LOADED`). Routing
        ranks the centers itself."""
        rows = await self.session.execute(_CENTER_VERSIONS, {"since": since})
        return [CenterVersion(*row) for row in rows.all()]

    async def center_rows(self, codes: Sequence[str] | None = None) -> list[CenterRow]:
        """The centers of `codes` (None: every center), as the database returns them."""
        query = select(CenterRow)
        if codes is not None:
            query = query.where(col(CenterRow.code).in_(list(codes)))
        return list((await self.session.execute(query)).scalars().all())

    async def centers_by_code(self) -> list[CenterRow]:
        """Every center, by code."""
        rows = await self.session.execute(select(CenterRow).order_by(CenterRow.code))
        return list(rows.scalars().all())

    async def add_seed_center(self, values: dict[str, Any]) -> bool:
        """A center of the registry seed, unless the registry has it (ops' changes stay);
        False: it had."""
        # An INSERT's result is a CursorResult (the session types every result as Result).
        result = cast(
            CursorResult[Any],
            await self.session.execute(
                insert(CenterRow).values(**values).on_conflict_do_nothing(index_elements=["code"])
            ),
        )
        return bool(result.rowcount)

    async def center_codes(self) -> list[str]:
        return list((await self.session.execute(select(col(CenterRow.code)))).scalars().all())

    # -------------------------------------------------------------------- API keys
    async def api_key(self, key_id: str, *, lock: bool = False) -> ApiClient | None:
        """A center's or an operator's key (`lock`: locked until the transaction ends)."""
        return await self.session.get(ApiClient, key_id, with_for_update=lock)

    # -------------------------------------------------------------------- webhooks
    async def webhook(self, center_code: str) -> Webhook | None:
        return await self.session.get(Webhook, center_code)

    async def remove(self, row: object) -> None:
        await self.session.delete(row)

    async def recent_deliveries(self, center_code: str, limit: int) -> list[WebhookDelivery]:
        """The center's webhook deliveries, the newest first."""
        rows = await self.session.execute(
            select(WebhookDelivery)
            .where(col(WebhookDelivery.center_code) == center_code)
            .order_by(col(WebhookDelivery.created_at).desc())
            .limit(limit)
        )
        return list(rows.scalars())

    async def next_delivery_due(self, now: datetime) -> WebhookDelivery | None:
        """The pending delivery due the longest, locked (SKIP LOCKED: several schedulers)."""
        rows = await self.session.execute(
            select(WebhookDelivery)
            .where(
                col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .order_by(col(WebhookDelivery.next_attempt_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        return rows.scalar_one_or_none()

    async def cancel_deliveries(self, referral_id: UUID) -> None:
        """The offer ended (answered, expired, withdrawn): its webhook deliveries not yet made
        are cancelled, so a center is never sent an offer it can no longer take."""
        await self.session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.referral_id) == referral_id,
                col(WebhookDelivery.status) == "pending",
            )
            .values(status="cancelled", last_error="the offer ended before it was delivered")
        )


class RoutingRepository(Protocol):
    """What routing a case reads and writes (`Partners._route`, `_offer`): `PartnersRepository`
    on the unit of work's session, or `NativeRoutingRepository` on its transaction's asyncpg
    connection."""

    def add(self, row: object) -> None: ...

    async def documents(self, ids: Sequence[UUID]) -> list[CaseDocument]: ...

    async def referrals_of_case(self, case_id: UUID) -> list[Referral]: ...

    async def center_versions(self, since: datetime) -> list[CenterVersion]: ...

    async def center_rows(self, codes: Sequence[str] | None = None) -> list[CenterRow]: ...

    async def webhook(self, center_code: str) -> Webhook | None: ...


class RoutingReads(NamedTuple):
    """What routing reads of a locked case and of the centers
    (`NativeRoutingRepository.routing_reads`)."""

    referrals: list[Referral]
    """The case's referrals, in attempt order."""
    documents: list[CaseDocument]
    """The stored ones of the documents asked for, in their order."""
    versions: list[CenterVersion]
    """Every center's version and load (`PartnersRepository.center_versions`)."""


class NativeRoutingRepository:
    """A case routed in the transaction a consumer's inbox opened on asyncpg (`Autocommit`), with
    no ORM session: the case locked (`lock_case`), what routing reads in one statement
    (`routing_reads`), and what it changed (the case's row, the referral it offers and the
    referral's webhook delivery, `add`) with the events that say so (`publish`) written in one
    statement (`save`). Its rows are the models' instances outside any session; the statements
    are built once and run through asyncpg itself (`native_statement`)."""

    def __init__(self, native: Autocommit) -> None:
        self.native = native
        self._added: list[object] = []
        self._events: list[CloudEvent[EventData]] = []

    def add(self, row: object) -> None:
        """A new row (a `Referral`, a `WebhookDelivery`), written by `save`."""
        self._added.append(row)

    def publish(self, events: Sequence[CloudEvent[EventData]]) -> None:
        """Events for the outbox, in this order, written by `save` with what they announce (as
        `Outbox.add_all` writes them: `outbox_columns`)."""
        self._events.extend(events)

    async def lock_case(self, case_id: UUID) -> RoutingCase | None:
        """The case's row, locked until the transaction ends, as the database has it; None: it
        has no row (`PartnersRepository.lock_case` makes one). `save` writes what changes on it."""
        row = await fetch_native(self.native, _LOCKED_CASE, {"case_id": case_id})
        if row is None:
            return None
        configure_mappers()  # at once when done: the ORM may not have run in this process yet
        case: RoutingCase = manager_of_class(RoutingCase).new_instance()
        case.__dict__.update(row.items())
        return case

    async def routing_reads(
        self, case_id: UUID, document_ids: Sequence[UUID], since: datetime
    ) -> RoutingReads:
        """The case's referrals, the stored ones of its documents `document_ids` and every
        center's version and load since `since` (`PartnersRepository.referrals_of_case`,
        `documents` and `center_versions`), in one statement. Read after the case's lock (in a
        statement of its own): the statement's snapshot then has whatever another transaction
        did to the case before it let the lock go (a `SELECT ... FOR UPDATE` of the case in the
        same statement would wait for the lock, but read the rest as it was before)."""
        row = await fetch_native(
            self.native,
            _ROUTING_READS,
            {"case_id": case_id, "document_ids": list(document_ids), "since": since},
        )
        assert row is not None  # one row, whatever the arrays hold
        return RoutingReads(
            [_detached(Referral, r) for r in row["referrals"]],
            _in_order(document_ids, [_detached(CaseDocument, d) for d in row["documents"]]),
            [CenterVersion(*v) for v in row["versions"]],
        )

    async def referrals_of_case(self, case_id: UUID) -> list[Referral]:
        """Every referral of the case, in attempt order."""
        rows = await self._all(_REFERRAL_ROWS, {"case_id": case_id})
        return [_detached(Referral, r[0]) for r in rows]

    async def documents(self, ids: Sequence[UUID]) -> list[CaseDocument]:
        """The stored ones of `ids`, in their order."""
        rows = await self._all(_DOCUMENT_ROWS, {"ids": list(ids)})
        return _in_order(ids, [_detached(CaseDocument, r[0]) for r in rows])

    async def center_versions(self, since: datetime) -> list[CenterVersion]:
        """`PartnersRepository.center_versions`."""
        row = await fetch_native(self.native, _CENTER_VERSION_ROWS, {"since": since})
        assert row is not None
        return [CenterVersion(*v) for v in row[0]]

    async def center_rows(self, codes: Sequence[str] | None = None) -> list[CenterRow]:
        """The centers of `codes` (None: every center)."""
        statement = _ALL_CENTER_ROWS if codes is None else _CENTER_ROWS
        rows = await self._all(statement, {} if codes is None else {"codes": list(codes)})
        return [_detached(CenterRow, r[0]) for r in rows]

    async def webhook(self, center_code: str) -> Webhook | None:
        row = await fetch_native(self.native, _WEBHOOK_ROW, {"center_code": center_code})
        return None if row is None else _detached(Webhook, row[0])

    async def save(self, case: RoutingCase) -> None:
        """Write the case as it is now (every column but its key and creation time), the rows
        added and the events published since the last save, in one statement."""
        referrals = [r for r in self._added if isinstance(r, Referral)]
        deliveries = [d for d in self._added if isinstance(d, WebhookDelivery)]
        assert len(referrals) + len(deliveries) == len(self._added), self._added
        assert len(referrals) <= 1, self._added  # one offer per routing
        assert len(deliveries) <= 1, self._added
        values = _prefixed("case", _ROUTING_CASES, case)
        for name, rows in (("referral", referrals), ("delivery", deliveries)):
            if rows:
                values.update(_prefixed(name, _TABLES[name], rows[0]))
        events = self._events
        if events:
            values.update(outbox_parameters(events))
        statement = _routing_saved(bool(referrals), bool(deliveries), len(events))
        await run_native(self.native, statement, values, returns=False)
        self._added, self._events = [], []

    async def _all(self, statement: ClauseElement, values: Mapping[str, Any]) -> list[Any]:
        """Every row of `statement` with `values` (`fetch_native` gives the first)."""
        sql, binds = native_statement(statement, self.native.dialect)
        arguments = []
        for name, convert, own in binds:
            value = values[name] if own is REQUIRED or name in values else own
            arguments.append(value if convert is None else convert(value))
        return list(await self.native.connection.fetch(sql, *arguments))


def _detached(model: type[Any], record: Any) -> Any:
    """A row (an asyncpg record of its table's composite type) as its model's instance outside
    any session, without validating its values again (PostgreSQL's, as the ORM's loading takes
    them): for reading only."""
    return model.model_construct(**dict(record.items()))


def _in_order(ids: Sequence[UUID], documents: list[CaseDocument]) -> list[CaseDocument]:
    by_id = {d.document_id: d for d in documents}
    return [by_id[i] for i in ids if i in by_id]


def _prefixed(prefix: str, table: Table, row: object) -> dict[str, Any]:
    """`row`'s values of `table`'s columns by their parameters' names in `_routing_saved`."""
    return {f"{prefix}_{c.name}": getattr(row, c.name) for c in table.columns}


async def store_document_locking_case(native: Autocommit, stored: DocumentStored) -> str | None:
    """`PartnersRepository.lock_case` and `store_document` as one statement through asyncpg
    itself, in the transaction the consumer's inbox opened: the case's row (created on first
    sight, as `lock_case` does) locked until the transaction ends, the document stored (once per
    document id), and the case's status returned. None: another transaction created the case's
    row while this statement ran (its snapshot does not see that row, so it could not lock it):
    the document is stored all the same, and the caller locks the case with `lock_case`."""
    row = await fetch_native(
        native,
        _STORE_DOCUMENT_LOCKING_CASE,
        {
            "case_id": stored.case_id,
            "document_id": stored.document_id,
            "kind": str(stored.kind),
            "media_type": str(stored.media_type),
            "referral_id": stored.referral_id,
            "now": utcnow(),
        },
    )
    return None if row is None else str(row[0])


__all__ = [
    "LOADED",
    "OPEN",
    "OPEN_MEETINGS",
    "CenterVersion",
    "NativeRoutingRepository",
    "PartnersRepository",
    "RoutingReads",
    "RoutingRepository",
    "store_document_locking_case",
]


# The queries of every routed case, built once and given their values when run: a statement built
# with its values is built, and its cache key worked out, again on every case (the centers' one,
# with its subquery, ~0.4 ms of CPU each time).
_REFERRALS_OF_CASE = (
    select(Referral)
    .where(col(Referral.case_id) == bindparam("case_id"))
    .order_by(col(Referral.attempt))
)
_DOCUMENTS = select(CaseDocument).where(
    col(CaseDocument.document_id).in_(bindparam("ids", expanding=True))
)


# See `PartnersRepository.center_versions`: `since` is given when it runs.
_LOADS = (
    select(col(Referral.center_code).label("code"), func.count().label("load"))
    .where(col(Referral.offered_at) >= bindparam("since"), col(Referral.status).in_(LOADED))
    .group_by(col(Referral.center_code))
    .subquery()
)
_CENTER_VERSIONS = select(
    col(CenterRow.code),
    col(CenterRow.updated_at),
    col(CenterRow.active),
    func.coalesce(_LOADS.c.load, 0),
    exists().where(col(Webhook.center_code) == col(CenterRow.code)),
).outerjoin(_LOADS, _LOADS.c.code == col(CenterRow.code))


# See `store_document_locking_case`. Within one statement every part sees the same snapshot: a
# row `created` inserts is not `locked`'s to see (the insert itself holds its lock), a row that
# was there is locked by `locked` (waiting for a transaction that holds it, then reading its
# latest version), so one of the two returns the status. Nothing orders the document's insert
# before or after the lock, and nothing needs to: a transaction of the same case that holds the
# lock reads the documents only after this one commits (see `Partners.on_document_stored`).
_CASE_CREATED = (
    insert(RoutingCase)
    .values(
        case_id=bindparam("case_id"),
        status="new",
        attempts=0,
        opinion_round=1,
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .on_conflict_do_nothing(index_elements=["case_id"])
    .returning(col(RoutingCase.status))
    .cte("created")
)
_CASE_LOCKED = (
    select(col(RoutingCase.status))
    .where(col(RoutingCase.case_id) == bindparam("case_id"))
    .with_for_update()
    .cte("locked")
)
_DOCUMENT_STORED = (
    insert(CaseDocument)
    .values(
        document_id=bindparam("document_id"),
        case_id=bindparam("case_id"),
        kind=bindparam("kind"),
        media_type=bindparam("media_type"),
        referral_id=bindparam("referral_id"),
    )
    .on_conflict_do_nothing(index_elements=["document_id"])
    .cte("stored")
)
_STORE_DOCUMENT_LOCKING_CASE = union_all(
    select(_CASE_CREATED.c.status), select(_CASE_LOCKED.c.status)
).add_cte(_DOCUMENT_STORED)


# See `NativeRoutingRepository`. Each row of a table as its composite type (a record with its
# columns' names), made the model's instance by name; JSON comes back decoded, as the ORM reads it.
_ROUTING_CASES: Table = RoutingCase.__table__  # type: ignore[attr-defined]  # SQLModel leaves __table__ undeclared
_TABLES: dict[str, Table] = {
    "referral": Referral.__table__,  # type: ignore[attr-defined]
    "delivery": WebhookDelivery.__table__,  # type: ignore[attr-defined]
}
_LOCKED_CASE = (
    select(_ROUTING_CASES)
    .where(_ROUTING_CASES.c.case_id == bindparam("case_id", type_=Uuid()))
    .with_for_update()
)
# The centers' versions and loads as `_CENTER_VERSIONS` has them, each a record (code,
# updated_at, active, load, webhook), by code.
_VERSIONS_SQL = """array(
    select row(c.code, c.updated_at, c.active, coalesce(l.load, 0)::int,
               exists(select from webhooks w where w.center_code = c.code))
    from centers c
    left join (select r.center_code, count(*) as load from referrals r
               where r.offered_at >= :since and r.status = any(:loaded)
               group by r.center_code) l on l.center_code = c.code
    order by c.code)"""
_SINCE = bindparam("since", type_=DateTime(timezone=True))
_LOADED = bindparam("loaded", list(LOADED), type_=ARRAY(String()))
# Only this module's constant SQL is written in; every value is a parameter.
_ROUTING_READS = text(
    "select array(select r from referrals r where r.case_id = :case_id order by r.attempt)"  # noqa: S608
    " as referrals,"
    " array(select d from case_documents d where d.document_id = any(:document_ids))"
    f" as documents, {_VERSIONS_SQL} as versions"
).bindparams(
    bindparam("case_id", type_=Uuid()),
    bindparam("document_ids", type_=ARRAY(Uuid())),
    _SINCE,
    _LOADED,
)
_CENTER_VERSION_ROWS = text(f"select {_VERSIONS_SQL}").bindparams(_SINCE, _LOADED)
_REFERRAL_ROWS = text(
    "select r from referrals r where r.case_id = :case_id order by r.attempt"
).bindparams(bindparam("case_id", type_=Uuid()))
_DOCUMENT_ROWS = text("select d from case_documents d where d.document_id = any(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(Uuid()))
)
_CENTER_ROWS = text("select c from centers c where c.code = any(:codes)").bindparams(
    bindparam("codes", type_=ARRAY(String()))
)
_ALL_CENTER_ROWS = text("select c from centers c")
_WEBHOOK_ROW = text("select w from webhooks w where w.center_code = :center_code").bindparams(
    bindparam("center_code", type_=String())
)


@functools.cache
def _routing_saved(referral: bool, delivery: bool, events: int) -> ClauseElement:
    """`NativeRoutingRepository.save`'s statement, built once for each shape: the case's row
    updated (every column but its key and creation time), with `referral` a referral and with
    `delivery` a webhook delivery inserted, and `events` outbox rows inserted in their order;
    the last of them is the statement, the others its data-modifying CTEs."""
    case = _ROUTING_CASES
    saved: Update | Insert = (
        update(case)
        .where(case.c.case_id == bindparam("case_case_id", type_=case.c.case_id.type))
        .values(
            {
                c.name: bindparam(f"case_{c.name}", type_=c.type)
                for c in case.columns
                if c.name not in ("case_id", "created_at")
            }
        )
    )
    for name, wanted in (("referral", referral), ("delivery", delivery)):
        if wanted:
            table = _TABLES[name]
            added = insert(table).values(
                {c.name: bindparam(f"{name}_{c.name}", type_=c.type) for c in table.columns}
            )
            # What was saved before goes first, as a data-modifying CTE of this statement.
            saved = added.add_cte(saved.cte(f"before_{name}"))
    if events:
        saved = outbox_insert(events).add_cte(saved.cte("before_events"))
    return saved
