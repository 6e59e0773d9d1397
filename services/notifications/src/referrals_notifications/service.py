"""What each event means for the patient: which notification, with which facts.

The consumer turns an event into delivery rows (one per audience: the patient, and the partner
front end by webhook) in the same transaction as the event's inbox row: a redelivered event
finds its inbox row and writes nothing, and the unique `(trigger_event_id, audience)` makes a
second row impossible anyway. The sender (`sender.py`) takes the rows from there. The use case
runs in the unit of work the consumer gives, reaches the tables through
`NotificationsRepository`, and does not commit.

Only submitted cases are notified: before submission the patient is in the front end, which
shows every answer itself, and notifications has no contact yet (intake shares it, sealed, at
submission). Facts are what the message needs and nothing more: codes, a center's name, dates.
A center's request keeps its words (the patient must know what to send), and notifications keeps
which parts of the preparation checklist it asked for. The patient's own answer is told by counts
only (no words, document names or tracking numbers travel into a message), and the checklist as
sent only when its request asked for it and the answer completes it; an answered follow-up
question by the center and the day (its words are read with the case).
Centers proposed for the patient's choice travel by name, country, usual time and price: never
their codes or routing's reasons for proposing them (those may name the disease).

A further opinion travels by whether (and how many) earlier opinions go with it, as the patient
chose: never the patient's reason or the documents' ids. A further opinion no center can give
(`case.unroutable` with an `opinion_round`) is its own notification, `further_opinion_unavailable`:
the case keeps its opinion, so the patient must not read `case_unroutable`'s "no center can take
your request", and a front end must not see the case as unroutable.

The consultation meeting travels by its times, the center's name (or none: never its code), how
to join (the center's video link or address), the center's time zone and language, and the
center's own words where it gave some; the patient's time zone, when the event knows it, becomes
the message's `time_zone`. The meeting's id and calendar sequence are facts for the calendar file
only. A meeting the center records as held needs no message; a missed one does.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

from opentelemetry import propagate

from referrals_common.contracts import (
    CaseContactShared,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CaseSubmitted,
    CaseUnroutable,
    CaseWithdrawn,
    CentersProposed,
    CloudEvent,
    DocumentRejected,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
    ExpiryReason,
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    MeetingEnd,
    MeetingPlace,
    MeetingSlot,
    OpinionOutcome,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralMeetingReminder,
    ReferralOpinionDelivered,
    ReferralRequested,
    ReferralShipmentReceived,
)
from referrals_common.contracts.information import PREPARATION_ITEMS
from referrals_common.contracts.intake import Preparation
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.db import UnitOfWork
from referrals_notifications.models import FrontEndWebhook, OpsAlert, utcnow
from referrals_notifications.repository import (
    NotificationsRepository,
    PlannedDelivery,
    Remembered,
    RepositoryFactory,
)

log = logging.getLogger(__name__)

PATIENT = "patient"
FRONT_END = "front_end"
OPS = "ops"
AUDIENCES = (PATIENT, FRONT_END)
PING = "ping"
"""The trigger of a front end's test delivery (not a notification: no notification event)."""
# Triggers that also happen to drafts, which are not notified; the others exist only after
# submission (their event may still be consumed before `case.submitted`, on another topic).
DRAFT_TOO = frozenset({T.DOCUMENT_REJECTED, T.CASE_WITHDRAWN})


