"""The consultation meeting at which a center explains its opinion, in the FHIR view of a case.

Each meeting is an Appointment based on the case's ServiceRequest: proposed with the offered times
as requested periods, pending once the patient chose a time the center has still to book, booked
with its start and end, fulfilled when held, noshow when missed, cancelled with who cancelled and
why. The patient and the center's doctors (a PractitionerRole at the center's Organization) take
part; a meeting in person also has its place, a Location. The video link is not exported.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from fhir.resources.R4B.bundle import Bundle

from referrals_common.contracts.meetings import MeetingStatus, PatientCancelReason
from referrals_intake.fhir import (
    CaseForFhir,
    ConsentForFhir,
    MeetingForFhir,
    MeetingSlotForFhir,
    case_bundle,
    code_systems,
)

pytestmark = pytest.mark.unit

BASE = "https://referrals.test"
CASE_ID = UUID("0b9a4a4e-8f53-4c1e-9c1a-3f0f6c7d2e11")
MEETING_ID = UUID("7e000000-0000-4000-8000-000000000001")
CREATED = datetime(2025, 3, 3, 9, 15, tzinfo=UTC)
OFFERED_AT = datetime(2025, 3, 20, 10, 0, tzinfo=UTC)
PATIENT_URL = f"urn:uuid:{uuid5(CASE_ID, 'Patient')}"
REQUEST_URL = f"urn:uuid:{CASE_ID}"
DOCTORS_URL = f"urn:uuid:{uuid5(CASE_ID, 'practitioner-role:DE-HD-NCT')}"
CANCELLATION = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"


def _slot(number: int, day: int, hour: int) -> MeetingSlotForFhir:
    starts = datetime(2025, 3, day, hour, 0, tzinfo=UTC)
    return MeetingSlotForFhir(
        UUID(f"7d000000-0000-4000-8000-{number:012d}"), starts, starts + timedelta(hours=1)
    )


SLOTS = [_slot(1, 25, 8), _slot(2, 25, 13), _slot(3, 26, 9)]
OFFERED = MeetingForFhir(
    meeting_id=MEETING_ID,
    center_code="DE-HD-NCT",
    status="offered",
    mode="video",
    created_at=OFFERED_AT,
    slots=SLOTS,
    time_zone="Europe/Berlin",
    language="de",
    note="Please have your questions ready.",
)
BOOKED = replace(OFFERED, status="booked", booked_slot=SLOTS[1])


@pytest.fixture
def case() -> CaseForFhir:
    """A case whose opinion was delivered, with no meeting yet."""
    return CaseForFhir(
        case_id=CASE_ID,
        status="opinion_delivered",
        status_reason="Cancer center DE-HD-NCT delivered its written opinion.",
        created_at=CREATED,
        updated_at=CREATED + timedelta(days=16),
        icd10="C50.9",
        icd10_display="Malignant neoplasm of breast, unspecified",
        diagnosis_text=None,
        histology=None,
        stage_tnm=None,
        stage_group=None,
        reasons=["choose_treatment"],
        questions=[],
        destination_preference="abroad",
        destination_countries=[],
        locale="uk",
        birth_date=date(1979, 6, 14),
        consents=[ConsentForFhir("processing", "2025-01", CREATED)],
        documents=[],
        center_code="DE-HD-NCT",
    )


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def _appointment(case: CaseForFhir, *meetings: MeetingForFhir) -> dict[str, Any]:
    bundle = case_bundle(replace(case, meetings=list(meetings)), base_url=BASE)
    (appointment,) = [
        a for a in _resources(bundle, "Appointment") if a["id"] == str(meetings[-1].meeting_id)
    ]
    return appointment


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def _participants(appointment: dict[str, Any]) -> dict[str, str]:
    return {p["actor"]["type"]: p["status"] for p in appointment["participant"]}


def test_a_booked_meeting_is_a_booked_appointment_at_its_time_based_on_the_request(case):
    appointment = _appointment(case, BOOKED)

    assert appointment["status"] == "booked"
    assert appointment["start"] == "2025-03-25T13:00:00Z"
    assert appointment["end"] == "2025-03-25T14:00:00Z"
    assert "requestedPeriod" not in appointment
    assert appointment["basedOn"] == [{"reference": REQUEST_URL, "type": "ServiceRequest"}]
    assert appointment["identifier"][0]["value"] == f"urn:uuid:{MEETING_ID}"
    assert appointment["created"] == "2025-03-20T10:00:00Z"
    assert appointment["serviceType"][0]["coding"][0]["code"] == "opinion-consultation"
    assert appointment["appointmentType"]["text"] == "consultation on the second opinion"
    assert appointment["description"] == (
        "Consultation on the second opinion with cancer center DE-HD-NCT, by video, in German"
    )
    assert appointment["patientInstruction"] == "Please have your questions ready."
    assert _participants(appointment) == {"Patient": "accepted", "PractitionerRole": "accepted"}
    assert "cancelationReason" not in appointment


def test_an_offered_meeting_is_proposed_with_the_offered_times_as_requested_periods(case):
    appointment = _appointment(case, OFFERED)

    assert appointment["status"] == "proposed"
    assert "start" not in appointment and "end" not in appointment
    assert appointment["requestedPeriod"] == [
        {"start": "2025-03-25T08:00:00Z", "end": "2025-03-25T09:00:00Z"},
        {"start": "2025-03-25T13:00:00Z", "end": "2025-03-25T14:00:00Z"},
        {"start": "2025-03-26T09:00:00Z", "end": "2025-03-26T10:00:00Z"},
    ]
    assert _participants(appointment) == {
        "Patient": "needs-action",
        "PractitionerRole": "accepted",
    }


def test_a_time_the_patient_chose_is_pending_until_the_center_books_it(case):
    chosen = replace(OFFERED, requested_slot_id=SLOTS[2].slot_id)

    appointment = _appointment(case, chosen)

    assert appointment["status"] == "pending"
    assert appointment["start"] == "2025-03-26T09:00:00Z"
    assert len(appointment["requestedPeriod"]) == 3
    assert _participants(appointment) == {
        "Patient": "accepted",
        "PractitionerRole": "needs-action",
    }


@pytest.mark.parametrize(
    ("status", "fhir_status"),
    [("booked", "booked"), ("held", "fulfilled"), ("missed", "noshow")],
)
def test_a_meeting_after_its_booking_keeps_its_time(case, status, fhir_status):
    appointment = _appointment(case, replace(BOOKED, status=status))

    assert appointment["status"] == fhir_status
    assert appointment["start"] == "2025-03-25T13:00:00Z"
    assert "cancelationReason" not in appointment


def test_every_meeting_status_of_the_contracts_is_an_appointment_status(case):
    for status in MeetingStatus:
        meeting = replace(BOOKED, status=status.value)
        assert _appointment(case, meeting)["status"] in {
            "proposed", "booked", "fulfilled", "noshow", "cancelled",
        }  # fmt: skip


@pytest.mark.parametrize("reason", [reason.value for reason in PatientCancelReason])
def test_a_meeting_the_patient_cancelled_says_so_with_the_patients_reason_code(case, reason):
    cancelled = replace(BOOKED, status="cancelled", cancelled_by="patient", cancel_reason=reason)

    appointment = _appointment(case, cancelled)

    assert appointment["status"] == "cancelled"
    codings = appointment["cancelationReason"]["coding"]
    assert codings[0] == {"system": CANCELLATION, "code": "pat", "display": "Patient"}
    assert codings[1]["system"] == f"{BASE}/fhir/CodeSystem/meeting-cancel-reason"
    assert codings[1]["code"] == reason
    # A booking that was cancelled keeps the time it had.
    assert appointment["start"] == "2025-03-25T13:00:00Z"
    assert _participants(appointment)["Patient"] == "declined"


def test_a_meeting_the_center_cancelled_gives_the_centers_words(case):
    cancelled = replace(
        OFFERED,
        status="cancelled",
        cancelled_by="center",
        cancel_reason="The doctor is ill; we will offer new times.",
    )

    appointment = _appointment(case, cancelled)

    assert appointment["cancelationReason"] == {
        "coding": [{"system": CANCELLATION, "code": "prov", "display": "Provider"}],
        "text": "The doctor is ill; we will offer new times.",
    }
    assert "start" not in appointment and "requestedPeriod" not in appointment
    assert _participants(appointment)["PractitionerRole"] == "declined"


def test_the_centers_doctors_take_part_once_per_center_as_a_role_at_the_center(case):
    second = replace(BOOKED, meeting_id=UUID("7e000000-0000-4000-8000-000000000002"))

    bundle = case_bundle(replace(case, meetings=[BOOKED, second]), base_url=BASE)

    (role,) = _resources(bundle, "PractitionerRole")
    assert role["organization"]["type"] == "Organization"
    assert role["organization"]["identifier"]["value"] == "DE-HD-NCT"
    assert "practitioner" not in role
    for appointment in _resources(bundle, "Appointment"):
        actors = [p["actor"]["reference"] for p in appointment["participant"]]
        assert actors == [PATIENT_URL, DOCTORS_URL]


def test_a_meeting_in_person_takes_place_at_the_centers_location(case):
    address = "Im Neuenheimer Feld 460, 69120 Heidelberg, room 112"
    in_person = replace(BOOKED, mode="in_person", center_address=address, language=None)

    bundle = case_bundle(replace(case, meetings=[in_person]), base_url=BASE)

    (location,) = _resources(bundle, "Location")
    assert location["address"] == {"text": address}
    assert location["managingOrganization"]["identifier"]["value"] == "DE-HD-NCT"
    (appointment,) = _resources(bundle, "Appointment")
    assert appointment["participant"][2]["actor"]["type"] == "Location"
    assert appointment["description"].endswith(f"in person at the center ({address})")


def test_the_bundle_with_meetings_parses_back_and_every_reference_resolves(case):
    meetings = [
        OFFERED,
        replace(BOOKED, meeting_id=UUID(int=2), mode="in_person", center_address="Room 1"),
        replace(BOOKED, meeting_id=UUID(int=3), status="cancelled", cancelled_by="patient"),
    ]
    bundle = case_bundle(replace(case, meetings=meetings), base_url=BASE)

    Bundle.model_validate(bundle)
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    assert set(_references(bundle)) <= set(full_urls)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]][-5:] == [
        "PractitionerRole",
        "Appointment",
        "Location",
        "Appointment",
        "Appointment",
    ]
    for entry in bundle["entry"]:
        assert entry["resource"]["text"]["status"] == "generated"
    assert case_bundle(replace(case, meetings=meetings), base_url=BASE) == bundle


def test_every_code_of_our_own_systems_in_a_meeting_is_defined(case):
    meetings = [
        BOOKED,
        *(
            replace(BOOKED, meeting_id=UUID(int=n), status="cancelled", cancelled_by="patient",
                    cancel_reason=reason.value)
            for n, reason in enumerate(PatientCancelReason, start=10)
        ),
    ]  # fmt: skip
    bundle = case_bundle(replace(case, meetings=meetings), base_url=BASE)
    defined = {
        (system["url"], concept["code"]): concept["display"]
        for system in code_systems(base_url=BASE)
        for concept in system["concept"]
    }

    def codings(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            own = [node] if "system" in node and "code" in node else []
            return own + [c for value in node.values() for c in codings(value)]
        if isinstance(node, list):
            return [c for item in node for c in codings(item)]
        return []

    ours = [c for c in codings(bundle) if c["system"].startswith(f"{BASE}/fhir/")]
    assert {c["code"] for c in ours} >= {"opinion-consultation", "cannot_attend", "other"}
    for coding in ours:
        assert defined[(coding["system"], coding["code"])] == coding["display"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "postponed"}, "unknown status"),
        ({"mode": "phone"}, "unknown mode"),
        ({"status": "held", "booked_slot": None}, "held without its booked time"),
        ({"cancelled_by": "patient", "cancel_reason": "bored"}, "unknown patient's cancel"),
        ({"cancelled_by": "partners"}, "cancelled by 'partners'"),
        ({"created_at": OFFERED_AT.replace(tzinfo=None)}, "has no time zone"),
        (
            {"slots": [MeetingSlotForFhir(UUID(int=9), OFFERED_AT, OFFERED_AT)]},
            "ends before it starts",
        ),
    ],
)
def test_a_meeting_the_bundle_cannot_state_faithfully_is_refused(case, change, message):
    with pytest.raises(ValueError, match=message):
        case_bundle(replace(case, meetings=[replace(BOOKED, **change)]), base_url=BASE)


def test_a_meeting_listed_twice_is_refused(case):
    with pytest.raises(ValueError, match="meeting id twice"):
        case_bundle(replace(case, meetings=[BOOKED, BOOKED]), base_url=BASE)


def test_a_meeting_row_is_exported_without_its_join_link():
    from referrals_intake.fhir_view import meetings_for_fhir
    from referrals_intake.models import Meeting

    link = "https://video.example.org/join/secret-room"
    row = Meeting(
        id=MEETING_ID,
        case_id=CASE_ID,
        referral_id=UUID(int=1),
        center_code="DE-HD-NCT",
        status="booked",
        place={"mode": "video", "join_url": link, "time_zone": "Europe/Berlin", "language": "de"},
        slots=[
            {"slot_id": str(s.slot_id), "starts_at": s.starts_at.isoformat(),
             "ends_at": s.ends_at.isoformat()}
            for s in SLOTS
        ],
        booked_slot={"slot_id": str(SLOTS[1].slot_id), "starts_at": "2025-03-25T14:00:00+01:00",
                     "ends_at": "2025-03-25T15:00:00+01:00"},
        patient_time_zone="Europe/Kyiv",
        created_at=OFFERED_AT,
    )  # fmt: skip

    (meeting,) = meetings_for_fhir([row])

    assert meeting.status == "booked" and meeting.mode == "video"
    assert meeting.booked_slot == SLOTS[1]
    assert meeting.slots == SLOTS
    assert (meeting.time_zone, meeting.language) == ("Europe/Berlin", "de")
    assert link not in repr(meeting)
