"""One realistic context per trigger, shared by the notifications tests.

The free-text values are distinctive on purpose (a center name, a file name, a center's message), so
tests can assert exactly where they may and may not appear (never in an SMS, never in a webhook).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.messages import CONTEXT_MODELS, MessageContext

CASE_REF = "3F0F-6C7D"
CENTER_NAME = "Charité Comprehensive Cancer Center"
DOCUMENT_NAME = "Befund_Mammographie_2026.pdf"
CENTER_MESSAGE = (
    "The tumour board wants to re-review the core biopsy before it gives its opinion: "
    "the first report does not state the HER2 status."
)
"""Why the center asks, in its words."""
ITEM_DETAILS = ("HER2 re-testing on the original block", "Ki-67 index of the core biopsy")
"""The center's words for each requested item (what exactly it needs)."""
GREETING = {"uk": "Олено", "en": "Olena"}
OPINION_VERDICTS = {
    "diagnosis": "changed",
    "treatment": "alternative_proposed",
    "further_tests": 2,
    "clinical_trials": True,
}
"""What an opinion concluded, as `OpinionDeliveredContext` carries it: verdicts and counts only.
The sample opinion (FACTS) has none, like an event from before outcomes were recorded."""

ANSWER_DUE = datetime(2026, 4, 15, 11, 0, tzinfo=UTC)
"""14:00 in Kyiv (EEST, UTC+3)."""
SUBMITTED = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
"""13:00 in Kyiv (EET, UTC+2): winter time."""
OPINION_DUE = datetime(2026, 4, 30, 22, 30, tzinfo=UTC)
"""Already 1 May in Kyiv."""
INFO_DUE = datetime(2026, 4, 29, 15, 0, tzinfo=UTC)
"""18:00 in Kyiv (EEST, UTC+3)."""
MATERIAL_RECEIVED = datetime(2026, 4, 20, 21, 15, tzinfo=UTC)
"""Already 21 April in Kyiv."""
FOLLOW_UP_ANSWERED = datetime(2026, 5, 12, 22, 40, tzinfo=UTC)
"""Already 13 May in Kyiv."""
CHOOSE_BY = datetime(2026, 4, 17, 21, 30, tzinfo=UTC)
"""Already 18 April in Kyiv (00:30, EEST)."""
PROPOSED_CENTERS = [
    {
        "center_name": CENTER_NAME,
        "center_country": "DE",
        "turnaround_days": 7,
        "price": {"amount": 900, "currency": "EUR"},
    },
    {
        "center_name": "National Institute of Oncology, Warsaw",
        "center_country": "PL",
        "turnaround_days": 21,
        "price": None,
    },
    {
        "center_name": "Masaryk Memorial Cancer Institute",
        "center_country": "CZ",
        "turnaround_days": 3,
        "price": {"amount": 1250.5, "currency": "CZK"},
    },
]
"""Centers proposed for the patient's choice, best first: 7, 21 and 3 days (three plural forms
in Ukrainian), a price in euros, none, and one with cents."""

MEETING_ID = "4b5c6d7e-8f9a-4b0c-9d1e-3f4a5b6c7d8e"
JOIN_URL = "https://video.charite.example/room/tumor-board-7"
CENTER_ADDRESS = "Charitéplatz 1, 10117 Berlin, Building 7, Room 2.14"
MEETING_NOTE = "Please bring your questions; an interpreter can join if you ask us."
"""What the center asks the patient to prepare, in its words."""
CENTER_CANCEL_REASON = "Our tumour board had to move; we will offer new times this week."
MEETING_STARTS = datetime(2026, 4, 8, 12, 0, tzinfo=UTC)
"""15:00 in Kyiv (EEST, UTC+3), 14:00 in Berlin (CEST, UTC+2): summer time."""
MEETING_ENDS = datetime(2026, 4, 8, 13, 0, tzinfo=UTC)
WINTER_MEETING = {
    "starts_at": datetime(2026, 11, 10, 12, 0, tzinfo=UTC),
    "ends_at": datetime(2026, 11, 10, 12, 45, tzinfo=UTC),
}
"""14:00 in Kyiv (EET, UTC+2), 13:00 in Berlin (CET, UTC+1): winter time; 45 minutes."""
MEETING_BOOKED_AT = datetime(2026, 3, 20, 9, 15, tzinfo=UTC)
VIDEO_PLACE = {
    "mode": "video",
    "center_time_zone": "Europe/Berlin",
    "meeting_language": "en",
}
MEETING_TIME = {"starts_at": MEETING_STARTS, "ends_at": MEETING_ENDS}