class Notifications:
    def __init__(
        self,
        front_ends_with_webhooks: frozenset[str] = frozenset(),
        repository: RepositoryFactory = NotificationsRepository,
    ) -> None:
        self.front_ends_with_webhooks = front_ends_with_webhooks
        """Front ends that take webhooks: only their cases get a front-end delivery row."""
        self.repository = repository
        """Makes the use case's repository on the unit of work."""

    async def on_event(self, uow: UnitOfWork, event: CloudEvent[Any]) -> None:
        """Plan what `event` means for the patient, the front end and the operators (delivery
        rows, ops alerts) and keep what later messages need to know from it, in the caller's
        unit of work (the consumer's inbox transaction; nothing is sent or committed here)."""
        repo = self.repository(uow)
        data = event.data
        match data:
            case FrontEndWebhookChanged():
                await _subscription_changed(repo, data)
            case FrontEndWebhookPingRequested():
                await _ping(repo, event)
            case CaseContactShared():
                await repo.remember_contact(
                    data.case_id,
                    sealed_contact=data.sealed_contact,
                    locale=data.locale,
                    front_end=data.front_end,
                )
            case CaseSubmitted():
                # The case's row is written by the delivery's statement (one round trip).
                await self._notify(
                    repo,
                    event,
                    T.CASE_SUBMITTED,
                    repo.case_row(data.case_id, locale=data.locale, submitted_at=data.submitted_at),
                    submitted_at=data.submitted_at,
                )
            case DocumentStored():
                await repo.remember_document(
                    data.document_id, case_id=data.case_id, kind=str(data.kind)
                )
            case DocumentRejected():
                await self._notify(repo, event, T.DOCUMENT_REJECTED, reason=str(data.reason))
            case DocumentTranslationRequired():
                await self._notify(
                    repo,
                    event,
                    T.TRANSLATION_REQUIRED,
                    document_kind=await _kind(repo, data.document_id),
                    detected_language=data.detected_language,
                    acceptable_languages=list(data.acceptable_languages),
                )
            case DocumentUnreadable():
                await self._notify(
                    repo,
                    event,
                    T.DOCUMENT_UNREADABLE,
                    document_kind=await _kind(repo, data.document_id),
                    reason=str(data.reason),
                )
            case ReferralRequested():
                await self._notify(
                    repo,
                    event,
                    T.REFERRAL_REQUESTED,
                    repo.referral_row(
                        data.referral_id,
                        case_id=data.case_id,
                        center_code=data.center_code,
                        center_name=data.center_name or data.center_code,
                        center_country=data.center_country,
                    ),
                    center_name=data.center_name or data.center_code,
                    center_country=data.center_country,
                    answer_due_at=data.answer_due_at,
                )
            case ReferralAccepted():
                await self._notify(
                    repo,
                    event,
                    T.REFERRAL_ACCEPTED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    expected_opinion_at=data.expected_opinion_at,
                )
            case ReferralExpired(reason=ExpiryReason.INFORMATION_NOT_PROVIDED):
                await self._notify(
                    repo,
                    event,
                    T.INFO_EXPIRED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                )
            case ReferralDeclined() | ReferralExpired():
                await self._notify(
                    repo,
                    event,
                    T.REFERRAL_DECLINED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    outcome="declined" if isinstance(data, ReferralDeclined) else "expired",
                )
            case ReferralInfoRequested():
                checklist = sorted(str(i.kind) for i in data.items if i.kind in PREPARATION_ITEMS)
                if data.request_id is not None and checklist:
                    await repo.remember_information_request(
                        data.request_id,
                        case_id=data.case_id,
                        checklist_items=checklist,
                    )
                await self._notify(
                    repo,
                    event,
                    T.INFO_REQUESTED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    message=data.message,
                    # One line per item: the center's words, whitespace collapsed.
                    items=[
                        {"kind": str(item.kind), "detail": " ".join(item.detail.split())}
                        for item in data.items
                    ],
                    due_at=data.due_at,
                )
            case ReferralInfoReminder():
                await self._notify(
                    repo,
                    event,
                    T.INFO_REMINDER,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    reminder=str(data.reminder),
                    due_at=data.due_at,
                )
            case CaseInformationProvided():
                referral = await repo.referral(data.referral_id)
                request = await repo.information_request(data.request_id)
                await self._notify(
                    repo,
                    event,
                    T.INFORMATION_SENT,
                    center_name=referral.center_name if referral else None,
                    new_documents=len(data.new_document_ids),
                    shipments=len(data.shipments),
                    written_answer=data.answer is not None,
                    preparation=_checklist_sent(
                        request.checklist_items if request else [], data.preparation
                    ),
                )
            case ReferralShipmentReceived():
                await self._notify(
                    repo,
                    event,
                    T.SHIPMENT_RECEIVED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    received_at=data.received_at,
                )
            case ReferralOpinionDelivered():
                await self._notify(
                    repo,
                    event,
                    T.OPINION_DELIVERED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    **_opinion_verdicts(data.outcome),
                )
            case ReferralFollowUpAnswered():
                # The center, the day and the number of documents only: the answer's words and
                # documents are read with the case.
                await self._notify(
                    repo,
                    event,
                    T.FOLLOW_UP_ANSWERED,
                    center_name=await _center(repo, data.referral_id, data.center_code),
                    answered_at=data.answered_at,
                    documents=len(data.document_ids),
                )
            case CentersProposed():
                await self._notify(
                    repo,
                    event,
                    T.CENTERS_PROPOSED,
                    proposals=[
                        {
                            "center_name": proposal.center_name,
                            "center_country": proposal.center_country,
                            "turnaround_days": proposal.turnaround_days,
                            "price": proposal.price.model_dump() if proposal.price else None,
                        }
                        for proposal in sorted(data.proposals, key=lambda p: p.rank)
                    ],
                    choose_by=data.choose_by,
                )
            case ReferralMeetingOffered():
                await self._notify(
                    repo,
                    event,
                    T.MEETING_OFFERED,
                    time_zone=data.patient_time_zone,
                    center_name=await _center_name(repo, data.referral_id),
                    **_place(data.place, with_link=False),
                    slots=[_times(slot) for slot in data.slots],
                    rescheduled=data.rescheduled,
                    note=data.note,
                    **(_released(data, event.time) if data.released_slot else {}),
                )
            case ReferralMeetingBooked():
                await self._notify(
                    repo,
                    event,
                    T.MEETING_BOOKED,
                    time_zone=data.patient_time_zone,
                    center_name=await _center_name(repo, data.referral_id),
                    **_place(data.place, with_link=True),
                    **_times(data.slot),
                    rebooked=data.rebooked,
                    meeting_id=str(data.meeting_id),
                    sequence=data.sequence,
                    changed_at=event.time,
                )
            case ReferralMeetingCancelled():
                await self._notify(
                    repo,
                    event,
                    T.MEETING_CANCELLED,
                    time_zone=data.patient_time_zone,
                    center_name=await _center_name(repo, data.referral_id),
                    cancelled_by=str(data.cancelled_by),
                    patient_reason=str(data.patient_reason) if data.patient_reason else None,
                    center_reason=data.center_reason,
                    **(_times(data.slot) if data.slot else {}),
                    meeting_id=str(data.meeting_id),
                    sequence=data.sequence,
                    changed_at=event.time,
                )
            case ReferralMeetingReminder():
                await self._notify(
                    repo,
                    event,
                    T.MEETING_REMINDER,
                    time_zone=data.patient_time_zone,
                    center_name=await _center_name(repo, data.referral_id),
                    **_place(data.place, with_link=True),
                    **_times(data.slot),
                    before=str(data.before),
                )
            case ReferralMeetingEnded(outcome=MeetingEnd.MISSED):
                await self._notify(
                    repo,
                    event,
                    T.MEETING_MISSED,
                    **({"time_zone": data.patient_time_zone} if data.patient_time_zone else {}),
                    center_name=await _center_name(repo, data.referral_id),
                    **_times(data.slot),
                )
            case ReferralMeetingEnded():
                log.info("meeting %s was held: nothing to tell the patient", data.meeting_id)
            case CaseFurtherOpinionRequested():
                await self._notify(
                    repo,
                    event,
                    T.FURTHER_OPINION_REQUESTED,
                    share_earlier_opinions=data.share_earlier_opinions,
                    shared_opinions=len(data.shared_document_ids),
                )
            case CaseUnroutable(opinion_round=int(opinion_round)):
                # A further opinion that cannot be had: the case keeps the opinion it has, so
                # the patient must not read that no center takes the case.
                repo.add_alert(
                    OpsAlert(
                        case_id=data.case_id,
                        kind="further_opinion_unavailable",
                        detail=f"routing found no center for opinion {opinion_round} "
                        f"({data.reason}); centers tried: "
                        + (", ".join(data.centers_tried) or "none"),
                    )
                )
                log.warning(
                    "case %s: no center for opinion %d; ops alert recorded",
                    data.case_id,
                    opinion_round,
                )
                await self._notify(
                    repo,
                    event,
                    T.FURTHER_OPINION_UNAVAILABLE,
                    reason=str(data.reason),
                )
                await self._add(
                    repo,
                    event,
                    T.FURTHER_OPINION_UNAVAILABLE,
                    OPS,
                    {
                        "reason": str(data.reason),
                        "centers_tried": list(data.centers_tried),
                        "opinion_round": opinion_round,
                    },
                )
            case CaseUnroutable():
                repo.add_alert(
                    OpsAlert(
                        case_id=data.case_id,
                        kind="case_unroutable",
                        detail=f"routing gave up ({data.reason}); centers tried: "
                        + (", ".join(data.centers_tried) or "none"),
                    )
                )
                log.warning("case %s is unroutable: ops alert recorded", data.case_id)
                await self._notify(repo, event, T.CASE_UNROUTABLE, reason=str(data.reason))
                await self._add(
                    repo,
                    event,
                    T.CASE_UNROUTABLE,
                    OPS,
                    {"reason": str(data.reason), "centers_tried": list(data.centers_tried)},
                )
            case CaseWithdrawn():
                await self._notify(
                    repo,
                    event,
                    T.CASE_WITHDRAWN,
                    reason=str(data.reason) if data.reason else None,
                )

    async def _notify(
        self,
        repo: NotificationsRepository,
        event: CloudEvent[Any],
        trigger: T,
        remembering: Remembered | None = None,
        /,
        **facts: Any,
    ) -> None:
        """The patient's delivery, and the front end's if it takes webhooks; and the row
        `remembering` gives (what the event says), whether notified or not."""
        case_id: UUID = event.data.case_id
        if trigger in DRAFT_TOO and await repo.case_seen(case_id) is None:
            log.info("%s for case %s before submission: not notified", trigger, case_id)
            if remembering is not None:
                await repo.remember(remembering)
            return
        # The patient's row, whether the front end takes webhooks, and the event's own row, in
        # one statement.
        front_end, subscribed = await repo.add_delivery_and_audience(
            _planned_delivery(event, trigger, PATIENT, facts), remembering
        )
        if front_end is None:
            # Unknown front end yet (the contact is on its way): the sender decides.
            takes = bool(self.front_ends_with_webhooks) or subscribed
        else:
            takes = front_end in self.front_ends_with_webhooks or subscribed
        if takes:
            await self._add(repo, event, trigger, FRONT_END, facts)

    async def _add(
        self,
        repo: NotificationsRepository,
        event: CloudEvent[Any],
        trigger: T,
        audience: str,
        facts: dict[str, Any],
    ) -> None:
        await repo.add_delivery(_planned_delivery(event, trigger, audience, facts))


