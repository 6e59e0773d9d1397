"""The vocabulary of the consultation meeting at which a center explains its opinion.

Seeds 000 and 001: the written opinion is explained at a separate meeting of about an hour, to
which the patient brings prepared questions. A center that accepted a referral offers a few time
slots (each an instant range, shown in the center's time zone), by video or in person; the patient
picks one through the front end (in their own time zone); either side may cancel, the center may
offer new times (a re-schedule) and the patient may move to another of the offered times; the
platform reminds the patient 24 hours and 1 hour before; after the time, the center records whether
the meeting took place or the patient missed it.

Partners owns the meeting (`referral.meeting_*` on the routing topic); intake carries the patient's
choices (`case.meeting_*` on the cases topic). The video link and the address are the center's, not
the patient's; they travel on platform topics only, and a center's inbox is told of the patient's
choices with times and no words (`referral.meeting_changed`)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from enum import StrEnum
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    model_validator,
)

from referrals_common.text import NoControlCharacters

MEETING_MIN_LENGTH = timedelta(minutes=15)
MEETING_MAX_LENGTH = timedelta(hours=3)
MAX_SLOTS = 20
REMINDERS_BEFORE = (timedelta(hours=24), timedelta(hours=1))
"""When the patient is reminded of a booked meeting, before its start, earliest first."""


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not a time zone of the IANA database") from exc
    return name


TimeZoneName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", max_length=64),
    AfterValidator(_known_zone),
    Field(description="An IANA time zone name", examples=["Europe/Kyiv"]),
]
"""A time zone of the IANA database, by name (Europe/Kyiv, Europe/Berlin)."""


class MeetingMode(StrEnum):
    """How the patient meets the center's doctors."""

    VIDEO = "video"
    """A video call: `join_url` is the link to join."""
    IN_PERSON = "in_person"
    """At the center: `center_address` says where."""


class MeetingStatus(StrEnum):
    OFFERED = "offered"
    """The center offered slots; the patient has not picked one (or the booked time was
    released by a re-schedule)."""
    BOOKED = "booked"
    HELD = "held"
    MISSED = "missed"
    """The patient did not come; the center recorded it after the time."""
    CANCELLED = "cancelled"


class CancelledBy(StrEnum):
    PATIENT = "patient"
    CENTER = "center"


class PatientCancelReason(StrEnum):
    """Why the patient cancelled (a choice, never free text: it reaches the center)."""

    CANNOT_ATTEND = "cannot_attend"
    NONE_OF_THE_TIMES = "none_of_the_times"
    """None of the offered times suits: the center may offer new ones."""
    NO_LONGER_NEEDED = "no_longer_needed"
    OTHER = "other"


class MeetingSlot(BaseModel):
    """One time the center offers: an instant range (UTC offsets in the values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot_id: UUID = Field(description="The slot; the patient books it by this id")
    starts_at: AwareDatetime = Field(description="When the meeting starts")
    ends_at: AwareDatetime = Field(description="When it ends (15 minutes to 3 hours later)")

    @model_validator(mode="after")
    def _length(self) -> MeetingSlot:
        length = self.ends_at - self.starts_at
        if not MEETING_MIN_LENGTH <= length <= MEETING_MAX_LENGTH:
            raise ValueError("a meeting lasts between 15 minutes and 3 hours")
        return self


MeetingSlots = Annotated[list[MeetingSlot], Field(min_length=1, max_length=MAX_SLOTS)]


def check_slots(slots: list[MeetingSlot]) -> list[MeetingSlot]:
    """Slots in time order; ValueError when two share an id or overlap."""
    ordered = sorted(slots, key=lambda s: s.starts_at)
    if len({s.slot_id for s in ordered}) != len(ordered):
        raise ValueError("two slots have the same id")
    for before, after in itertools.pairwise(ordered):
        if after.starts_at < before.ends_at:
            raise ValueError(
                f"the slots starting at {before.starts_at.isoformat()} and "
                f"{after.starts_at.isoformat()} overlap"
            )
    return ordered


class MeetingPlace(BaseModel):
    """Where the meeting happens: the center's video link or its address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: MeetingMode = Field(description="By video, or in person at the center")
    join_url: HttpUrl | None = Field(
        default=None, description="For a video meeting: the https link to join"
    )
    center_address: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
            NoControlCharacters,
        ]
        | None
    ) = Field(
        default=None,
        description="For a meeting in person: where at the center (its address, building, room)",
    )
    time_zone: TimeZoneName = Field(description="The center's time zone, to show its local time")
    language: (
        Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$"), Field(examples=["en"])] | None
    ) = Field(
        default=None,
        description="The language the doctors speak at the meeting (ISO 639-1), when the "
        "center says; an interpreter is the front end's matter",
    )

    @model_validator(mode="after")
    def _where(self) -> MeetingPlace:
        if self.mode is MeetingMode.VIDEO:
            if self.join_url is None or self.join_url.scheme != "https":
                raise ValueError("a video meeting needs an https join_url")
        elif self.join_url is not None:
            raise ValueError("only a video meeting has a join_url")
        if self.mode is MeetingMode.IN_PERSON and self.center_address is None:
            raise ValueError("a meeting in person needs the address")
        if self.mode is not MeetingMode.IN_PERSON and self.center_address is not None:
            raise ValueError("only a meeting in person has an address")
        return self


class ReminderBefore(StrEnum):
    """Which reminder of a booked meeting."""

    DAY_BEFORE = "day_before"
    """About 24 hours before the start."""
    HOUR_BEFORE = "hour_before"


__all__ = [
    "MAX_SLOTS",
    "MEETING_MAX_LENGTH",
    "MEETING_MIN_LENGTH",
    "REMINDERS_BEFORE",
    "CancelledBy",
    "MeetingMode",
    "MeetingPlace",
    "MeetingSlot",
    "MeetingSlots",
    "MeetingStatus",
    "PatientCancelReason",
    "ReminderBefore",
    "TimeZoneName",
    "check_slots",
]
