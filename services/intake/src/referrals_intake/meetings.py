"""The consultation meeting as the patient sees it, and the patient's choices (issue 21 §2).

Partners owns the meeting; intake keeps each case's meetings as partners' events tell them
(`on_offered`, `on_booked`, `on_cancelled`, `on_ended`) and takes the patient's choices through
the front end's API: a time (`choose_slot`), or a cancellation (`cancel`), each checked against
what the case knows and published for partners (`case.meeting_slot_chosen`,
`case.meeting_cancelled`). A chosen time shows as `booking` until partners books it; a center's
change that crossed the choice (new times, a cancellation) arrives as its own event and replaces
it. Every change happens under the case's row lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from referrals_common.contracts import (
    CaseMeetingCancelled,
    CaseMeetingSlotChosen,
    CaseStatus,
    MeetingSlot,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    new_event,
)
from referrals_common.contracts.meetings import MeetingStatus, PatientCancelReason
from referrals_common.db import UnitOfWork
from referrals_intake.models import Meeting, utcnow
from referrals_intake.repository import CaseRepository, RepositoryFactory
from referrals_intake.service import _locked, _note

OPEN = (MeetingStatus.OFFERED.value, MeetingStatus.BOOKED.value)


class MeetingNotFound(Exception):
    """No such meeting on this case."""


class MeetingClosed(Exception):
    """The meeting is no longer open (held, missed, cancelled), or the case is closed."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class SlotNotOffered(ValueError):
    """The time is not one of the meeting's offered times, or it has passed."""


def pending_choice(meeting: Meeting, now: datetime | None = None) -> UUID | None:
    """The time the patient chose that partners has not booked yet; None once it has passed
    (partners drops a choice whose time came first, and the meeting stands as it was)."""
    if meeting.requested_slot_id is None or meeting.status not in OPEN:
        return None
    chosen = next(
        (s for s in meeting.slots if s["slot_id"] == str(meeting.requested_slot_id)), None
    )
    if chosen is None or datetime.fromisoformat(chosen["starts_at"]) <= (now or utcnow()):
        return None
    return meeting.requested_slot_id


def public_status(meeting: Meeting) -> str:
    """offered | booking (the patient's choice waits for partners) | booked | held | missed |
    cancelled."""
    return "booking" if pending_choice(meeting) is not None else meeting.status


# ------------------------------------------------------------------ the patient's choices
async def choose_slot(
    uow: UnitOfWork,
    case_id: UUID,
    meeting_id: UUID,
    slot_id: UUID,
    time_zone: str,
    *,
    now: datetime | None = None,
    repository: RepositoryFactory = CaseRepository,
) -> Meeting:
    repo = repository(uow.session)
    case = await _locked(repo, case_id)
    meeting = await _meeting(repo, case_id, meeting_id)
    _require_open(meeting, case.status)
    now = now or utcnow()
    slot = next(
        (MeetingSlot.model_validate(s) for s in meeting.slots if s["slot_id"] == str(slot_id)),
        None,
    )
    if slot is None:
        raise SlotNotOffered(f"Slot {slot_id} is not one of this meeting's offered times.")
    if slot.starts_at <= now:
        raise SlotNotOffered("That time has passed; choose a later one.")
    booked = meeting.booked_slot or {}
    if booked.get("slot_id") == str(slot_id) and meeting.requested_slot_id is None:
        return meeting  # booked at that time already: nothing to change
    meeting.requested_slot_id = slot_id
    meeting.patient_time_zone = time_zone
    meeting.updated_at = now
    await uow.outbox.add(
        new_event(
            CaseMeetingSlotChosen(
                case_id=case_id,
                referral_id=meeting.referral_id,
                meeting_id=meeting.id,
                slot_id=slot_id,
                time_zone=time_zone,
            )
        )
    )
    _note(
        repo,
        case,
        "meeting_time_chosen",
        {"center": meeting.center_code, "at": slot.starts_at.isoformat()},
        "wait_for_confirmation",
    )
    return meeting


async def cancel(
    uow: UnitOfWork,
    case_id: UUID,
    meeting_id: UUID,
    reason: PatientCancelReason,
    *,
    repository: RepositoryFactory = CaseRepository,
) -> Meeting:
    repo = repository(uow.session)
    case = await _locked(repo, case_id)
    meeting = await _meeting(repo, case_id, meeting_id)
    _require_open(meeting, case.status)
    booked = meeting.booked_slot
    if booked and datetime.fromisoformat(booked["starts_at"]) <= utcnow():
        raise MeetingClosed("started", "The meeting has started: it can no longer be cancelled.")
    meeting.status = MeetingStatus.CANCELLED.value
    meeting.cancelled_by = "patient"
    meeting.cancel_reason = reason.value
    meeting.requested_slot_id = None
    meeting.updated_at = utcnow()
    await uow.outbox.add(
        new_event(
            CaseMeetingCancelled(
                case_id=case_id,
                referral_id=meeting.referral_id,
                meeting_id=meeting.id,
                reason=reason,
            )
        )
    )
    _note(
        repo,
        case,
        "meeting_cancelled",
        {"center": meeting.center_code, "by": "patient"},
        "center_may_offer_times",
    )
    return meeting