def _planned_delivery(
    event: CloudEvent[Any], trigger: T, audience: str, facts: dict[str, Any]
) -> PlannedDelivery:
    """The delivery of `event`'s notification to `audience`, due now."""
    return _pending(
        id=_delivery_id(event.id, audience),
        case_id=event.data.case_id,
        trigger=str(trigger),
        trigger_event_id=event.id,
        audience=audience,
        facts=_jsonable(facts),
        occurred_at=event.time,
    )


async def _subscription_changed(
    repo: NotificationsRepository, data: FrontEndWebhookChanged
) -> None:
    """Apply a front end's subscription change over an older one only (a replayed or late
    event changes nothing); a change without a secret keeps the one held."""
    row = await repo.front_end_webhook(data.front_end, for_update=True)
    if row is not None and row.version >= data.version:
        log.info("front end %s: subscription version %s is not newer", data.front_end, data.version)
        return
    if row is None:
        row = FrontEndWebhook(front_end=data.front_end, version=data.version)
        repo.add_front_end_webhook(row)
    row.version = data.version
    row.url = str(data.url) if data.url is not None else None
    if data.url is None:
        row.sealed_secret = None
    elif data.sealed_secret is not None:
        row.sealed_secret = data.sealed_secret
    row.updated_at = utcnow()


