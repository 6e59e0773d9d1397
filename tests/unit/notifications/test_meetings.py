"""The consultation meeting told to the patient: which event becomes which message, the times on
the patient's clock and the center's, and the calendar file the booking and the cancellation carry.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from types import SimpleNamespace
from typing import Any

import pytest
from icalendar import Calendar

from referrals_common.contracts import (
    MeetingEnd,
    MeetingMode,
    MeetingPlace,
    MeetingSlot,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralMeetingReminder,
)
from referrals_common.contracts.examples import EXAMPLES
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications import consumers
from referrals_notifications.channels.email import SmtpSettings, SmtpTls, build_email
from referrals_notifications.meeting_calendar import meeting_uid
from referrals_notifications.rendering import (
    RenderedMessage,
    Renderer,
    build_webhook_message,
)
from referrals_notifications.sender import Sender, SenderSettings

from .samples import (
    CASE_REF,
    CENTER_ADDRESS,
    CENTER_CANCEL_REASON,
    CENTER_NAME,
    GREETING,
    JOIN_URL,
    MEETING_BOOKED_AT,
    MEETING_ID,
    MEETING_NOTE,
    WINTER_MEETING,
    sample_context,
)
from .test_service import CASE, CENTER_CODE, REFERRAL, as_the_sender_reads_it, deliveries

pytestmark = pytest.mark.unit

LOCALES = ("uk", "en")
MEETING = uuid.UUID(MEETING_ID)
SLOT_IDS = (uuid.UUID("5c6d7e8f-9a0b-4c1d-8e2f-4a5b6c7d8e9f"), uuid.uuid4())
SUMMER_NOON = MeetingSlot(
    slot_id=SLOT_IDS[0],
    starts_at=datetime(2026, 7, 14, 12, 0, tzinfo=UTC),
    ends_at=datetime(2026, 7, 14, 13, 0, tzinfo=UTC),
)
"""12:00 UTC in July: 15:00 in Kyiv, 14:00 in Berlin."""
WINTER_NOON = MeetingSlot(
    slot_id=SLOT_IDS[1],
    starts_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    ends_at=datetime(2026, 12, 1, 12, 45, tzinfo=UTC),
)
"""12:00 UTC in December: 14:00 in Kyiv, 13:00 in Berlin."""
VIDEO = MeetingPlace(
    mode=MeetingMode.VIDEO, join_url=JOIN_URL, time_zone="Europe/Berlin", language="en"
)
IN_PERSON = MeetingPlace(
    mode=MeetingMode.IN_PERSON, center_address=CENTER_ADDRESS, time_zone="Europe/Berlin"
)
SECRETS = [CENTER_CODE, MEETING_ID, str(REFERRAL), *map(str, SLOT_IDS)]
"""Codes and ids that never reach a message (the calendar's UID is the meeting's; a webhook names
the case it is about by its id, which the e-mail and the SMS never show)."""
RENDERER = Renderer()


def plain(text: str) -> str:
    """CLDR's no-break and thin spaces as ordinary spaces."""
    return text.replace("\u202f", " ").replace("\xa0", " ").replace("\u2009", " ")


def calendar_of(message: RenderedMessage) -> tuple[Calendar, Any]:
    """The message's one calendar file, parsed back, and its one event."""
    [attachment] = message.attachments
    assert attachment.media_type == "text/calendar"
    calendar = Calendar.from_ical(attachment.content)
    [event] = calendar.walk("VEVENT")
    return calendar, event


def booked(**overrides: Any) -> ReferralMeetingBooked:
    fields: dict[str, Any] = {
        "case_id": CASE,
        "referral_id": REFERRAL,
        "center_code": CENTER_CODE,
        "meeting_id": MEETING,
        "slot": SUMMER_NOON,
        "place": VIDEO,
        "patient_time_zone": "Europe/Kyiv",
        "sequence": 2,
        **overrides,
    }
    return ReferralMeetingBooked(**fields)


async def patient_message(
    data: Any, locale: str, channel: C = C.EMAIL, **options: Any
) -> RenderedMessage:
    """The message the patient's delivery row of `data` becomes, as the sender renders it."""
    [row] = [r for r in await deliveries(data, **options) if r["audience"] == "patient"]
    return RENDERER.render(T(row["trigger"]), as_the_sender_reads_it(row, locale), channel)


