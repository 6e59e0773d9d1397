"""The consultation meeting at which a center explains its opinion (seeds 000, 001).

A center that accepted a referral offers times (`offer`); the patient picks one through the front
end, which intake turns into `case.meeting_slot_chosen` (`on_slot_chosen`); the patient may move
to another offered time or cancel (`on_patient_cancelled`); the center may offer new times
(`reschedule`, which releases a booked time) or cancel (`cancel`); the scheduler reminds the
patient a day and an hour before (`remind`); after the time, the center records whether it took
place (`record_end`).

Every change happens under the case's row lock (as every path of partners does) and the
meeting's own row lock, and writes its events in the caller's unit of work. The patient's
choices arrive as events: one that a center's change crossed (the meeting cancelled, the slot
replaced, the time passed) is dropped, and the meeting's current state, already told to the
patient, stands. `sequence` is the calendar SEQUENCE of the patient's calendar entry: it grows
with every change of the booked time.

A retried center request with the same `Idempotency-Key` changes nothing: the meeting's id (and
a re-schedule's slot ids) are derived from the key, so the replay finds its own result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from opentelemetry import trace

from referrals_common.contracts import (
    CaseMeetingCancelled,
    CaseMeetingSlotChosen,
    CloudEvent,
    MeetingPlace,
    MeetingSlot,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingChanged,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralMeetingReminder,
    new_event,
)
from referrals_common.contracts.meetings import (
    MEETING_MAX_LENGTH,
    MEETING_MIN_LENGTH,
    REMINDERS_BEFORE,
    CancelledBy,
    MeetingStatus,
    ReminderBefore,
    check_slots,
)
from referrals_common.contracts.partners import MeetingChange, MeetingEnd
from referrals_common.db import UnitOfWork
from referrals_common.telemetry import case_context
from referrals_partners.models import Meeting, Referral
from referrals_partners.repository import OPEN_MEETINGS
from referrals_partners.service import (
    IllegalAction,
    InvalidAnswer,
    NotOnReferral,
    Partners,
    _queue_webhook,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_partners")

OPEN = OPEN_MEETINGS
_KEYS = uuid5(NAMESPACE_URL, "urn:referrals:meetings")


class MeetingNotFound(NotOnReferral):
    what = "meeting"


@dataclass(frozen=True)
class SlotTime:
    """A time a center offers, before it has an id."""

    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class MeetingLimits:
    min_notice: timedelta = timedelta(hours=2)
    """The earliest an offered time may start, from now: the patient needs time to see it."""
    max_ahead: timedelta = timedelta(days=90)
    reminders_before: tuple[timedelta, ...] = REMINDERS_BEFORE


class Meetings:
    def __init__(self, partners: Partners, limits: MeetingLimits | None = None) -> None:
        self.partners = partners
        self.limits = limits or MeetingLimits()

    @property
    def clock(self) -> Any:
        return self.partners.clock

    # ------------------------------------------------------------ center actions
    async def offer(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        place: MeetingPlace,
        times: Sequence[SlotTime],
        note: str | None = None,
        key: str | None = None,
    ) -> Referral:
        """Offer the patient times for a meeting; one open meeting per referral."""
        referral, _ = await self.partners.referral_for_center(uow, center, referral_id, lock=True)
        meeting_id = uuid5(_KEYS, f"{referral.id}/{key}") if key else uuid4()
        repo = self.partners.repo(uow)
        if key and await repo.meeting(meeting_id) is not None:
            return referral  # the same request again: its meeting exists
        self._require_accepted(referral)
        if await repo.open_meeting(referral.id) is not None:
            raise IllegalAction(
                "This referral has a meeting offered or booked: offer new times for it "
                "(…/meetings/{meeting_id}/slots) or cancel it first.",
                "meeting_open",
                referral.case_id,
            )
        slots = self._slots(times, key, "new")
        meeting = Meeting(
            id=meeting_id,
            referral_id=referral.id,
            case_id=referral.case_id,
            center_code=center,
            place=place.model_dump(mode="json"),
            slots=[s.model_dump(mode="json") for s in slots],
            note=note,
            created_at=self.clock(),
            updated_at=self.clock(),
        )
        repo.add(meeting)
        await uow.outbox.add(
            new_event(
                ReferralMeetingOffered(
                    **_about(meeting),
                    place=place,
                    slots=slots,
                    note=note,
                )
            )
        )
        return referral

    async def reschedule(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        meeting_id: UUID,
        times: Sequence[SlotTime],
        key: str | None = None,
    ) -> Referral:
        """Replace the offered times with new ones; a booked time is released."""
        referral, _ = await self.partners.referral_for_center(uow, center, referral_id, lock=True)
        meeting = await self._meeting(uow, referral, meeting_id)
        slots = self._slots(times, key, str(meeting.id))
        if key and [s["slot_id"] for s in meeting.slots] == [str(s.slot_id) for s in slots]:
            return referral  # the same request again
        self._require_open(meeting, referral, "offer new times for")
        released = self._booked_slot(meeting)
        meeting.slots = [s.model_dump(mode="json") for s in slots]
        meeting.status = MeetingStatus.OFFERED.value
        meeting.slot_id = meeting.starts_at = meeting.ends_at = None
        meeting.reminders_sent = 0
        if released is not None:
            meeting.sequence += 1
        meeting.updated_at = self.clock()
        await uow.outbox.add(
            new_event(
                ReferralMeetingOffered(
                    **_about(meeting),
                    place=MeetingPlace.model_validate(meeting.place),
                    slots=slots,
                    note=meeting.note,
                    rescheduled=True,
                    released_slot=released,
                    patient_time_zone=meeting.patient_time_zone,
                    sequence=meeting.sequence,
                )
            )
        )
        return referral

    async def cancel(
        self, uow: UnitOfWork, center: str, referral_id: UUID, meeting_id: UUID, reason: str
    ) -> Referral:
        """The center cancels the meeting (again changes nothing)."""
        referral, _ = await self.partners.referral_for_center(uow, center, referral_id, lock=True)
        meeting = await self._meeting(uow, referral, meeting_id)
        if meeting.status == MeetingStatus.CANCELLED and meeting.cancelled_by == CancelledBy.CENTER:
            return referral
        self._require_open(meeting, referral, "cancel")
        await self._cancelled(uow, meeting, CancelledBy.CENTER, center_reason=reason)
        return referral

    async def record_end(
        self,
        uow: UnitOfWork,
        center: str,
        referral_id: UUID,
        meeting_id: UUID,
        outcome: MeetingEnd,
    ) -> Referral:
        """After the booked time: the meeting took place, or the patient missed it (once)."""
        referral, _ = await self.partners.referral_for_center(uow, center, referral_id, lock=True)
        meeting = await self._meeting(uow, referral, meeting_id)
        if meeting.status == outcome.value:
            return referral  # the same answer again
        if meeting.status != MeetingStatus.BOOKED:
            raise IllegalAction(
                f"This meeting is {meeting.status}: only a booked meeting can be recorded as "
                "held or missed.",
                meeting.status,
                referral.case_id,
            )
        slot = self._booked_slot(meeting)
        assert slot is not None
        if slot.starts_at > self.clock():
            raise IllegalAction(
                f"This meeting starts at {slot.starts_at.isoformat()}: it can be recorded as "
                "held or missed once it has started.",
                "not_started",
                referral.case_id,
            )
        meeting.status = outcome.value
        meeting.updated_at = self.clock()
        await uow.outbox.add(
            new_event(
                ReferralMeetingEnded(
                    **_about(meeting),
                    outcome=outcome,
                    slot=slot,
                    patient_time_zone=meeting.patient_time_zone,
                )
            )
        )
        return referral

    # ----------------------------------------------------------- patient choices
    async def on_slot_chosen(self, uow: UnitOfWork, chosen: CaseMeetingSlotChosen) -> None:
        repo = self.partners.repo(uow)
        await repo.lock_case(chosen.case_id)  # the case's lock, as on every path
        meeting = await self._patients_meeting(uow, chosen.case_id, chosen.meeting_id)
        if meeting is None:
            return
        slot = next(
            (
                MeetingSlot.model_validate(s)
                for s in meeting.slots
                if s["slot_id"] == str(chosen.slot_id)
            ),
            None,
        )
        now = self.clock()
        if slot is None or slot.starts_at <= now:
            log.info("meeting %s: the chosen slot is no longer offered; dropped", meeting.id)
            return
        if meeting.status == MeetingStatus.BOOKED and meeting.slot_id == slot.slot_id:
            return  # the same choice again
        rebooked = meeting.status == MeetingStatus.BOOKED
        if rebooked:
            meeting.sequence += 1
        meeting.status = MeetingStatus.BOOKED.value
        meeting.slot_id, meeting.starts_at, meeting.ends_at = (
            slot.slot_id,
            slot.starts_at,
            slot.ends_at,
        )
        meeting.patient_time_zone = chosen.time_zone
        # A reminder whose time has already passed is not sent late.
        meeting.reminders_sent = sum(
            1 for before in self.limits.reminders_before if slot.starts_at - before <= now
        )
        meeting.updated_at = now
        referral = await repo.referral(meeting.referral_id)
        assert referral is not None
        await uow.outbox.add(
            new_event(
                ReferralMeetingBooked(
                    **_about(meeting),
                    slot=slot,
                    place=MeetingPlace.model_validate(meeting.place),
                    patient_time_zone=chosen.time_zone,
                    sequence=meeting.sequence,
                    rebooked=rebooked,
                )
            )
        )
        await self._tell_center(uow, referral, meeting, MeetingChange.BOOKED, slot)

    async def on_patient_cancelled(self, uow: UnitOfWork, cancelled: CaseMeetingCancelled) -> None:
        repo = self.partners.repo(uow)
        await repo.lock_case(cancelled.case_id)
        meeting = await self._patients_meeting(uow, cancelled.case_id, cancelled.meeting_id)
        if meeting is None:
            return
        slot = self._booked_slot(meeting)
        if slot is not None and slot.starts_at <= self.clock():
            log.info("meeting %s has started: the patient's cancellation dropped", meeting.id)
            return
        await self._cancelled(uow, meeting, CancelledBy.PATIENT, patient_reason=cancelled.reason)
        referral = await repo.referral(meeting.referral_id)
        assert referral is not None
        await self._tell_center(
            uow, referral, meeting, MeetingChange.CANCELLED, slot, cancelled.reason
        )

    async def on_case_withdrawn(self, uow: UnitOfWork, case_id: UUID) -> None:
        """A withdrawn case has no meeting: open ones end quietly (the center learns of the
        withdrawal, and the patient is told nothing more but the withdrawal)."""
        await self.partners.repo(uow).end_open_meetings(
            case_id, status=MeetingStatus.CANCELLED.value, cancelled_by=CancelledBy.PATIENT.value
        )

    # -------------------------------------------------------------- the scheduler
    async def remind(self, uow: UnitOfWork, *, limit: int = 50) -> int:
        """Emit the reminders now due of booked meetings; returns how many. Rows are claimed with
        SKIP LOCKED, so several schedulers share the work."""
        now = self.clock()
        offsets = self.limits.reminders_before
        repo = self.partners.repo(uow)
        sent = 0
        for index, before in enumerate(offsets):
            for meeting in await repo.meetings_to_remind(index, now, before, limit):
                slot = self._booked_slot(meeting)
                assert slot is not None
                assert meeting.patient_time_zone is not None
                meeting.reminders_sent = index + 1
                # A step of the case's journey of its own, found by the case id like an expiry.
                with tracer.start_as_current_span(
                    "meeting remind", context=case_context(meeting.case_id)
                ) as span:
                    span.set_attribute("referrals.center_code", meeting.center_code)
                    await uow.outbox.add(
                        new_event(
                            ReferralMeetingReminder(
                                **_about(meeting),
                                before=(
                                    ReminderBefore.HOUR_BEFORE
                                    if index == len(offsets) - 1
                                    else ReminderBefore.DAY_BEFORE
                                ),
                                slot=slot,
                                place=MeetingPlace.model_validate(meeting.place),
                                patient_time_zone=meeting.patient_time_zone,
                            )
                        )
                    )
                sent += 1
        return sent

    # ------------------------------------------------------------------ helpers
    def _require_accepted(self, referral: Referral) -> None:
        if referral.status not in ("accepted", "info_requested", "completed") or (
            referral.expected_opinion_at is None
        ):
            raise IllegalAction(
                f"This referral is {referral.status}: a meeting is offered on a referral the "
                "center accepted.",
                referral.status,
                referral.case_id,
            )

    def _require_open(self, meeting: Meeting, referral: Referral, action: str) -> None:
        if meeting.status not in OPEN:
            raise IllegalAction(
                f"This meeting is {meeting.status}: it is not possible to {action} it.",
                meeting.status,
                referral.case_id,
            )

    def _slots(self, times: Sequence[SlotTime], key: str | None, scope: str) -> list[MeetingSlot]:
        now = self.clock()
        for i, t in enumerate(times):
            if t.starts_at < now + self.limits.min_notice:
                raise InvalidAnswer(
                    f"/slots/{i}/starts_at",
                    "A meeting time must start at least "
                    f"{int(self.limits.min_notice.total_seconds() // 3600)} hours from now.",
                )
            if t.starts_at > now + self.limits.max_ahead:
                raise InvalidAnswer(
                    f"/slots/{i}/starts_at",
                    f"A meeting time must start within {self.limits.max_ahead.days} days.",
                )
            if not MEETING_MIN_LENGTH <= t.ends_at - t.starts_at <= MEETING_MAX_LENGTH:
                raise InvalidAnswer(
                    f"/slots/{i}/ends_at", "A meeting lasts between 15 minutes and 3 hours."
                )
        slots = [
            MeetingSlot(
                slot_id=uuid5(_KEYS, f"{scope}/{key}/{i}") if key else uuid4(),
                starts_at=t.starts_at,
                ends_at=t.ends_at,
            )
            for i, t in enumerate(times)
        ]
        try:
            return check_slots(slots)
        except ValueError as exc:
            raise InvalidAnswer("/slots", f"{str(exc).capitalize()}.") from None

    @staticmethod
    def _booked_slot(meeting: Meeting) -> MeetingSlot | None:
        if meeting.slot_id is None or meeting.starts_at is None or meeting.ends_at is None:
            return None
        return MeetingSlot(
            slot_id=meeting.slot_id, starts_at=meeting.starts_at, ends_at=meeting.ends_at
        )

    async def _meeting(self, uow: UnitOfWork, referral: Referral, meeting_id: UUID) -> Meeting:
        meeting = await self.partners.repo(uow).meeting(meeting_id, lock=True)
        if meeting is None or meeting.referral_id != referral.id:
            raise MeetingNotFound(meeting_id)
        return meeting

    async def _patients_meeting(
        self, uow: UnitOfWork, case_id: UUID, meeting_id: UUID
    ) -> Meeting | None:
        meeting = await self.partners.repo(uow).meeting(meeting_id, lock=True)
        if meeting is None or meeting.case_id != case_id:
            log.warning("meeting %s is not a meeting of case %s; ignored", meeting_id, case_id)
            return None
        if meeting.status not in OPEN:
            log.info(
                "meeting %s is %s; the patient's change is dropped", meeting.id, meeting.status
            )
            return None
        return meeting

    async def _cancelled(
        self,
        uow: UnitOfWork,
        meeting: Meeting,
        by: CancelledBy,
        *,
        center_reason: str | None = None,
        patient_reason: Any = None,
    ) -> None:
        slot = self._booked_slot(meeting)
        meeting.status = MeetingStatus.CANCELLED.value
        meeting.cancelled_by = by.value
        meeting.cancel_reason = center_reason or (str(patient_reason) if patient_reason else None)
        meeting.sequence += 1
        meeting.updated_at = self.clock()
        await uow.outbox.add(
            new_event(
                ReferralMeetingCancelled(
                    **_about(meeting),
                    cancelled_by=by,
                    patient_reason=patient_reason,
                    center_reason=center_reason,
                    slot=slot,
                    patient_time_zone=meeting.patient_time_zone if slot else None,
                    sequence=meeting.sequence,
                )
            )
        )

    async def _tell_center(
        self,
        uow: UnitOfWork,
        referral: Referral,
        meeting: Meeting,
        change: MeetingChange,
        slot: MeetingSlot | None,
        reason: Any = None,
    ) -> None:
        told: CloudEvent[Any] = new_event(
            ReferralMeetingChanged(
                **_about(meeting),
                change=change,
                slot=slot,
                patient_reason=reason,
            )
        )
        await uow.outbox.add(told)
        await _queue_webhook(self.partners.repo(uow), told, referral)


def _about(meeting: Meeting) -> dict[str, Any]:
    """The fields every meeting event starts with: whose case, which referral and meeting."""
    return {
        "case_id": meeting.case_id,
        "referral_id": meeting.referral_id,
        "center_code": meeting.center_code,
        "meeting_id": meeting.id,
    }


__all__ = ["MeetingLimits", "MeetingNotFound", "Meetings", "SlotTime"]