async def _ping(repo: NotificationsRepository, event: CloudEvent[Any]) -> None:
    """A test delivery to the front end's endpoint, sent by the sender like any update."""
    data: FrontEndWebhookPingRequested = event.data
    await repo.add_ping(
        _pending(
            id=data.ping_id,
            case_id=data.case_id,
            trigger=PING,
            trigger_event_id=event.id,
            audience=FRONT_END,
            facts={"front_end": data.front_end},
            occurred_at=event.time,
        )
    )


def _pending(
    *,
    id: UUID,
    case_id: UUID,
    trigger: str,
    trigger_event_id: UUID,
    audience: str,
    facts: dict[str, Any],
    occurred_at: datetime,
) -> PlannedDelivery:
    """A delivery due now, continuing the trace of the event being processed."""
    now = utcnow()
    return PlannedDelivery(
        id=id,
        case_id=case_id,
        trigger=trigger,
        trigger_event_id=trigger_event_id,
        audience=audience,
        facts=facts,
        occurred_at=occurred_at,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        trace_context=_trace_context(),
    )


def _trace_context() -> dict[str, str]:
    """The W3C context of the event's processing: the sender continues this trace, so a case
    step's e-mail belongs to the step's trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _delivery_id(event_id: UUID, audience: str) -> UUID:
    """Stable per (event, audience): the id receivers see, the same on every retry."""
    import uuid

    return uuid.uuid5(event_id, audience)


def _jsonable(facts: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in facts.items()}


async def _kind(repo: NotificationsRepository, document_id: UUID) -> str | None:
    doc = await repo.document(document_id)
    return doc.kind if doc else None


async def _center(repo: NotificationsRepository, referral_id: UUID, fallback: str) -> str:
    referral = await repo.referral(referral_id)
    return referral.center_name if referral else fallback


async def _center_name(repo: NotificationsRepository, referral_id: UUID) -> str | None:
    """The center's display name, if notifications saw its referral; never its code."""
    referral = await repo.referral(referral_id)
    return referral.center_name if referral else None