def test_the_consumer_handles_the_meeting_events() -> None:
    for event_type in (
        ReferralMeetingOffered,
        ReferralMeetingBooked,
        ReferralMeetingCancelled,
        ReferralMeetingReminder,
        ReferralMeetingEnded,
    ):
        assert event_type in consumers.HANDLED
        assert event_type.topic in consumers.SUBSCRIBED_TOPICS


# Which event becomes which message, with which facts.


async def test_offered_times_ask_the_patient_to_choose() -> None:
    offered = EXAMPLES[ReferralMeetingOffered]().model_copy(update={"referral_id": REFERRAL})
    [row] = await deliveries(offered)
    assert row["trigger"] == T.MEETING_OFFERED
    facts = row["facts"]
    assert facts["center_name"] == CENTER_NAME  # the referral was seen: its name, never its code
    [unseen] = await deliveries(offered, rows={})
    assert unseen["facts"]["center_name"] is None
    assert (facts["mode"], facts["center_time_zone"], facts["meeting_language"]) == (
        "video",
        "Europe/Berlin",
        "en",
    )
    assert "join_url" not in facts  # the link comes with the booking
    assert len(facts["slots"]) == 2 and set(facts["slots"][0]) == {"starts_at", "ends_at"}
    assert facts["time_zone"] is None  # the patient has not booked yet: the default, Kyiv
    context = as_the_sender_reads_it(row, "uk")
    assert context.time_zone == "Europe/Kyiv"


async def test_a_booking_carries_the_patients_zone_and_the_calendar_facts() -> None:
    [row] = await deliveries(booked(patient_time_zone="Europe/Warsaw"))
    assert row["trigger"] == T.MEETING_BOOKED
    facts = row["facts"]
    assert facts["time_zone"] == "Europe/Warsaw"
    assert facts["join_url"] == JOIN_URL
    assert (facts["meeting_id"], facts["sequence"]) == (MEETING_ID, 2)
    assert facts["starts_at"] == "2026-07-14T12:00:00+00:00"
    assert as_the_sender_reads_it(row).time_zone == "Europe/Warsaw"


async def test_a_held_meeting_says_nothing_and_a_missed_one_does() -> None:
    held = EXAMPLES[ReferralMeetingEnded]()
    assert held.outcome is MeetingEnd.HELD  # type: ignore[attr-defined]
    assert await deliveries(held) == []
    missed = held.model_copy(update={"outcome": MeetingEnd.MISSED})
    [row] = await deliveries(missed)
    assert row["trigger"] == T.MEETING_MISSED
    assert set(row["facts"]) == {"center_name", "starts_at", "ends_at"}


@pytest.mark.parametrize("event_type", sorted(EXAMPLES, key=lambda e: e.event_type))
async def test_every_meeting_example_reads_in_both_languages(event_type: type) -> None:
    if not event_type.__name__.startswith("ReferralMeeting") or event_type.__name__.endswith(
        "Changed"
    ):
        return
    data = EXAMPLES[event_type]()
    if isinstance(data, ReferralMeetingEnded):
        data = data.model_copy(update={"outcome": MeetingEnd.MISSED})
    for locale in LOCALES:
        await patient_message(data, locale)