FACTS: dict[T, dict[str, Any]] = {
    T.CASE_SUBMITTED: {"submitted_at": SUBMITTED},
    T.DOCUMENT_REJECTED: {"reason": "corrupt", "document_name": DOCUMENT_NAME},
    T.TRANSLATION_REQUIRED: {
        "document_name": DOCUMENT_NAME,
        "document_kind": "pathology_report",
        "detected_language": "de",
        "acceptable_languages": ["en", "pl"],
    },
    T.DOCUMENT_UNREADABLE: {"reason": "ocr_failed", "document_kind": "discharge_summary"},
    T.CASE_READY: {},
    T.REFERRAL_REQUESTED: {
        "center_name": CENTER_NAME,
        "center_country": "DE",
        "answer_due_at": ANSWER_DUE,
    },
    T.REFERRAL_ACCEPTED: {"center_name": CENTER_NAME, "expected_opinion_at": OPINION_DUE},
    T.REFERRAL_DECLINED: {"center_name": CENTER_NAME, "outcome": "declined"},
    T.INFO_REQUESTED: {
        "center_name": CENTER_NAME,
        "message": CENTER_MESSAGE,
        "items": [
            {"kind": "pathology_review", "detail": ITEM_DETAILS[0]},
            {"kind": "lab_test", "detail": ITEM_DETAILS[1]},
        ],
        "due_at": INFO_DUE,
    },
    T.INFO_REMINDER: {"center_name": CENTER_NAME, "reminder": "days_before", "due_at": INFO_DUE},
    T.INFO_EXPIRED: {"center_name": CENTER_NAME},
    T.INFORMATION_SENT: {
        "center_name": CENTER_NAME,
        "new_documents": 2,
        "shipments": 1,
        "written_answer": True,
        "preparation": False,
    },
    T.SHIPMENT_RECEIVED: {"center_name": CENTER_NAME, "received_at": MATERIAL_RECEIVED},
    T.OPINION_DELIVERED: {"center_name": CENTER_NAME},
    T.FOLLOW_UP_ANSWERED: {"center_name": CENTER_NAME, "answered_at": FOLLOW_UP_ANSWERED},
    T.CENTERS_PROPOSED: {"proposals": PROPOSED_CENTERS, "choose_by": CHOOSE_BY},
    T.MEETING_OFFERED: {
        "center_name": CENTER_NAME,
        **VIDEO_PLACE,
        "slots": [MEETING_TIME, WINTER_MEETING],
        "note": MEETING_NOTE,
    },
    T.MEETING_BOOKED: {
        "center_name": CENTER_NAME,
        **VIDEO_PLACE,
        "join_url": JOIN_URL,
        **MEETING_TIME,
        "meeting_id": MEETING_ID,
        "sequence": 0,
        "changed_at": MEETING_BOOKED_AT,
    },
    T.MEETING_CANCELLED: {
        "center_name": CENTER_NAME,
        "cancelled_by": "center",
        "center_reason": CENTER_CANCEL_REASON,
        **MEETING_TIME,
        "meeting_id": MEETING_ID,
        "sequence": 1,
        "changed_at": MEETING_BOOKED_AT,
    },
    T.MEETING_REMINDER: {
        "center_name": CENTER_NAME,
        **VIDEO_PLACE,
        "join_url": JOIN_URL,
        **MEETING_TIME,
        "before": "day_before",
    },
    T.MEETING_MISSED: {"center_name": CENTER_NAME, **MEETING_TIME},
    T.FURTHER_OPINION_REQUESTED: {"share_earlier_opinions": True, "shared_opinions": 1},
    T.FURTHER_OPINION_UNAVAILABLE: {"reason": "no_eligible_center"},
    T.CASE_UNROUTABLE: {"reason": "no_eligible_center"},
    T.CASE_WITHDRAWN: {"reason": "patient_request"},
}


def sample_context(trigger: T, locale: str = "uk", **overrides: Any) -> MessageContext:
    """The sample context of `trigger` in `locale`, with any field overridden."""
    fields: dict[str, Any] = {
        "case_ref": CASE_REF,
        "greeting_name": GREETING.get(locale, "Olena"),
        "locale": locale,
        "case_url": "https://front.example.org/cases/3f0f6c7d",
        **FACTS[trigger],
        **overrides,
    }
    return CONTEXT_MODELS[trigger](**fields)
