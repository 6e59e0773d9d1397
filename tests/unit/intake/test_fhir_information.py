"""A center's request for more information, and the patient's answer, in the FHIR view of a case.

While the case waits for the answer the Task is on-hold with a coded businessStatus; each request
is a CommunicationRequest from the center, each answer a Communication from the patient that points
at the request it answers and at the documents of the bundle it added.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from fhir.resources.R4B.bundle import Bundle

from referrals_common.contracts.information import RequestedItemKind, ShipmentMaterial
from referrals_intake.fhir import (
    SERVICE_REQUEST_STATUS,
    TASK_STATUS,
    CaseForFhir,
    ConsentForFhir,
    DocumentForFhir,
    InformationRequestForFhir,
    case_bundle,
)

pytestmark = pytest.mark.unit

BASE = "https://referrals.test"
CASE_ID = UUID("0b9a4a4e-8f53-4c1e-9c1a-3f0f6c7d2e11")
DISCHARGE_ID = UUID("5f1c2d3e-0000-4000-8000-000000000001")
IHC_REPORT_ID = UUID("5f1c2d3e-0000-4000-8000-000000000002")
NOT_IN_CASE_ID = UUID("5f1c2d3e-0000-4000-8000-0000000000ff")
ANSWERED_ID = UUID("7a000000-0000-4000-8000-000000000001")
OPEN_ID = UUID("7a000000-0000-4000-8000-000000000002")
SHIPMENT_ID = UUID("7b000000-0000-4000-8000-000000000001")
CREATED = datetime(2025, 3, 3, 9, 15, tzinfo=UTC)
PATIENT_URL = f"urn:uuid:{uuid5(CASE_ID, 'Patient')}"
TASK_URL = f"urn:uuid:{uuid5(CASE_ID, 'Task')}"
REQUEST_URL = f"urn:uuid:{CASE_ID}"
REQUESTED = datetime(2025, 3, 10, 14, 0, tzinfo=UTC)
DUE = datetime(2025, 3, 24, 23, 59, tzinfo=UTC)
ANSWERED = datetime(2025, 3, 14, 8, 30, tzinfo=UTC)
SHA256 = "ab" * 32

# The statuses the lifecycle had before information requests: their mapping must not move.
EARLIER_TASK_STATUS = {
    "draft": "draft",
    "submitted": "received",
    "action_required": "on-hold",
    "ready": "ready",
    "referred": "requested",
    "accepted": "accepted",
    "opinion_delivered": "completed",
    "unroutable": "failed",
    "withdrawn": "cancelled",
}
EARLIER_SERVICE_REQUEST_STATUS = {
    "draft": "draft",
    "submitted": "active",
    "action_required": "active",
    "ready": "active",
    "referred": "active",
    "accepted": "active",
    "opinion_delivered": "completed",
    "unroutable": "active",
    "withdrawn": "revoked",
}


def _document(document_id: UUID, kind: str) -> DocumentForFhir:
    return DocumentForFhir(
        document_id=document_id,
        kind=kind,
        media_type="application/pdf",
        size_bytes=120_000,
        sha256=SHA256,
        language="en",
        status="accepted",
        created_at=CREATED + timedelta(minutes=5),
        translation_of=None,
    )


ANSWERED_REQUEST = InformationRequestForFhir(
    request_id=ANSWERED_ID,
    center_code="DE-HD-NCT",
    requested_at=REQUESTED,
    due_at=DUE,
    reason="The tumour board needs a HER2 re-test before it can recommend a treatment",
    items=[
        ("pathology_review", "Paraffin block of the core biopsy for HER2 re-testing"),
        ("question", "Did you have any treatment since the biopsy?"),
    ],
    status="answered",
    answered_at=ANSWERED,
    answer="No treatment since the biopsy.",
    document_ids=[IHC_REPORT_ID, NOT_IN_CASE_ID],
    shipments=[
        {
            "shipment_id": str(SHIPMENT_ID),
            "material": "blocks",
            "carrier": "DHL Express",
            "tracking_number": "1234567890",
            "sent_on": "2025-03-12",
            "received_at": "2025-03-14T10:05:00+00:00",
        }
    ],
)

OPEN_REQUEST = InformationRequestForFhir(
    request_id=OPEN_ID,
    center_code="DE-HD-NCT",
    requested_at=REQUESTED + timedelta(days=1),
    due_at=None,
    reason="Staging is incomplete",
    items=[("imaging", "Chest CT from the last 3 months")],
    status="open",
)


@pytest.fixture
def case() -> CaseForFhir:
    """A breast cancer case waiting for the information a German center asked for."""
    return CaseForFhir(
        case_id=CASE_ID,
        status="information_requested",
        status_reason="The center asked for more information",
        created_at=CREATED,
        updated_at=REQUESTED + timedelta(days=1),
        icd10="C50.9",
        icd10_display="Malignant neoplasm of breast, unspecified",
        diagnosis_text=None,
        histology="8500/3",
        stage_tnm="T2N0M0",
        stage_group="IIA",
        reasons=["choose_treatment"],
        questions=[],
        destination_preference="countries",
        destination_countries=["DE"],
        locale="uk",
        birth_date=date(1979, 6, 14),
        consents=[ConsentForFhir(kind="processing", version="2025-01", granted_at=CREATED)],
        documents=[
            _document(DISCHARGE_ID, "discharge_summary"),
            _document(IHC_REPORT_ID, "pathology_report"),
        ],
        information_requests=[ANSWERED_REQUEST, OPEN_REQUEST],
    )


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def _one(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = _resources(bundle, resource_type)
    return resource


def _full_urls(bundle: dict[str, Any], resource_type: str | None = None) -> list[str]:
    return [
        entry["fullUrl"]
        for entry in bundle["entry"]
        if resource_type is None or entry["resource"]["resourceType"] == resource_type
    ]


def _references(node: Any) -> list[str]:
    """Every `Reference.reference` anywhere in a JSON tree."""
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _references(item)]
    return []


def _expected_url(resource: dict[str, Any]) -> str:
    """The documented fullUrl of an entry: urn:uuid of its id, except for the case-scoped
    Patient, Condition and Task (uuid5 of the case id and the type)."""
    if resource["resourceType"] in ("Patient", "Condition", "Task"):
        return f"urn:uuid:{uuid5(UUID(resource['id']), resource['resourceType'])}"
    return f"urn:uuid:{resource['id']}"


def test_the_bundle_with_requests_parses_back_and_every_reference_resolves(case):
    bundle = case_bundle(case, base_url=BASE)

    parsed = Bundle.model_validate(bundle)

    assert parsed.model_dump(mode="json") == bundle
    assert [e.resource.get_resource_type() for e in parsed.entry][-3:] == [
        "CommunicationRequest",
        "Communication",
        "CommunicationRequest",
    ]
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == _expected_url(resource)
    assert set(_references(bundle)) <= set(_full_urls(bundle))


def test_the_task_waits_on_hold_for_the_requested_information(case):
    task = _one(case_bundle(case, base_url=BASE), "Task")

    assert task["status"] == "on-hold"
    assert task["businessStatus"]["coding"] == [
        {
            "system": f"{BASE}/fhir/CodeSystem/case-business-status",
            "code": "information-requested",
            "display": "Information requested by the cancer center",
        }
    ]
    assert task["businessStatus"]["text"] == "awaiting information requested by the cancer center"


def test_action_required_keeps_its_business_status(case):
    task = _one(case_bundle(replace(case, status="action_required"), base_url=BASE), "Task")

    assert task["status"] == "on-hold"
    assert task["businessStatus"] == {"text": "awaiting-information"}


def test_the_existing_statuses_map_unchanged():
    assert {s: TASK_STATUS[s] for s in EARLIER_TASK_STATUS} == EARLIER_TASK_STATUS
    assert {
        s: SERVICE_REQUEST_STATUS[s] for s in EARLIER_SERVICE_REQUEST_STATUS
    } == EARLIER_SERVICE_REQUEST_STATUS
    assert TASK_STATUS["information_requested"] == "on-hold"
    assert SERVICE_REQUEST_STATUS["information_requested"] == "active"
    assert set(TASK_STATUS) == set(EARLIER_TASK_STATUS) | {
        "information_requested",
        "choosing_center",
    }


def test_each_request_is_a_communication_request_from_the_center(case):
    bundle = case_bundle(case, base_url=BASE)

    answered, still_open = _resources(bundle, "CommunicationRequest")
    assert (answered["id"], still_open["id"]) == (str(ANSWERED_ID), str(OPEN_ID))
    assert (answered["status"], still_open["status"]) == ("completed", "active")
    assert answered["authoredOn"] == "2025-03-10T14:00:00Z"
    assert answered["occurrenceDateTime"] == "2025-03-24T23:59:00Z"
    assert "occurrenceDateTime" not in still_open
    assert [len(answered["payload"]), len(still_open["payload"])] == [2, 1]
    assert answered["payload"][0]["contentString"] == (
        "Pathology material for re-review: Paraffin block of the core biopsy for HER2 re-testing"
    )
    assert still_open["payload"] == [{"contentString": "Imaging: Chest CT from the last 3 months"}]
    assert answered["reasonCode"] == [{"text": ANSWERED_REQUEST.reason}]
    assert answered["category"] == [{"text": "information-request"}]
    patient = PATIENT_URL
    assert answered["subject"]["reference"] == patient
    assert answered["basedOn"][0]["reference"] == REQUEST_URL
    assert answered["about"][0]["reference"] == TASK_URL
    assert answered["requester"]["display"] == "cancer center DE-HD-NCT"
    assert answered["requester"]["identifier"]["value"] == "DE-HD-NCT"
    assert "reference" not in answered["requester"]
    # The communication requested goes from the patient to the center.
    assert answered["sender"]["reference"] == patient
    assert answered["recipient"][0]["display"] == "cancer center DE-HD-NCT"


@pytest.mark.parametrize(
    ("status", "fhir_status"),
    [
        ("open", "active"),
        ("answered", "completed"),
        ("expired", "revoked"),
        ("cancelled", "revoked"),
    ],
)
def test_a_request_status_maps_to_a_request_status_code(case, status, fhir_status):
    changed = replace(case, information_requests=[replace(OPEN_REQUEST, status=status)])

    bundle = case_bundle(changed, base_url=BASE)

    assert _one(bundle, "CommunicationRequest")["status"] == fhir_status
    assert len(_resources(bundle, "Communication")) == (1 if status == "answered" else 0)


def test_the_answer_is_a_communication_based_on_its_request(case):
    bundle = case_bundle(case, base_url=BASE)

    communication = _one(bundle, "Communication")
    assert communication["id"] == str(uuid.uuid5(ANSWERED_ID, "communication:answer"))
    assert communication["status"] == "completed"
    assert communication["basedOn"] == [
        {
            "reference": f"urn:uuid:{ANSWERED_ID}",
            "type": "CommunicationRequest",
        }
    ]
    assert communication["partOf"][0]["reference"] == TASK_URL
    assert communication["subject"]["reference"] == PATIENT_URL
    assert communication["sent"] == "2025-03-14T08:30:00Z"
    payload = communication["payload"]
    assert payload[0] == {"contentString": "No treatment since the biopsy."}
    # The document outside the case is left out: every reference resolves inside the bundle.
    references = [p["contentReference"]["reference"] for p in payload if "contentReference" in p]
    assert references == [f"urn:uuid:{IHC_REPORT_ID}"]
    assert set(references) <= set(_full_urls(bundle, "DocumentReference"))
    assert payload[-1] == {
        "contentString": "Shipment of blocks by DHL Express, tracking 1234567890, sent "
        "2025-03-12; received 2025-03-14"
    }
    assert len(payload) == 3


def test_a_shipment_not_yet_received_says_so(case):
    shipment = ANSWERED_REQUEST.shipments[0] | {
        "received_at": None,
        "material": "slides_and_blocks",
    }
    answered = replace(ANSWERED_REQUEST, shipments=[shipment], answer=None, document_ids=[])

    communication = _one(
        case_bundle(replace(case, information_requests=[answered]), base_url=BASE),
        "Communication",
    )

    assert communication["payload"] == [
        {
            "contentString": "Shipment of slides and blocks by DHL Express, tracking 1234567890, "
            "sent 2025-03-12; received not yet"
        }
    ]


def test_the_answer_id_is_stable_across_exports(case):
    first = case_bundle(case, base_url=BASE)
    again = case_bundle(
        replace(case, updated_at=case.updated_at + timedelta(hours=1)), base_url=BASE
    )

    assert _one(first, "Communication")["id"] == _one(again, "Communication")["id"]


def test_a_case_without_requests_has_no_communication_request(case):
    bundle = case_bundle(replace(case, status="ready", information_requests=[]), base_url=BASE)

    assert _resources(bundle, "CommunicationRequest") == []
    assert _resources(bundle, "Communication") == []
    assert "businessStatus" not in _one(bundle, "Task")


def test_every_kind_and_material_of_the_contracts_is_stated(case):
    request = replace(
        ANSWERED_REQUEST,
        items=[(kind.value, "detail") for kind in RequestedItemKind],
        shipments=[
            ANSWERED_REQUEST.shipments[0] | {"material": material.value}
            for material in ShipmentMaterial
        ],
    )

    bundle = case_bundle(replace(case, information_requests=[request]), base_url=BASE)

    assert len(_one(bundle, "CommunicationRequest")["payload"]) == len(RequestedItemKind)
    Bundle.model_validate(bundle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "pending"}, "unknown status"),
        ({"items": [("biopsy", "a biopsy")]}, "unknown requested item kind"),
        ({"requested_at": REQUESTED.replace(tzinfo=None)}, "has no time zone"),
        ({"shipments": [{"material": "blocks"}]}, "a shipment lacks"),
    ],
)
def test_a_request_the_bundle_cannot_state_faithfully_is_refused(case, change, message):
    changed = replace(case, information_requests=[replace(ANSWERED_REQUEST, **change)])

    with pytest.raises(ValueError, match=message):
        case_bundle(changed, base_url=BASE)


def test_a_request_listed_twice_is_refused(case):
    changed = replace(case, information_requests=[OPEN_REQUEST, OPEN_REQUEST])

    with pytest.raises(ValueError, match="information request id twice"):
        case_bundle(changed, base_url=BASE)