@pytest.mark.parametrize("locale", LOCALES)
async def test_no_center_code_or_id_reaches_the_words(locale: str) -> None:
    events = [
        EXAMPLES[ReferralMeetingOffered](),
        booked(),
        booked(place=IN_PERSON, rebooked=True),
        ReferralMeetingCancelled(
            case_id=CASE,
            referral_id=REFERRAL,
            center_code=CENTER_CODE,
            meeting_id=MEETING,
            cancelled_by="center",
            center_reason=CENTER_CANCEL_REASON,
            slot=SUMMER_NOON,
            patient_time_zone="Europe/Kyiv",
            sequence=3,
        ),
        ReferralMeetingReminder(
            case_id=CASE,
            referral_id=REFERRAL,
            center_code=CENTER_CODE,
            meeting_id=MEETING,
            before="hour_before",
            slot=SUMMER_NOON,
            place=VIDEO,
            patient_time_zone="Europe/Kyiv",
        ),
        ReferralMeetingEnded(
            case_id=CASE,
            referral_id=REFERRAL,
            center_code=CENTER_CODE,
            meeting_id=MEETING,
            outcome=MeetingEnd.MISSED,
            slot=SUMMER_NOON,
        ),
    ]
    renderer = RENDERER
    for data in events:
        rows = await deliveries(data, front_ends=frozenset({"kyiv-clinic"}))
        assert {row["audience"] for row in rows} == {"patient", "front_end"}
        for row in rows:
            trigger = T(row["trigger"])
            context = as_the_sender_reads_it(row, locale)
            email = renderer.render(trigger, context, C.EMAIL)
            sms = renderer.render(trigger, context, C.SMS)
            webhook = build_webhook_message(
                trigger,
                context,
                case_id=CASE,
                notification_id=uuid.uuid4(),
                occurred_at=MEETING_BOOKED_AT,
            )
            parts = [email.subject, email.text, email.html or "", sms.subject, sms.text]
            parts += [webhook.text]
            for part in parts:
                for secret in SECRETS:
                    assert secret not in part, (trigger, secret, part)
            for part in parts[:-1]:
                assert str(CASE) not in part
            for secret in (JOIN_URL, CENTER_ADDRESS, CENTER_CANCEL_REASON, MEETING_NOTE):
                assert secret not in webhook.text  # the center's link, address and words
            for attachment in email.attachments:
                content = attachment.content.decode()
                for secret in [CENTER_CODE, str(REFERRAL), str(CASE), *map(str, SLOT_IDS)]:
                    assert secret not in content


# The times: on the patient's clock (Kyiv until the patient chose) and on the center's.


