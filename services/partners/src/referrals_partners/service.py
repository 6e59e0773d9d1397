"""Partners' use cases: route a ready case, re-route on a decline or an expired deadline, take the
center's answer and opinion, and give up loudly when no center is left.

Every change to a case happens under its `routing_cases` row lock, whichever path it came from
(an event, a center's API call, the deadline scheduler), so two paths can never offer the same
case twice or answer the same referral twice. State, outgoing events (outbox) and webhook
deliveries are written in the caller's unit of work: all of them or none. The use cases never
commit and never open a transaction; they read and write through `PartnersRepository`, built
from the unit of work's session by `Partners(repository=...)` (a unit test passes an in-memory
one).

A referral's life: offered → accepted → completed (opinion delivered); offered → declined or
expired (the case goes to the next eligible center, never the same one twice); offered or
accepted → info_requested (the case waits for the patient's documents, then the same center is
offered it again); any open referral → withdrawn when the patient withdraws.

The information loop: a center with an offered or accepted referral asks for information (what,
why, by when); the referral is `info_requested` until the patient's answer
(`case.information_provided`) gives it back to the same center as it was (an offer with a new
answer deadline, or an accepted referral whose expected opinion date moves on by the time it
waited), or until the due date passes: then it expires (`information_not_provided`) and the case
goes to the next center, as after any expiry. Reminders go out before the due date. While it
waits, the center may still decline. Shipments of slides or blocks are confirmed by the center.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidTag
from opentelemetry import trace
from sqlalchemy.engine import Dialect

from referrals_common.contracts import (
    CaseFollowUpAsked,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CasePolicyShared,
    CaseReadyForReferral,
    CaseUnroutable,
    CentersProposed,
    CloudEvent,
    DeclineReason,
    DocumentStored,
    EventData,
    ExpiryReason,
    OfferedDocument,
    OpinionOutcome,
    ProposedCenter,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralFollowUpAsked,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralInformationReceived,
    ReferralOffered,
    ReferralOpinionDelivered,
    ReferralRequested,
    ReferralResumed,
    ReferralShipmentReceived,
    ReminderKind,
    RequestedItem,
    UnroutableReason,
    new_event,
)
from referrals_common.contracts.partners import Price as ProposedPrice
from referrals_common.contracts.partners import document_fetch_path
from referrals_common.crypto import SealedBox
from referrals_common.db import UnitOfWork
from referrals_common.metrics import (
    CENTER_ANSWER_TIME,
    CENTER_REFERRALS,
    OPINION_OUTCOMES,
    TIME_TO_FIRST_OFFER,
    TIME_TO_OPINION,
    service_name,
)
from referrals_common.native_sql import unit_of_work_native
from referrals_common.telemetry import case_context
from referrals_partners.explanation import OfferFacts, ahead_by, explain
from referrals_partners.models import (
    CaseDocument,
    CenterRow,
    InformationRequest,
    Referral,
    RoutingCase,
    WebhookDelivery,
    new_row,
    utcnow,
)
from referrals_partners.registry import Center, ExchangeRates
from referrals_partners.repository import (
    OPEN,
    CenterVersion,
    NativeRoutingRepository,
    PartnersRepository,
    RoutingReads,
    RoutingRepository,
    store_document_locking_case,
)
from referrals_partners.routing import CenterState, RoutingRequest, Score, decide

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_partners")

FINAL_CASE = ("completed", "unroutable", "withdrawn")
LOAD_WINDOW = timedelta(days=7)


class ReferralNotFound(Exception):
    """No such referral for this center (another center's referral looks the same)."""


class IllegalAction(Exception):
    """The referral is not in a state that allows this action."""

    def __init__(self, message: str, status: str, case_id: UUID | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.case_id = case_id
        """The case the refused action was about (for the audit, never for the caller)."""


class InvalidAnswer(ValueError):
    """A center's answer with a value the domain refuses (a date in the past): nothing applied."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer


class OpinionNotStored(Exception):
    """The opinion document is not (yet) known as a stored opinion of this case."""


class OpinionNotOwn(Exception):
    """The document is known, but it is not an opinion this referral uploaded."""

    pointer = "/document_id"


class AttachmentNotStored(OpinionNotStored):
    """A document attached to a follow-up answer is not (yet) known as stored."""

    def __init__(self, document_id: UUID, pointer: str) -> None:
        super().__init__(document_id)
        self.pointer = pointer


class AttachmentNotOwn(OpinionNotOwn):
    """A document attached to a follow-up answer is not one this referral uploaded (the
    patient's, another referral's or another case's)."""

    def __init__(self, document_id: UUID, pointer: str) -> None:
        super().__init__(document_id)
        self.pointer = pointer


@dataclass(frozen=True)
class Limits:
    max_attempts: int = 10
    """Offers per case before routing gives up (declines and expiries count)."""
    deadline_override: timedelta | None = None
    """If set, replaces every center's answer deadline (demos and tests)."""
    info_min_due: timedelta = timedelta(days=1)
    """The least time a center gives the patient to answer a request for information."""
    info_max_due: timedelta = timedelta(days=90)
    info_reminders_before: tuple[timedelta, ...] = (timedelta(days=3), timedelta(hours=8))
    """Reminders of an unanswered request, before its due time, earliest first."""
    choice_count: int = 3
    """How many centers a patient who asked to choose is proposed (the best-ranked)."""
    choice_window: timedelta = timedelta(hours=72)
    """How long the patient has to choose; then the first-ranked center is offered the case."""


class Partners:
    def __init__(
        self,
        rates: ExchangeRates,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = utcnow,
        policy_box: SealedBox | None = None,
        repository: Callable[[Any], PartnersRepository] = PartnersRepository,
        dialect: Dialect | None = None,
    ) -> None:
        self.rates = rates
        self.repository = repository
        """Builds the repository the use cases read and write through from the caller's unit of
        work's session (a unit test passes an in-memory one)."""
        self.policy_box = policy_box
        """Opens the insurance policies intake seals to partners; None: they stay sealed."""
        """Fixed rates to compare prices in one currency (the registry seed's)."""
        self.limits = limits or Limits()
        self.clock = clock
        self.dialect = dialect
        """The engine's dialect: with it, a consumer's `document.stored` is one statement through
        asyncpg itself (`store_document_locking_case`); None: through the repository."""
        # Validated centers (with their precomputed routing profiles) by code and version:
        # validating 1,000 centers per decision would cost more than the decision itself.
        self._centers: dict[str, tuple[tuple[datetime, bool], Center]] = {}

    def repo(self, uow: UnitOfWork) -> PartnersRepository:
        """The repository on the caller's unit of work."""
        return self.repository(uow.session)

    # ------------------------------------------------------------------ events
    async def on_document_stored(self, uow: UnitOfWork, stored: DocumentStored) -> None:
        # The case's row lock first, as on every path: `on_case_ready` for the same case may run
        # at the same time (the two events come from different topics and consumers), and each
        # transaction would otherwise miss what the other has not committed yet, leaving the
        # case at `awaiting_documents` for ever. A draft's documents thus get a `new` row.
        native = unit_of_work_native(uow, self.dialect)
        if native is not None:
            # The consumer's path: the lock and the document in one statement through asyncpg,
            # in the inbox's transaction; no ORM session unless the case is to be routed.
            status = await store_document_locking_case(native, stored)
            if status is not None and status != "awaiting_documents":
                return
            case = await self.repo(uow).lock_case(stored.case_id)  # ours already, or now
        else:
            repo = self.repo(uow)
            case = await repo.lock_case(stored.case_id)
            await repo.store_document(stored)
        if case.status == "awaiting_documents":
            await self._route(uow, case)

    async def on_case_ready(self, uow: UnitOfWork, ready: CaseReadyForReferral) -> None:
        # The consumer's path: through asyncpg itself in the inbox's transaction, with no ORM
        # session (unless the case has no row yet: then as below).
        native = unit_of_work_native(uow, self.dialect)
        if native is not None and await self._on_case_ready_native(
            uow, NativeRoutingRepository(native), ready
        ):
            return
        repo = self.repo(uow)
        case = await repo.lock_case(ready.case_id)
        # Its referrals once it is ours (whether one is open, and for routing the centers tried
        # before), not with the lock: a statement that waits for the lock reads the rest as it
        # was before, without the offer the lock's holder made.
        earlier = await repo.referrals_of_case(case.case_id)
        if case.status in FINAL_CASE:
            log.info("case %s is %s: ready_for_referral ignored", case.case_id, case.status)
            return
        case.request = ready.model_dump(mode="json")
        case.updated_at = self.clock()
        current = next((r for r in earlier if r.status in OPEN), None)
        if current is not None:
            log.info("case %s already has open referral %s", case.case_id, current.id)
            return
        if case.status == "choosing":
            return  # the patient is choosing among the proposed centers
        await self._route(uow, case, earlier=earlier, ready=ready)

    async def _on_case_ready_native(
        self, uow: UnitOfWork, repo: NativeRoutingRepository, ready: CaseReadyForReferral
    ) -> bool:
        """`on_case_ready` through `repo`: the case locked (one statement), what routing reads
        (one), the events (the outbox's one) and the case's changes with the offer (one).
        False: the case has no row yet, nothing done (the session's `lock_case` makes it)."""
        case = await repo.lock_case(ready.case_id)
        if case is None:
            return False
        if case.status in FINAL_CASE:
            log.info("case %s is %s: ready_for_referral ignored", case.case_id, case.status)
            return True
        case.request = ready.model_dump(mode="json")
        case.updated_at = self.clock()
        reads = await repo.routing_reads(
            case.case_id, ready.document_ids, self.clock() - LOAD_WINDOW
        )
        current = next((r for r in reads.referrals if r.status in OPEN), None)
        if current is not None:
            log.info("case %s already has open referral %s", case.case_id, current.id)
        elif case.status != "choosing":  # else the patient is choosing among proposed centers
            await self._route(uow, case, ready=ready, repo=repo, reads=reads)
        await repo.save(case)
        return True

    async def on_further_opinion(self, uow: UnitOfWork, asked: CaseFurtherOpinionRequested) -> None:
        """After an opinion, route the case again: never to a center offered it before (one that
        gave an opinion, declined or let the offer expire); the earlier opinions are offered
        with the case only when the patient agreed to share them. Automatic routing: the
        patient's choice of center applies to the first routing only."""
        repo = self.repo(uow)
        case = await repo.lock_case(asked.case_id)
        # After an opinion; or after a further round that found no center (`unroutable`, the
        # case keeps an opinion given before), when the patient asks again.
        given = await repo.opinions_given(case.case_id)
        if case.status not in ("completed", "unroutable") or not given or case.request is None:
            log.info("case %s is %s: further opinion ignored", case.case_id, case.status)
            return
        request = dict(case.request)
        # The patient's documents, and the earlier opinions only as this round shares them: an
        # opinion shared for an earlier round is not offered again without the patient's consent.
        opinions = {
            str(d.document_id)
            for d in await repo.documents([UUID(i) for i in request.get("document_ids") or []])
            if d.kind == "opinion"
        }
        ids = [d for d in request.get("document_ids") or [] if d not in opinions]
        request["document_ids"] = ids + [
            str(d) for d in asked.shared_document_ids if str(d) not in ids
        ]
        case.request = request
        case.status = "further_opinion"
        case.opinion_round = asked.opinion_round
        case.attempts = 0  # each opinion has its own attempts
        case.updated_at = self.clock()
        await self._route(uow, case)

    async def on_case_withdrawn(self, uow: UnitOfWork, case_id: UUID) -> None:
        repo = self.repo(uow)
        case = await repo.lock_case(case_id)
        case.status = "withdrawn"
        case.updated_at = self.clock()
        current = await repo.open_referral(case_id)
        if current is not None:
            current.status = "withdrawn"
            current.answered_at = self.clock()
            await repo.cancel_deliveries(current.id)
            await repo.end_requests(current.id, "cancelled")

    # ------------------------------------------------------------ center actions
    async def referral_for_center(
        self, uow: UnitOfWork, center_code: str, referral_id: UUID, *, lock: bool = False
    ) -> tuple[Referral, RoutingCase]:
        repo = self.repo(uow)
        referral = await repo.referral(referral_id)
        if referral is None or referral.center_code != center_code:
            raise ReferralNotFound(referral_id)
        case = await repo.case(referral.case_id, lock=lock)
        assert case is not None
        if lock:  # the referral as it is now that the case is ours
            await repo.refresh(referral)
        return referral, case

    async def accept(
        self, uow: UnitOfWork, center: str, referral_id: UUID, expected_opinion_at: datetime
    ) -> Referral:
        referral, _ = await self.referral_for_center(uow, center, referral_id, lock=True)
        self._require(referral, "offered", "accept")
        if expected_opinion_at <= self.clock():
            raise InvalidAnswer(
                "/expected_opinion_at", "The expected opinion date must be in the future."
            )
        repo = self.repo(uow)
        referral.status = "accepted"
        referral.answered_at = self.clock()
        await repo.cancel_deliveries(referral.id)  # the center has the offer
        referral.expected_opinion_at = expected_opinion_at
        await repo.set_case_status(referral.case_id, "accepted", self.clock())
        await uow.outbox.add(
            new_event(
                ReferralAccepted(
                    case_id=referral.case_id,
                    referral_id=referral.id,
                    center_code=center,
                    expected_opinion_at=expected_opinion_at,
                )
            )
        )
        _count(uow, center, "accepted", answered=referral)
        return referral

    async def decline(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        reason: DeclineReason,
        detail: str | None,
    ) -> Referral:
        referral, case = await self.referral_for_center(uow, center, referral_id, lock=True)
        # While it waits for the patient's answer to a question asked before accepting, a
        # center may still give up on the offer; a referral it accepted is not declined.
        self._require(referral, ("offered", "info_requested"), "decline")
        if referral.status == "info_requested" and referral.expected_opinion_at is not None:
            raise IllegalAction(
                "This center accepted the referral and waits for the patient's answer: an "
                "accepted referral cannot be declined.",
                "info_requested",
                referral.case_id,
            )
        repo = self.repo(uow)
        await repo.end_requests(referral.id, "cancelled")
        referral.status = "declined"
        referral.answered_at = self.clock()
        await repo.cancel_deliveries(referral.id)
        referral.decline_reason = str(reason)
        referral.decline_detail = detail
        await uow.outbox.add(
            new_event(
                ReferralDeclined(
                    case_id=referral.case_id,
                    referral_id=referral.id,
                    center_code=center,
                    reason=reason,
                    detail=detail,
                )
            )
        )
        _count(uow, center, "declined", answered=referral)
        await self._route(uow, case, after_all_declined=True)
        return referral

    async def request_info(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        *,
        reason: str,
        items: Sequence[RequestedItem],
        due_at: datetime,
    ) -> Referral:
        """The center asks the patient for more (what, why, by when); the referral waits."""
        referral, case = await self.referral_for_center(uow, center, referral_id, lock=True)
        self._require(referral, ("offered", "accepted"), "request information on")
        now = self.clock()
        if due_at < now + self.limits.info_min_due:
            raise InvalidAnswer(
                "/due_at",
                f"The patient needs time to answer: the due date must be at least "
                f"{_words(self.limits.info_min_due)} from now.",
            )
        if due_at > now + self.limits.info_max_due:
            raise InvalidAnswer(
                "/due_at",
                f"The due date must be within {self.limits.info_max_due.days} days from now.",
            )
        request = InformationRequest(
            id=uuid4(),
            referral_id=referral.id,
            case_id=referral.case_id,
            center_code=center,
            reason=reason,
            items=[item.model_dump(mode="json") for item in items],
            due_at=due_at,
            requested_at=now,
            resume_status=referral.status,
            # Reminders whose time has already passed are not sent.
            reminders_sent=sum(
                1 for before in self.limits.info_reminders_before if due_at - before <= now
            ),
        )
        repo = self.repo(uow)
        repo.add(request)
        await repo.cancel_deliveries(referral.id)  # an offer not yet delivered is on hold
        referral.status = "info_requested"
        referral.info_message = reason
        case.status = "info_requested"
        case.updated_at = now
        await uow.outbox.add(
            new_event(
                ReferralInfoRequested(
                    case_id=referral.case_id,
                    referral_id=referral.id,
                    center_code=center,
                    message=reason,
                    request_id=request.id,
                    items=list(items),
                    due_at=due_at,
                    resumes_as=request.resume_status,
                )
            )
        )
        _count(uow, center, "info_requested")
        return referral

    async def on_information_provided(
        self, uow: UnitOfWork, provided: CaseInformationProvided
    ) -> None:
        """The patient answered: the same center gets the case back, with the new material."""
        repo = self.repo(uow)
        case = await repo.lock_case(provided.case_id)
        request = await repo.information_request(provided.request_id)
        referral = await repo.referral(provided.referral_id)
        if (
            request is None
            or referral is None
            or request.status != "open"
            or referral.status != "info_requested"
        ):
            # Expired or declined while the answer was on its way: the case already went on.
            log.info("answer to request %s arrived too late: ignored", provided.request_id)
            return
        now = self.clock()
        request.status = "answered"
        request.answered_at = now
        request.answer = {
            "answer": provided.answer,
            "new_document_ids": [str(d) for d in provided.new_document_ids],
            "preparation": provided.preparation.model_dump(mode="json")
            if provided.preparation
            else None,
        }
        for shipment in provided.shipments:
            await repo.add_shipment(shipment, request, referral)
        # The case's documents are now these (the checks passed: intake names only accepted
        # ones); its preparation, the latest the patient gave.
        assert case.request is not None
        case.request = {
            **case.request,
            "document_ids": [str(d) for d in provided.document_ids],
            "preparation": request.answer["preparation"] or case.request.get("preparation"),
        }
        center = await self._center_of(repo, referral.center_code)
        if request.resume_status == "offered":
            await self._offer(uow, case, referral, center, resumed=request.id)
            return
        waited = now - request.requested_at
        if referral.expected_opinion_at is not None:
            referral.expected_opinion_at = referral.expected_opinion_at + waited
        referral.status = "accepted"
        case.status = "accepted"
        case.updated_at = now
        expected = referral.expected_opinion_at or now
        await uow.outbox.add(
            new_event(
                ReferralResumed(
                    case_id=case.case_id,
                    referral_id=referral.id,
                    center_code=referral.center_code,
                    request_id=request.id,
                    status="accepted",
                    expected_opinion_at=expected,
                )
            )
        )
        docs = await repo.documents(provided.new_document_ids)
        # The outbox takes any event: the variable is typed as one (CloudEvent is invariant).
        received: CloudEvent[EventData] = new_event(
            ReferralInformationReceived(
                case_id=case.case_id,
                referral_id=referral.id,
                center_code=referral.center_code,
                request_id=request.id,
                documents=[_offered(referral.id, d) for d in docs],
                shipments=len(provided.shipments),
                written_answer=bool(provided.answer),
                expected_opinion_at=expected,
            )
        )
        await uow.outbox.add(received)
        await _queue_webhook(repo, received, referral)

    async def on_policy_shared(self, uow: UnitOfWork, shared: CasePolicyShared) -> None:
        """Intake handed over the insurance policy for a referral a center accepted: kept
        sealed with that referral, for that center's API reads only."""
        repo = self.repo(uow)
        await repo.lock_case(shared.case_id)  # the case's lock, as on every path
        referral = await repo.referral(shared.referral_id)
        if referral is None or referral.case_id != shared.case_id:
            log.warning("policy for unknown referral %s ignored", shared.referral_id)
            return
        referral.sealed_policy = shared.sealed_policy

    def policy_of(self, referral: Referral) -> dict[str, Any] | None:
        """The policy (`insurer_name`, `policy_number`) of a referral its center accepted, opened;
        None before the acceptance, for any other referral, or when it cannot be opened."""
        accepted = referral.status in ("accepted", "info_requested", "completed") and (
            referral.expected_opinion_at is not None
        )
        if not accepted or not referral.sealed_policy or self.policy_box is None:
            return None
        try:
            opened = self.policy_box.open_json(
                referral.sealed_policy, bound_to=f"{referral.case_id}/{referral.id}"
            )
        except (ValueError, InvalidTag):  # sealed to another key, or for another referral
            log.warning("the policy of referral %s does not open", referral.id)
            return None
        return {
            "insurer_name": opened.get("provider"),
            "policy_number": opened.get("policy_number"),
        }

    async def on_follow_up_asked(self, uow: UnitOfWork, asked: CaseFollowUpAsked) -> None:
        """The patient asked the center that gave the opinion: kept, and the center told on its
        inbox (and webhook) that a question waits, without the patient's words."""
        repo = self.repo(uow)
        await repo.lock_case(asked.case_id)  # the case's lock, as on every path
        referral = await repo.referral(asked.referral_id)
        if referral is None or referral.status != "completed":
            log.warning("follow-up question on referral %s ignored", asked.referral_id)
            return
        if not await repo.add_follow_up(asked, referral):
            return  # the same question again
        told: CloudEvent[EventData] = new_event(
            ReferralFollowUpAsked(
                case_id=referral.case_id,
                referral_id=referral.id,
                center_code=referral.center_code,
                question_id=asked.question_id,
            )
        )
        await uow.outbox.add(told)
        await _queue_webhook(repo, told, referral)

    async def answer_follow_up(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        question_id: UUID,
        answer: str,
        document_ids: Sequence[UUID] = (),
    ) -> Referral:
        """The center answers a follow-up question on its opinion, once, in words and with the
        documents it uploaded to records for this referral (the rule of the opinion: a center
        attaches only its own uploads for this referral, never the patient's or another's)."""
        referral, _ = await self.referral_for_center(uow, center, referral_id, lock=True)
        repo = self.repo(uow)
        question = await repo.follow_up(question_id)
        if question is None or question.referral_id != referral.id:
            raise QuestionNotFound(question_id)
        if question.answered_at is not None:
            raise IllegalAction("This question was answered already.", "answered", referral.case_id)
        for index, document_id in enumerate(document_ids):
            doc = await repo.document(document_id)
            pointer = f"/document_ids/{index}"
            if doc is None:
                raise AttachmentNotStored(document_id, pointer)  # records' event on its way
            if doc.case_id != referral.case_id or doc.referral_id != referral.id:
                raise AttachmentNotOwn(document_id, pointer)
        question.answer, question.answered_at = answer, self.clock()
        question.answer_document_ids = [str(d) for d in document_ids]
        await uow.outbox.add(
            new_event(
                ReferralFollowUpAnswered(
                    case_id=referral.case_id,
                    referral_id=referral.id,
                    center_code=center,
                    question_id=question.id,
                    answer=answer,
                    answered_at=question.answered_at,
                    document_ids=list(document_ids),
                )
            )
        )
        return referral

    async def confirm_shipment(
        self, uow: UnitOfWork, center: str, referral_id: UUID, shipment_id: UUID
    ) -> Referral:
        """The center received the slides or blocks of a shipment (once; again is a no-op)."""
        referral, _ = await self.referral_for_center(uow, center, referral_id, lock=True)
        shipment = await self.repo(uow).shipment(shipment_id)
        if shipment is None or shipment.referral_id != referral.id:
            raise ShipmentNotFound(shipment_id)
        self._require(referral, ("offered", "accepted", "info_requested"), "confirm material on")
        if shipment.received_at is None:
            shipment.received_at = self.clock()
            await uow.outbox.add(
                new_event(
                    ReferralShipmentReceived(
                        case_id=referral.case_id,
                        referral_id=referral.id,
                        center_code=center,
                        request_id=shipment.request_id,
                        shipment_id=shipment.id,
                        received_at=shipment.received_at,
                    )
                )
            )
        return referral

    async def remind_and_expire_requests(self, uow: UnitOfWork, *, limit: int = 50) -> int:
        """Remind the patient of requests due soon, expire those past due (routing the case to
        the next center); returns how many requests were handled. Rows are claimed with SKIP
        LOCKED under the case's lock, as offers are."""
        now = self.clock()
        offsets = self.limits.info_reminders_before
        repo = self.repo(uow)
        handled = 0
        for request_id, case_id in await repo.requests_to_handle(now, len(offsets), limit):
            locked = await repo.case_unless_locked(case_id)
            if locked is None:
                continue
            request = await repo.information_request(request_id, fresh=True)
            assert request is not None
            if request.status != "open":
                continue
            if request.due_at <= now:
                await self._expire_request(uow, locked, request)
                handled += 1
                continue
            if request.reminders_sent < len(offsets):
                before = offsets[request.reminders_sent]
                if request.due_at - before > now:
                    continue
                request.reminders_sent += 1
                last = request.reminders_sent == len(offsets)
                # A step of the case's journey of its own, found by the case id like an expiry.
                with tracer.start_as_current_span(
                    "information request remind", context=case_context(case_id)
                ) as span:
                    span.set_attribute("referrals.center_code", request.center_code)
                    await uow.outbox.add(
                        new_event(
                            ReferralInfoReminder(
                                case_id=case_id,
                                referral_id=request.referral_id,
                                center_code=request.center_code,
                                request_id=request.id,
                                reminder=ReminderKind.DUE_SOON
                                if last
                                else ReminderKind.DAYS_BEFORE,
                                due_at=request.due_at,
                            )
                        )
                    )
                handled += 1
        return handled

    async def _expire_request(
        self, uow: UnitOfWork, case: RoutingCase, request: InformationRequest
    ) -> None:
        repo = self.repo(uow)
        referral = await repo.referral(request.referral_id, fresh=True)
        assert referral is not None
        request.status = "expired"
        if referral.status != "info_requested":
            return
        with tracer.start_as_current_span(
            "information request expire", context=case_context(case.case_id)
        ) as span:
            span.set_attribute("referrals.case_id", str(case.case_id))
            span.set_attribute("referrals.center_code", referral.center_code)
            referral.status = "expired"
            referral.answered_at = self.clock()
            await repo.cancel_deliveries(referral.id)
            await uow.outbox.add(
                new_event(
                    ReferralExpired(
                        case_id=case.case_id,
                        referral_id=referral.id,
                        center_code=referral.center_code,
                        reason=ExpiryReason.INFORMATION_NOT_PROVIDED,
                        request_id=request.id,
                    )
                )
            )
            _count(uow, referral.center_code, "expired")
            await self._route(uow, case, after_all_declined=True)

    async def deliver_opinion(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        document_id: UUID,
        outcome: OpinionOutcome | None = None,
    ) -> Referral:
        referral, case = await self.referral_for_center(uow, center, referral_id, lock=True)
        self._require(referral, "accepted", "deliver an opinion on")
        doc = await self.repo(uow).document(document_id)
        if doc is None:
            raise OpinionNotStored(document_id)  # records' event may still be on its way
        own = doc.kind == "opinion" and doc.referral_id == referral.id
        if doc.case_id != referral.case_id or not own:
            # The patient's document, another case's, or an opinion another center (or another
            # referral) uploaded: a center delivers only the opinion it uploaded itself.
            raise OpinionNotOwn(document_id)
        referral.status = "completed"
        referral.opinion_document_id = document_id
        referral.outcome = outcome.model_dump(mode="json") if outcome else None
        case.status = "completed"
        case.updated_at = self.clock()
        await uow.outbox.add(
            new_event(
                ReferralOpinionDelivered(
                    case_id=referral.case_id,
                    referral_id=referral.id,
                    center_code=center,
                    opinion_document_id=document_id,
                    outcome=outcome,
                )
            )
        )
        uow.after_commit(
            OPINION_OUTCOMES.labels(
                service_name(),
                center,
                str(outcome.diagnosis) if outcome else "not_recorded",
                str(outcome.treatment) if outcome else "not_recorded",
            ).inc
        )
        _count(uow, center, "opinion_delivered")
        waited = (self.clock() - case.created_at).total_seconds()
        uow.after_commit(lambda: TIME_TO_OPINION.labels(service_name(), center).observe(waited))
        return referral

    async def concordance(self, uow: UnitOfWork) -> list[Concordance]:
        """Per center, then overall (`center_code` None): opinions delivered, with an outcome,
        and the shares that changed the diagnosis or the treatment plan (of those with one)."""
        by_center: dict[str | None, list[dict[str, Any] | None]] = {None: []}  # overall, always
        for code, outcome in await self.repo(uow).delivered_outcomes():
            by_center.setdefault(code, []).append(outcome)
            by_center.setdefault(None, []).append(outcome)
        return [
            Concordance.of(code, outcomes)
            for code, outcomes in sorted(by_center.items(), key=lambda kv: (kv[0] is None, kv[0]))
        ]

    def _require(self, referral: Referral, allowed: str | Sequence[str], action: str) -> None:
        allowed = (allowed,) if isinstance(allowed, str) else tuple(allowed)
        if referral.status == "offered" and referral.answer_due_at <= self.clock():
            raise IllegalAction(
                f"The answer deadline of this referral passed at "
                f"{referral.answer_due_at.isoformat()}; it can no longer be answered.",
                "expired",
                referral.case_id,
            )
        if referral.status not in allowed:
            raise IllegalAction(
                f"This referral is {referral.status}: it is not possible to {action} it.",
                referral.status,
                referral.case_id,
            )

    # ----------------------------------------------------------------- deadlines
    async def expire_due(self, uow: UnitOfWork, *, limit: int = 50) -> int:
        """Expire offers whose deadline passed and re-route their cases; returns how many.

        Several schedulers may run: each claims different rows (SKIP LOCKED).
        """
        now = self.clock()
        repo = self.repo(uow)
        expired = 0
        for referral_id, case_id in await repo.offers_due(now, limit):
            locked = await repo.case_unless_locked(case_id)
            if locked is None:
                continue  # another scheduler or an API call holds it; next round
            referral = await repo.referral(referral_id, fresh=True)
            assert referral is not None
            if referral.status != "offered" or referral.answer_due_at > now:
                continue
            # An expiry is a case step of its own: a new trace, whatever the caller suppressed.
            with tracer.start_as_current_span(
                "referral expire", context=case_context(case_id)
            ) as span:
                span.set_attribute("referrals.case_id", str(case_id))
                span.set_attribute("referrals.center_code", referral.center_code)
                referral.status = "expired"
                referral.answered_at = now
                await repo.cancel_deliveries(referral.id)
                await uow.outbox.add(
                    new_event(
                        ReferralExpired(
                            case_id=case_id,
                            referral_id=referral.id,
                            center_code=referral.center_code,
                        )
                    )
                )
                _count(uow, referral.center_code, "expired")
                await self._route(uow, locked, after_all_declined=True)
            expired += 1
        return expired

    # ------------------------------------------------------------------- routing
    async def _route(
        self,
        uow: UnitOfWork,
        case: RoutingCase,
        *,
        after_all_declined: bool = False,
        earlier: list[Referral] | None = None,
        ready: CaseReadyForReferral | None = None,
        repo: RoutingRepository | None = None,
        reads: RoutingReads | None = None,
    ) -> None:
        """Offer the case to the best eligible center not tried yet, or declare it unroutable.
        `earlier`: the case's referrals in attempt order, and `ready`: its request
        (`case.request`) validated, if the caller has them already; `repo`: what it reads and
        writes through (default: the unit of work's `PartnersRepository`), and `reads`: what
        routing reads, read by the caller (the case's referrals, documents and the centers'
        versions) after the case's lock."""
        assert case.request is not None
        if ready is None:
            ready = CaseReadyForReferral.model_validate(case.request)
        if repo is None:
            repo = self.repo(uow)
        if reads is not None:
            docs = reads.documents
        else:
            docs = await repo.documents(ready.document_ids)
        if len(docs) < len(ready.document_ids):
            case.status = "awaiting_documents"  # records' events are still on their way
            return
        # Entities, not columns: a referral this transaction just declined or expired is not
        # flushed yet (no autoflush), and its new status counts in the explanation.
        if earlier is None:
            earlier = (
                reads.referrals if reads is not None else await repo.referrals_of_case(case.case_id)
            )
        tried = [r.center_code for r in earlier]
        states, with_webhook = await self._center_states(
            repo, None if reads is None else reads.versions
        )
        request = RoutingRequest.from_ready_event(ready)
        decision = decide(request, states, set(tried), rates=self.rates)
        case.last_decision = decision.as_record()
        case.updated_at = self.clock()
        chosen = decision.chosen
        first_routing = not tried and case.proposal is None
        if ready.patient_chooses and first_routing and decision.eligible_count >= 2:
            await self._propose(uow, case, decision, repo)
            return
        if chosen is None or case.attempts >= self.limits.max_attempts:
            if case.attempts >= self.limits.max_attempts:
                reason = UnroutableReason.ATTEMPTS_EXHAUSTED
            elif tried and after_all_declined:
                reason = UnroutableReason.ALL_CENTERS_DECLINED
            elif decision.unroutable is UnroutableReason.PAYER_NOT_ACCEPTED:
                reason = UnroutableReason.PAYER_NOT_ACCEPTED  # tell the patient why
            else:
                reason = UnroutableReason.NO_ELIGIBLE_CENTER
            case.status = "unroutable"
            case.unroutable_reason = str(reason)
            log.warning("case %s is unroutable: %s", case.case_id, reason)
            unroutable = CaseUnroutable(
                case_id=case.case_id,
                reason=reason,
                centers_tried=tried,
                opinion_round=case.opinion_round if case.opinion_round > 1 else None,
            )
            await _publish(uow, repo, [new_event(unroutable)])
            return
        case.attempts += 1
        referral = new_row(
            Referral,
            id=uuid4(),
            case_id=case.case_id,
            center_code=chosen.code,
            attempt=case.attempts,
            status="offered",
            answer_due_at=self.clock(),
            decision=decision.as_record(include_ineligible=False),
        )
        first = decision.assessment(chosen.code)
        runner_up = decision.eligible[1].score if decision.eligible_count > 1 else None
        facts = OfferFacts(
            rank=1,
            eligible_count=decision.eligible_count,
            considered_count=decision.considered,
            load=first.load,
            ahead_by=ahead_by(first.score, runner_up) if first.score and runner_up else None,
            opinion_round=case.opinion_round,
            declined_before=_ended_before(earlier, "declined"),
            expired_before=_ended_before(earlier, "expired"),
        )
        referral.routing = explain(request, chosen, facts).model_dump(mode="json")
        repo.add(referral)
        await self._offer(
            uow,
            case,
            referral,
            chosen,
            docs=docs,
            rationale=decision.rationale,
            ready=ready,
            webhook=chosen.code in with_webhook,
            repo=repo,
        )

    async def _propose(
        self, uow: UnitOfWork, case: RoutingCase, decision: Any, repo: RoutingRepository
    ) -> None:
        """The patient chooses: the best-ranked eligible centers, each with why, until when."""
        now = self.clock()
        proposals = [
            ProposedCenter(
                rank=item.rank,
                center_code=item.code,
                center_name=item.center.name,
                center_country=item.center.country,
                turnaround_days=item.center.opinion_turnaround_days,
                price=ProposedPrice(
                    amount=float(item.center.price.amount), currency=item.center.price.currency
                )
                if item.center.price.amount
                else None,
                why=(
                    decision.rationale
                    if item.rank == 1
                    else "; ".join(r.text for r in item.reasons) or "eligible"
                )[:1000],
            )
            for item in decision.eligible[: self.limits.choice_count]
        ]
        event = CentersProposed(
            case_id=case.case_id, proposals=proposals, choose_by=now + self.limits.choice_window
        )
        case.status = "choosing"
        case.proposal = event.model_dump(mode="json")
        case.choose_by = event.choose_by
        await _publish(uow, repo, [new_event(event)])

    async def on_center_chosen(self, uow: UnitOfWork, case_id: UUID, center_code: str) -> None:
        """The patient chose: that center is offered the case (if it still may be)."""
        case = await self.repo(uow).lock_case(case_id)
        if case.status != "choosing":
            log.info(
                "case %s is %s: the choice of %s comes too late", case_id, case.status, center_code
            )
            return
        await self._offer_proposed(uow, case, center_code, chosen_by_patient=True)

    async def choose_for_silent_patients(self, uow: UnitOfWork, *, limit: int = 50) -> int:
        """Cases whose choice's deadline passed: the first-ranked center is offered the case."""
        now = self.clock()
        repo = self.repo(uow)
        chosen = 0
        for case_id in await repo.cases_choosing_past(now, limit):
            case = await repo.case(case_id, fresh=True)
            assert case is not None
            assert case.proposal is not None
            first = case.proposal["proposals"][0]["center_code"]
            with tracer.start_as_current_span(
                "choice deadline offer", context=case_context(case_id)
            ) as span:
                span.set_attribute("referrals.center_code", first)
                await self._offer_proposed(uow, case, first, chosen_by_patient=False)
            chosen += 1
        return chosen

    async def _offer_proposed(
        self, uow: UnitOfWork, case: RoutingCase, code: str, *, chosen_by_patient: bool
    ) -> None:
        proposal = case.proposal or {}
        codes = [p["center_code"] for p in proposal.get("proposals", [])]
        repo = self.repo(uow)
        row = await repo.center_row(code)
        if code not in codes or row is None or not row.active:
            log.warning(
                "case %s: %s cannot be offered the case; routing instead", case.case_id, code
            )
            await self._route(uow, case)  # not `choosing` any more once it offers or gives up
            return
        center = self._center(row)
        case.choose_by = None
        case.attempts += 1
        why = (
            f"The patient chose {center.name} among {len(codes)} proposed centers."
            if chosen_by_patient
            else f"The patient did not choose by the deadline: the first-ranked center, "
            f"{center.name}, is offered the case."
        )
        referral = new_row(
            Referral,
            id=uuid4(),
            case_id=case.case_id,
            center_code=code,
            attempt=case.attempts,
            status="offered",
            answer_due_at=self.clock(),
            decision={**(case.last_decision or {}), "chosen": code, "rationale": why},
        )
        referral.routing = self._explain_proposed(case, center, chosen_by_patient, len(codes))
        repo.add(referral)
        await self._offer(uow, case, referral, center, rationale=why)

    def _explain_proposed(
        self, case: RoutingCase, center: Center, chosen_by_patient: bool, proposed: int
    ) -> dict[str, Any]:
        """The explanation of an offer to a proposed center, from the decision that proposed
        it (its rank, load and score then): the patient's first routing, nothing declined yet."""
        assert case.request is not None
        record = case.last_decision or {}
        ranked = record.get("ranked") or []
        mine = next(item for item in ranked if item["code"] == center.code)
        scores = [Score(**item["score"]) for item in ranked[:2] if item.get("score")]
        facts = OfferFacts(
            rank=int(mine["rank"]),
            eligible_count=int(record["eligible"]),
            considered_count=int(record["considered"]),
            load=int(mine["load"]),
            ahead_by=ahead_by(*scores) if len(scores) == 2 else None,
            proposed=proposed,
            chosen_by_patient=chosen_by_patient,
            opinion_round=case.opinion_round,
        )
        request = RoutingRequest.from_ready_event(CaseReadyForReferral.model_validate(case.request))
        return explain(request, center, facts).model_dump(mode="json")

    async def _offer(
        self,
        uow: UnitOfWork,
        case: RoutingCase,
        referral: Referral,
        center: Center,
        *,
        docs: Sequence[CaseDocument] | None = None,
        rationale: str | None = None,
        resumed: UUID | None = None,
        ready: CaseReadyForReferral | None = None,
        webhook: bool | None = None,
        repo: RoutingRepository | None = None,
    ) -> None:
        """(Re-)offer `referral` to its center: deadline, the two events, the webhook delivery.
        `resumed`: the answered request that gives the offer back to the same center (a
        `referral.resumed` instead of a new `referral.requested`); `ready`: the case's request
        validated and `webhook`: whether the center has a webhook, if the caller knows them;
        `repo`: what it reads and writes through (default: the unit of work's)."""
        assert case.request is not None
        if ready is None:
            ready = CaseReadyForReferral.model_validate(case.request)
        if repo is None:
            repo = self.repo(uow)
        if docs is None:
            docs = await repo.documents(ready.document_ids)
        now = self.clock()
        deadline = self.limits.deadline_override or timedelta(hours=center.answer_deadline_hours)
        referral.status = "offered"
        referral.offered_at = now
        referral.answer_due_at = now + deadline
        case.status = "offered"
        case.updated_at = now
        rationale = rationale or str(referral.decision.get("rationale") or "Offered again.")
        told: CloudEvent[EventData]
        if resumed is not None:
            told = new_event(
                ReferralResumed(
                    case_id=case.case_id,
                    referral_id=referral.id,
                    center_code=center.code,
                    request_id=resumed,
                    status="offered",
                    answer_due_at=referral.answer_due_at,
                )
            )
        else:
            told = new_event(
                ReferralRequested(
                    case_id=case.case_id,
                    referral_id=referral.id,
                    center_code=center.code,
                    center_country=center.country,
                    center_name=center.name,
                    attempt=referral.attempt,
                    answer_due_at=referral.answer_due_at,
                    rationale=rationale[:1000],
                )
            )
            _count(uow, center.code, "offered")
            if referral.attempt == 1:
                waited = (now - case.created_at).total_seconds()
                uow.after_commit(lambda: TIME_TO_FIRST_OFFER.labels(service_name()).observe(waited))
        offer: CloudEvent[EventData] = new_event(
            ReferralOffered(
                case_id=case.case_id,
                referral_id=referral.id,
                center_code=center.code,
                # The patient's questions are their own words: a center reads them through the
                # authenticated partner API, never from a Kafka topic.
                clinical=ready.clinical.model_copy(update={"questions": []}),
                documents=[_offered(referral.id, d) for d in docs],
                answer_due_at=referral.answer_due_at,
                routing=referral.routing,
            )
        )
        referral.offer = offer.model_dump(mode="json")
        # Both events in one outbox statement, in this order (one round trip, not two).
        await _publish(uow, repo, [told, offer])
        await _queue_webhook(repo, offer, referral, known=webhook)

    async def _center_states(
        self, repo: RoutingRepository, versions: list[CenterVersion] | None = None
    ) -> tuple[list[CenterState], frozenset[str]]:
        """Every center with its load, and the codes of those with a webhook, in one statement
        while no center changed: a center's profile is read and validated again only when its
        row did (`_centers`). `versions`: the centers' versions, if the caller read them."""
        if versions is None:
            versions = await repo.center_versions(self.clock() - LOAD_WINDOW)
        changed = [
            v.code
            for v in versions
            if (cached := self._centers.get(v.code)) is None
            or cached[0] != (v.updated_at, v.active)
        ]
        if changed:
            for row in await repo.center_rows(changed):
                self._center(row)
        states = [
            CenterState(center=self._centers[v.code][1], load=v.load)
            for v in versions
            if v.code in self._centers  # a center removed since its version was read
        ]
        return states, frozenset(v.code for v in versions if v.webhook)

    async def _center_of(self, repo: PartnersRepository, code: str) -> Center:
        row = await repo.center_row(code)
        assert row is not None, f"center {code} is not in the registry"
        return center_of(row)

    def _center(self, row: CenterRow) -> Center:
        """The center of a row, validated once per version of the row (its `updated_at`, and
        whether it is active)."""
        version = (row.updated_at, row.active)
        cached = self._centers.get(row.code)
        if cached is None or cached[0] != version:
            cached = (version, center_of(row))
            self._centers[row.code] = cached
        return cached[1]


def center_of(row: CenterRow) -> Center:
    """The registry entry of a row; `active` is the row's, which ops change with pause/resume."""
    return Center.model_validate({**row.profile, "status": "active" if row.active else "paused"})


@dataclass(frozen=True)
class Concordance:
    """How often second opinions changed the diagnosis or the plan (the published figures are
    about 15 % and 17 %)."""

    center_code: str | None
    opinions: int
    with_outcome: int
    diagnosis_changed: int
    plan_changed: int

    @property
    def diagnosis_changed_share(self) -> float | None:
        return self.diagnosis_changed / self.with_outcome if self.with_outcome else None

    @property
    def plan_changed_share(self) -> float | None:
        return self.plan_changed / self.with_outcome if self.with_outcome else None

    @classmethod
    def of(cls, code: str | None, outcomes: list[dict[str, Any] | None]) -> Concordance:
        known = [o for o in outcomes if o]
        return cls(
            center_code=code,
            opinions=len(outcomes),
            with_outcome=len(known),
            diagnosis_changed=sum(o.get("diagnosis") == "changed" for o in known),
            plan_changed=sum(o.get("treatment") == "alternative_proposed" for o in known),
        )


class NotOnReferral(Exception):
    """No such item (a follow-up question, a shipment) on this referral; `what` names it."""

    what = "item"

    def __str__(self) -> str:
        return f"There is no {self.what} {self.args[0]} on this referral."


class QuestionNotFound(NotOnReferral):
    what = "follow-up question"


class ShipmentNotFound(NotOnReferral):
    what = "shipment"


def _ended_before(earlier: Sequence[Referral], status: str) -> int:
    """How many centers offered the case for this opinion ended their referral so (`declined`,
    `expired`); for a further opinion, those offered after the last opinion given."""
    given = [r.offered_at for r in earlier if r.status == "completed"]
    since = max(given) if given else None
    return sum(r.status == status and (since is None or r.offered_at > since) for r in earlier)


def _offered(referral_id: UUID, doc: CaseDocument) -> OfferedDocument:
    return OfferedDocument(
        document_id=doc.document_id,
        kind=doc.kind,
        media_type=doc.media_type,
        fetch_via=document_fetch_path(referral_id, doc.document_id),
    )


def _count(uow: UnitOfWork, center: str, event: str, *, answered: Referral | None = None) -> None:
    """Count a referral's step at `center` once the transaction commits; an answer (accepted,
    declined) also observes how long the center took since the offer."""
    uow.after_commit(CENTER_REFERRALS.labels(service_name(), center, event).inc)
    if answered is not None and answered.answered_at is not None:
        took = (answered.answered_at - answered.offered_at).total_seconds()
        uow.after_commit(
            lambda: CENTER_ANSWER_TIME.labels(service_name(), center, event).observe(took)
        )


async def _publish(
    uow: UnitOfWork, repo: RoutingRepository, events: list[CloudEvent[EventData]]
) -> None:
    """Put `events` in the outbox, in this order: through the unit of work's, or, when `repo`
    writes through asyncpg itself, with the changes they announce, in `repo`'s `save`."""
    if isinstance(repo, NativeRoutingRepository):
        repo.publish(events)
    else:
        await uow.outbox.add_all(events)


async def _queue_webhook(
    repo: RoutingRepository,
    event: CloudEvent[Any],
    referral: Referral,
    *,
    known: bool | None = None,
) -> None:
    """POST `event` to the center's webhook too, if it has one (the scheduler delivers it).
    `known`: whether it has, read in this transaction already (None: ask)."""
    if known is None:
        known = await repo.webhook(referral.center_code) is not None
    if known:
        repo.add(
            new_row(
                WebhookDelivery,
                event_id=event.id,
                center_code=referral.center_code,
                referral_id=referral.id,
                payload=event.model_dump(mode="json"),
            )
        )


def _words(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    return f"{seconds} seconds"
