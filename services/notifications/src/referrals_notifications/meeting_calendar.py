"""The consultation meeting as a calendar file (iCalendar, RFC 5545, with the methods of RFC 5546).

The booking's e-mail carries a REQUEST and the cancellation's a CANCEL of one event whose UID is
the meeting's (`<meeting_id>@referrals`): a calendar that took the booking replaces its entry when
the meeting changes (a higher SEQUENCE, which partners counts per meeting) and removes it when the
meeting is cancelled. Times are written in UTC; the patient's calendar shows them on its own clock.
DTSTAMP is the time of the change, so a resent message carries the very same file.

The file holds the meeting and nothing of the patient: no name, no e-mail address, no phone (no
ATTENDEE, and no ORGANIZER either: a calendar would send its answer there, and nobody reads
replies to the platform's address). Its words (summary, description, the reminders' text) come
from the templates, in the patient's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from icalendar import Alarm, Calendar, Event

from referrals_common.contracts.meetings import REMINDERS_BEFORE

PRODID = "-//Referrals platform//Consultation meeting//EN"
UID_DOMAIN = "referrals"
MEDIA_TYPE = "text/calendar"


def meeting_uid(meeting_id: UUID) -> str:
    """The calendar UID of a meeting: the same for its booking, every change and its end."""
    return f"{meeting_id}@{UID_DOMAIN}"


@dataclass(frozen=True, slots=True)
class MeetingWords:
    """What the calendar entry says, in the patient's language."""

    locale: str
    summary: str
    description: str


@dataclass(frozen=True, slots=True)
class MeetingEntry:
    """One version of the meeting's calendar entry."""

    meeting_id: UUID
    sequence: int
    stamped_at: datetime
    """When this version was made (DTSTAMP): the time of the booking or the cancellation."""
    starts_at: datetime
    ends_at: datetime


def meeting_request(
    entry: MeetingEntry, words: MeetingWords, *, location: str, url: str | None = None
) -> bytes:
    """METHOD:REQUEST: the booked meeting, with reminders a day and an hour before.

    `location` is the video link or the center's address; `url` the video link, if any."""
    event = _event(entry, words)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add("location", location)
    if url is not None:
        event.add("url", url)
    for before in REMINDERS_BEFORE:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", -before)
        alarm.add("description", words.summary, parameters={"LANGUAGE": words.locale})
        event.add_component(alarm)
    return _calendar("REQUEST", event)


def meeting_cancellation(entry: MeetingEntry, words: MeetingWords) -> bytes:
    """METHOD:CANCEL: the booked meeting's entry is withdrawn (same UID, the cancellation's
    SEQUENCE, STATUS:CANCELLED)."""
    event = _event(entry, words)
    event.add("status", "CANCELLED")
    return _calendar("CANCEL", event)


def _event(entry: MeetingEntry, words: MeetingWords) -> Event:
    event = Event()
    event.add("uid", meeting_uid(entry.meeting_id))
    event.add("sequence", entry.sequence)
    event.add("dtstamp", entry.stamped_at.astimezone(UTC))
    event.add("dtstart", entry.starts_at.astimezone(UTC))
    event.add("dtend", entry.ends_at.astimezone(UTC))
    event.add("summary", words.summary, parameters={"LANGUAGE": words.locale})
    event.add("description", words.description, parameters={"LANGUAGE": words.locale})
    return event


def _calendar(method: str, event: Event) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    calendar.add_component(event)
    ical: bytes = calendar.to_ical()  # icalendar leaves to_ical unannotated
    return ical


__all__ = [
    "MEDIA_TYPE",
    "PRODID",
    "MeetingEntry",
    "MeetingWords",
    "meeting_cancellation",
    "meeting_request",
    "meeting_uid",
]