@pytest.mark.parametrize(
    ("slot", "locale", "patient", "center"),
    [
        (SUMMER_NOON, "uk", "14 липня 2026 р., 15:00–16:00 за київським часом", "14:00–15:00"),
        (SUMMER_NOON, "en", "July 14, 2026, 3:00 – 4:00 PM Kyiv time", "2:00 – 3:00 PM"),
        (WINTER_NOON, "uk", "1 грудня 2026 р., 14:00–14:45 за київським часом", "13:00–13:45"),
        (WINTER_NOON, "en", "December 1, 2026, 2:00 – 2:45 PM Kyiv time", "1:00 – 1:45 PM"),
    ],
)
async def test_a_booked_time_is_on_the_patients_clock_and_the_centers(
    slot: MeetingSlot, locale: str, patient: str, center: str
) -> None:
    message = await patient_message(booked(slot=slot), locale)
    text = plain(message.text)
    when = {"uk": "Коли: ", "en": "When: "}[locale]
    local = {"uk": "Місцевий час центру: ", "en": "The center's local time: "}[locale]
    berlin = {"uk": "час: Німеччина (Берлін)", "en": "Germany (Berlin) Time"}[locale]
    [when_line] = [line for line in text.splitlines() if line.startswith(when)]
    assert when_line.endswith(patient)
    [local_line] = [line for line in text.splitlines() if line.startswith(local)]
    assert f"{center}, {berlin}" in local_line
    length = {
        ("uk", 60): "Тривалість: 60 хвилин",
        ("en", 60): "Length: 60 minutes",
        ("uk", 45): "Тривалість: 45 хвилин",
        ("en", 45): "Length: 45 minutes",
    }
    minutes = int((slot.ends_at - slot.starts_at).total_seconds() // 60)
    assert length[(locale, minutes)] in text


async def test_a_patient_elsewhere_reads_the_time_on_their_own_clock() -> None:
    message = await patient_message(booked(patient_time_zone="America/New_York"), "en")
    text = plain(message.text)
    assert "When: Tuesday, July 14, 2026, 8:00 – 9:00 AM, United States (New York) Time" in text
    assert "Kyiv" not in text


async def test_a_patient_in_the_centers_zone_reads_one_time() -> None:
    message = await patient_message(booked(patient_time_zone="Europe/Berlin"), "en")
    assert "local time" not in message.text
    assert "When: Tuesday, July 14, 2026, 2:00 – 3:00 PM, Germany (Berlin) Time" in plain(
        message.text
    )


@pytest.mark.parametrize("locale", LOCALES)
async def test_offered_times_are_in_kyiv_time_until_the_patient_chose(locale: str) -> None:
    offered = EXAMPLES[ReferralMeetingOffered]().model_copy(
        update={"slots": [SUMMER_NOON, WINTER_NOON]}
    )
    message = await patient_message(offered, locale)
    text = plain(message.text)
    expected = {
        "uk": [
            "1. вівторок, 14 липня 2026 р., 15:00–16:00 за київським часом",
            "Місцевий час центру: вівторок, 14 липня 2026 р., 14:00–15:00, час: Німеччина (Берлін)",
            "2. вівторок, 1 грудня 2026 р., 14:00–14:45 за київським часом",
            "Місцевий час центру: вівторок, 1 грудня 2026 р., 13:00–13:45, час: Німеччина (Берлін)",
            "Запит 3F0F-6C7D: оберіть час консультації",
        ],
        "en": [
            "1. Tuesday, July 14, 2026, 3:00 – 4:00 PM Kyiv time",
            "The center's local time: Tuesday, July 14, 2026, 2:00 – 3:00 PM, Germany (Berlin) "
            "Time",
            "2. Tuesday, December 1, 2026, 2:00 – 2:45 PM Kyiv time",
            "Request 3F0F-6C7D: please choose a time for your consultation meeting",
        ],
    }[locale]
    for phrase in expected:
        assert phrase in text or phrase == message.subject, phrase
    assert MEETING_NOTE in text  # what the center asks the patient to prepare, in its words
    assert JOIN_URL not in text and not message.attachments


async def test_new_times_say_that_they_replace_the_earlier_ones() -> None:
    offered = EXAMPLES[ReferralMeetingOffered]().model_copy(update={"rescheduled": True})
    message = await patient_message(offered, "en")
    assert message.subject == "Request 3F0F-6C7D: new times for your consultation meeting"
    assert "They replace the times offered before" in message.text


@pytest.mark.parametrize("locale", LOCALES)
async def test_new_times_that_release_a_booking_withdraw_its_calendar_entry(locale: str) -> None:
    offered = EXAMPLES[ReferralMeetingOffered]().model_copy(
        update={
            "slots": [WINTER_NOON],
            "rescheduled": True,
            "released_slot": SUMMER_NOON,
            "patient_time_zone": "Europe/Berlin",
            "sequence": 4,
        }
    )
    message = await patient_message(offered, locale)
    text = plain(message.text)
    earlier = {
        "uk": "Ваш попередній запис: вівторок, 14 липня 2026 р., 14:00–15:00, час: Німеччина",
        "en": "Your earlier booking: Tuesday, July 14, 2026, 2:00 – 3:00 PM, Germany (Berlin)",
    }[locale]
    assert earlier in text  # on the patient's clock, now that the event knows it
    assert "Kyiv" not in text and "київським" not in text
    [attachment] = message.attachments
    assert dict(attachment.parameters) == {"method": "CANCEL"}
    calendar, event = calendar_of(message)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["UID"]) == meeting_uid(offered.meeting_id)  # type: ignore[attr-defined]
    assert event.decoded("SEQUENCE") == 4
    assert event.decoded("DTSTART") == SUMMER_NOON.starts_at
    assert str(event["STATUS"]) == "CANCELLED"


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_meeting_in_person_gives_the_address(locale: str) -> None:
    message = await patient_message(booked(place=IN_PERSON), locale)
    address = {"uk": "Адреса: ", "en": "Address: "}[locale] + CENTER_ADDRESS
    assert address in message.text
    assert ("Формат: особисто, у центрі" if locale == "uk" else "How: in person") in message.text
    assert "http" not in message.text.split("\n--\n")[0].replace(
        "https://front.example.org/cases/3f0f6c7d", ""
    )
    _, event = calendar_of(message)
    assert str(event["LOCATION"]) == CENTER_ADDRESS
    assert "URL" not in event


async def test_a_new_time_is_said_to_be_new() -> None:
    message = await patient_message(booked(rebooked=True), "uk")
    assert message.subject == "Запит 3F0F-6C7D: консультацію перенесено"
    assert "Попередній час більше не дійсний." in message.text


@pytest.mark.parametrize(
    ("before", "uk", "en"),
    [
        ("day_before", "приблизно через 24 години", "is in about 24 hours"),
        ("hour_before", "почнеться приблизно через годину", "starts in about an hour"),
    ],
)
async def test_a_reminder_says_when_and_how_to_join(before: str, uk: str, en: str) -> None:
    reminder = EXAMPLES[ReferralMeetingReminder]().model_copy(
        update={"before": before, "slot": SUMMER_NOON}
    )
    for locale, words in (("uk", uk), ("en", en)):
        message = await patient_message(reminder, locale)
        assert words in message.text
        assert JOIN_URL in message.text
        assert "15:00" in message.text or "3:00" in message.text
        assert not message.attachments  # the booking's calendar file already has the alarms