# ------------------------------------------------------------------------ partners' events
async def on_offered(
    uow: UnitOfWork,
    offered: ReferralMeetingOffered,
    *,
    repository: RepositoryFactory = CaseRepository,
) -> None:
    repo = repository(uow.session)
    case = await repo.get(offered.case_id, for_update=True)
    if case is None:
        return
    meeting = await repo.meeting(offered.meeting_id)
    slots = [s.model_dump(mode="json") for s in offered.slots]
    if meeting is None:
        meeting = Meeting(
            id=offered.meeting_id,
            case_id=offered.case_id,
            referral_id=offered.referral_id,
            center_code=offered.center_code,
            status=MeetingStatus.OFFERED.value,
            place=offered.place.model_dump(mode="json"),
            slots=slots,
            note=offered.note,
        )
        repo.add(meeting)
    elif meeting.status in OPEN:  # new times: a booked time and a pending choice are released
        meeting.slots = slots
        meeting.status = MeetingStatus.OFFERED.value
        meeting.booked_slot = None
        meeting.requested_slot_id = None
        meeting.updated_at = utcnow()
    else:
        return
    _note(
        repo,
        case,
        "meeting_offered",
        {"center": offered.center_code, "rescheduled": bool(offered.rescheduled)},
        "choose_time",
    )


async def on_booked(
    uow: UnitOfWork,
    booked: ReferralMeetingBooked,
    *,
    repository: RepositoryFactory = CaseRepository,
) -> None:
    repo = repository(uow.session)
    meeting = await _known(repo, booked.case_id, booked.meeting_id)
    if meeting is None or meeting.status not in OPEN:
        return
    meeting.status = MeetingStatus.BOOKED.value
    meeting.booked_slot = booked.slot.model_dump(mode="json")
    meeting.patient_time_zone = booked.patient_time_zone
    if meeting.requested_slot_id == booked.slot.slot_id:
        meeting.requested_slot_id = None
    meeting.updated_at = utcnow()
    await _note_on(
        repo,
        booked.case_id,
        "meeting_booked",
        {"center": booked.center_code, "at": booked.slot.starts_at.isoformat()},
        "prepare_questions",
    )


async def on_cancelled(
    uow: UnitOfWork,
    cancelled: ReferralMeetingCancelled,
    *,
    repository: RepositoryFactory = CaseRepository,
) -> None:
    repo = repository(uow.session)
    meeting = await _known(repo, cancelled.case_id, cancelled.meeting_id)
    if meeting is None or meeting.status == MeetingStatus.CANCELLED:
        return
    meeting.status = MeetingStatus.CANCELLED.value
    meeting.cancelled_by = cancelled.cancelled_by.value
    meeting.cancel_reason = cancelled.center_reason or (
        cancelled.patient_reason.value if cancelled.patient_reason else None
    )
    meeting.requested_slot_id = None
    meeting.updated_at = utcnow()
    await _note_on(
        repo,
        cancelled.case_id,
        "meeting_cancelled",
        {"center": cancelled.center_code, "by": "center"},
        "center_may_offer_times",
    )


async def on_ended(
    uow: UnitOfWork, ended: ReferralMeetingEnded, *, repository: RepositoryFactory = CaseRepository
) -> None:
    repo = repository(uow.session)
    meeting = await _known(repo, ended.case_id, ended.meeting_id)
    if meeting is None or meeting.status != MeetingStatus.BOOKED:
        return
    meeting.status = ended.outcome.value
    meeting.updated_at = utcnow()
    held = ended.outcome.value == MeetingStatus.HELD
    await _note_on(
        repo,
        ended.case_id,
        f"meeting_{ended.outcome.value}",
        {},
        None if held else "center_may_offer_times",
    )


def public(meeting: Meeting) -> dict[str, Any]:
    """The meeting as the front end reads it (`MeetingPublic`)."""
    return {
        "id": meeting.id,
        "center_code": meeting.center_code,
        "status": public_status(meeting),
        "place": meeting.place,
        "note": meeting.note,
        "slots": meeting.slots if meeting.status in OPEN else [],
        "booked_slot": meeting.booked_slot,
        "chosen_slot_id": pending_choice(meeting),
        "patient_time_zone": meeting.patient_time_zone,
        "cancelled_by": meeting.cancelled_by,
        "cancel_reason": meeting.cancel_reason,
    }


# ---------------------------------------------------------------------------- helpers
async def _meeting(repo: CaseRepository, case_id: UUID, meeting_id: UUID) -> Meeting:
    meeting = await repo.meeting(meeting_id)
    if meeting is None or meeting.case_id != case_id:
        raise MeetingNotFound(str(meeting_id))
    return meeting


async def _known(repo: CaseRepository, case_id: UUID, meeting_id: UUID) -> Meeting | None:
    """The meeting of a partners' event, under the case's lock (None: not this case's)."""
    if await repo.get(case_id, for_update=True) is None:
        return None
    meeting = await repo.meeting(meeting_id)
    return meeting if meeting is not None and meeting.case_id == case_id else None


async def _note_on(
    repo: CaseRepository, case_id: UUID, code: str, params: dict[str, Any], next_step: str | None
) -> None:
    """A timeline entry on the case (already locked by `_known`): its sentence's code and
    parameters, and its next step's code."""
    case = await repo.get(case_id)
    assert case is not None
    _note(repo, case, code, params, next_step)


def _require_open(meeting: Meeting, case_status: str) -> None:
    if case_status == CaseStatus.WITHDRAWN:
        raise MeetingClosed("withdrawn", "The case was withdrawn: it has no meeting.")
    if meeting.status not in OPEN:
        raise MeetingClosed(
            meeting.status, f"This meeting is {meeting.status}: it can no longer be changed."
        )


__all__ = [
    "MeetingClosed",
    "MeetingNotFound",
    "SlotNotOffered",
    "cancel",
    "choose_slot",
    "on_booked",
    "on_cancelled",
    "on_ended",
    "on_offered",
    "public",
]