def _checklist_sent(asked: list[str], preparation: Preparation | None) -> bool:
    """Whether this answer sent the preparation checklist: only when its request asked for parts
    of it and the checklist has every part asked (as intake counts it). The answer carries the
    checklist as it is now whatever the request asked, so a checklist in it proves nothing; a
    request not seen asked for none of it, as far as the message can tell."""
    if not asked or preparation is None:
        return False
    return all(getattr(preparation, part, None) for part in asked)


def _place(place: MeetingPlace, *, with_link: bool) -> dict[str, Any]:
    """How the patient meets the doctors. The link to join is for the booked meeting: an offer
    says only that it is a video call."""
    facts: dict[str, Any] = {
        "mode": str(place.mode),
        "center_address": place.center_address,
        "center_time_zone": place.time_zone,
        "meeting_language": place.language,
    }
    if with_link:
        facts["join_url"] = str(place.join_url) if place.join_url else None
    return facts


def _released(data: ReferralMeetingOffered, changed_at: datetime) -> dict[str, Any]:
    """New times that replace a booked one: the booked time, and what withdraws its calendar
    entry (the meeting's id and the new sequence)."""
    assert data.released_slot is not None
    return {
        "released_starts_at": data.released_slot.starts_at.isoformat(),
        "released_ends_at": data.released_slot.ends_at.isoformat(),
        "meeting_id": str(data.meeting_id),
        "sequence": data.sequence,
        "changed_at": changed_at,
    }


def _times(slot: MeetingSlot) -> dict[str, str]:
    """A slot's start and end (ISO 8601, as JSON keeps them); never the slot's id."""
    return {"starts_at": slot.starts_at.isoformat(), "ends_at": slot.ends_at.isoformat()}


def _opinion_verdicts(outcome: OpinionOutcome | None) -> dict[str, Any]:
    """What the opinion concluded, as verdicts and counts: never the new diagnosis code, the stage,
    the tests' names or the trials' details (those are read in the opinion itself). Nothing for an
    opinion without a recorded outcome: its message is the plain "the opinion is ready"."""
    if outcome is None:
        return {}
    return {
        "diagnosis": str(outcome.diagnosis),
        "treatment": str(outcome.treatment),
        "further_tests": len(outcome.additional_tests),
        "clinical_trials": outcome.clinical_trials,
    }