# Cancellations: who cancelled, in plain words, and what happens next.

PATIENT_REASONS = {
    "cannot_attend": "You told us that you cannot attend.",
    "none_of_the_times": "You told us that none of the offered times suits you.",
    "no_longer_needed": "You told us that you no longer need the meeting.",
    "other": None,
}


@pytest.mark.parametrize("reason", sorted(PATIENT_REASONS))
async def test_a_patients_cancellation_is_told_with_their_reason(reason: str) -> None:
    cancelled = EXAMPLES[ReferralMeetingCancelled]().model_copy(update={"patient_reason": reason})
    message = await patient_message(cancelled, "en")
    assert "As you asked, your consultation meeting with the cancer center is cancelled." in (
        message.text
    )
    words = PATIENT_REASONS[reason]
    told = [w for w in PATIENT_REASONS.values() if w and w in message.text]
    assert told == ([words] if words else [])
    may_offer = "The center may offer new times for the meeting." in message.text
    assert may_offer is (reason != "no_longer_needed")


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_centers_cancellation_carries_its_words(locale: str) -> None:
    context = sample_context(T.MEETING_CANCELLED, locale)
    message = RENDERER.render(T.MEETING_CANCELLED, context, C.EMAIL)
    assert CENTER_CANCEL_REASON in message.text
    assert CENTER_CANCEL_REASON in (message.html or "")
    who = {"uk": "Онкологічний центр скасував", "en": "The cancer center has cancelled"}[locale]
    assert who in message.text


async def test_a_cancellation_before_any_booking_has_no_calendar_file() -> None:
    cancelled = EXAMPLES[ReferralMeetingCancelled]().model_copy(
        update={"slot": None, "patient_time_zone": None, "patient_reason": "none_of_the_times"}
    )
    message = await patient_message(cancelled, "uk")
    assert message.attachments == ()
    assert "Скасований час" not in message.text
    assert "файл календаря" not in message.text


# The calendar file.


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_booking_carries_a_calendar_request(locale: str) -> None:
    message = await patient_message(booked(), locale)
    [attachment] = message.attachments
    assert attachment.filename == "meeting.ics"
    assert dict(attachment.parameters) == {"method": "REQUEST"}
    calendar, event = calendar_of(message)
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"])
    assert str(event["UID"]) == meeting_uid(MEETING) == f"{MEETING_ID}@referrals"
    assert event.decoded("SEQUENCE") == 2
    assert event.decoded("DTSTART") == SUMMER_NOON.starts_at
    assert event.decoded("DTEND") == SUMMER_NOON.ends_at
    assert event["DTSTART"].to_ical() == b"20260714T120000Z"  # UTC
    assert event.decoded("DTSTAMP").tzinfo is not None
    assert str(event["STATUS"]) == "CONFIRMED"
    summary = {
        "uk": "Консультація щодо вашої другої лікарської думки",
        "en": "Consultation on your second opinion",
    }[locale]
    assert str(event["SUMMARY"]) == summary
    assert event["SUMMARY"].params["LANGUAGE"] == locale
    assert str(event["LOCATION"]) == str(event["URL"]) == JOIN_URL
    assert JOIN_URL in str(event["DESCRIPTION"])
    alarms = event.walk("VALARM")
    assert sorted(alarm.decoded("TRIGGER") for alarm in alarms) == [
        -timedelta(hours=24),
        -timedelta(hours=1),
    ]
    assert {str(alarm["ACTION"]) for alarm in alarms} == {"DISPLAY"}


async def test_the_calendar_file_is_the_same_on_every_attempt_and_keeps_its_uid() -> None:
    [row] = await deliveries(booked())
    context = as_the_sender_reads_it(row, "en")
    first = RENDERER.render(T.MEETING_BOOKED, context, C.EMAIL)
    again = RENDERER.render(T.MEETING_BOOKED, context, C.EMAIL)
    assert first.attachments == again.attachments  # DTSTAMP is the booking's time, not now
    _, event = calendar_of(first)
    changed_at = datetime.fromisoformat(row["facts"]["changed_at"])
    assert event.decoded("DTSTAMP") == changed_at.replace(microsecond=0)  # whole seconds
    moved = await patient_message(booked(slot=WINTER_NOON, sequence=3, rebooked=True), "en")
    _, event = calendar_of(moved)
    assert str(event["UID"]) == f"{MEETING_ID}@referrals"
    assert event.decoded("SEQUENCE") == 3
    assert event.decoded("DTSTART") == WINTER_NOON.starts_at


@pytest.mark.parametrize("locale", LOCALES)
def test_the_calendar_file_holds_nothing_of_the_patient(locale: str) -> None:
    context = sample_context(T.MEETING_BOOKED, locale, greeting_name=GREETING[locale])
    message = RENDERER.render(T.MEETING_BOOKED, context, C.EMAIL)
    _, event = calendar_of(message)
    content = message.attachments[0].content.decode()
    assert GREETING[locale] not in content
    assert "@example" not in content and "front.example.org" not in content
    assert "ATTENDEE" not in content and "ORGANIZER" not in content
    assert CASE_REF in str(event["DESCRIPTION"])  # the reference the patient quotes, no more
    assert event.decoded("DTSTAMP") == MEETING_BOOKED_AT


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_cancellation_withdraws_the_calendar_entry(locale: str) -> None:
    cancelled = EXAMPLES[ReferralMeetingCancelled]()
    message = await patient_message(cancelled, locale)
    [attachment] = message.attachments
    assert dict(attachment.parameters) == {"method": "CANCEL"}
    calendar, event = calendar_of(message)
    assert str(calendar["METHOD"]) == "CANCEL"
    assert str(event["UID"]) == meeting_uid(cancelled.meeting_id)  # type: ignore[attr-defined]
    assert event.decoded("SEQUENCE") == cancelled.sequence == 1  # type: ignore[attr-defined]
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.walk("VALARM") == []


@pytest.mark.parametrize("trigger", list(T))
def test_only_the_booking_and_the_cancellation_carry_a_file(trigger: T) -> None:
    renderer = RENDERER
    email = renderer.render(trigger, sample_context(trigger, "uk"), C.EMAIL)
    expected = 1 if trigger in (T.MEETING_BOOKED, T.MEETING_CANCELLED) else 0  # offered: none
    # (new times carry a file only when they release a booked time)
    assert len(email.attachments) == expected
    assert renderer.render(trigger, sample_context(trigger, "uk"), C.SMS).attachments == ()


def test_the_email_carries_the_calendar_file_after_text_and_html() -> None:
    message = RENDERER.render(T.MEETING_BOOKED, sample_context(T.MEETING_BOOKED), C.EMAIL)
    smtp = SmtpSettings(host="127.0.0.1", port=1, tls=SmtpTls.NONE, from_address="a@example.org")
    email = build_email(smtp, "olena@example.org", message)
    parsed = message_from_bytes(email.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    body, attachment = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "meeting.ics"
    assert attachment.get_payload(decode=True) == message.attachments[0].content
    assert parsed.get_body(("plain",)).get_content() == message.text  # type: ignore[union-attr]


# The sender: the event's time zone for the patient, else the configured one.


def test_the_sender_reads_the_patients_zone_from_the_facts() -> None:
    sender = Sender(db=None, renderer=None, box=None, channels=None)  # type: ignore[arg-type]
    assert sender.settings == SenderSettings()

    def delivery(trigger: T, facts: dict[str, Any]) -> Any:
        jsonable = json.loads(json.dumps(facts, default=str))
        return SimpleNamespace(trigger=str(trigger), facts=jsonable, case_id=CASE)

    booked_facts = {
        k: v
        for k, v in dict(sample_context(T.MEETING_BOOKED)).items()
        if k not in ("case_ref", "locale", "time_zone", "case_url", "greeting_name")
    }
    in_warsaw = sender._context(
        delivery(T.MEETING_BOOKED, {**booked_facts, "time_zone": "Europe/Warsaw"}), "uk"
    )
    assert in_warsaw.time_zone == "Europe/Warsaw"
    missed = sender._context(delivery(T.MEETING_MISSED, dict(WINTER_MEETING)), "uk")
    assert missed.time_zone == "Europe/Kyiv"
