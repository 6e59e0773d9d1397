"""The FHIR view of a case is valid R4, self-contained, minimal about the person, and exact.

A cancer center reads the case as one FHIR Bundle: it must parse back, every reference in it must
resolve inside it, the Task status must follow the lifecycle mapping of the design, the Patient
must carry no name, telecom or address, a translation must point at its original and each consent
must say which version of the text the patient agreed to.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from fhir.resources.R4B.bundle import Bundle

from referrals_common.contracts.intake import CaseStatus, ReferralReason
from referrals_common.contracts.records import DocumentKind
from referrals_intake.fhir import (
    SERVICE_REQUEST_STATUS,
    TASK_STATUS,
    CaseForFhir,
    ConsentForFhir,
    DocumentForFhir,
    case_bundle,
)

pytestmark = pytest.mark.unit

BASE = "https://referrals.test"
CASE_ID = UUID("0b9a4a4e-8f53-4c1e-9c1a-3f0f6c7d2e11")
DISCHARGE_ID = UUID("5f1c2d3e-0000-4000-8000-000000000001")
TRANSLATION_ID = UUID("5f1c2d3e-0000-4000-8000-000000000002")
PATHOLOGY_ID = UUID("5f1c2d3e-0000-4000-8000-000000000003")
CREATED = datetime(2025, 3, 3, 9, 15, tzinfo=UTC)
PATIENT_URL = f"urn:uuid:{uuid5(CASE_ID, 'Patient')}"
TASK_URL = f"urn:uuid:{uuid5(CASE_ID, 'Task')}"
REQUEST_URL = f"urn:uuid:{CASE_ID}"

# The design's lifecycle mapping (docs/architecture.md), written out here on purpose rather than
# read from TASK_STATUS, so that a change to the table has to change this test too.
DESIGN_TASK_STATUS = {
    "draft": "draft",
    "submitted": "received",
    "action_required": "on-hold",
    "ready": "ready",
    "referred": "requested",
    "accepted": "accepted",
    "information_requested": "on-hold",
    "choosing_center": "on-hold",
    "opinion_delivered": "completed",
    "unroutable": "failed",
    "withdrawn": "cancelled",
}
FHIR_TASK_STATUSES = {
    "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
    "in-progress", "on-hold", "failed", "completed", "entered-in-error",
}  # fmt: skip
FHIR_REQUEST_STATUSES = {
    "draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown",
}  # fmt: skip


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _document(**fields: Any) -> DocumentForFhir:
    defaults: dict[str, Any] = {
        "media_type": "application/pdf",
        "size_bytes": 245_760,
        "sha256": _digest(b"a document"),
        "language": "en",
        "status": "accepted",
        "created_at": CREATED + timedelta(minutes=5),
        "translation_of": None,
    }
    return DocumentForFhir(**(defaults | fields))


@pytest.fixture
def case() -> CaseForFhir:
    """A breast cancer case from Ukraine asking for an opinion from Germany."""
    return CaseForFhir(
        case_id=CASE_ID,
        status="ready",
        status_reason="All documents are in English or German",
        created_at=CREATED,
        updated_at=CREATED + timedelta(days=2, hours=3),
        icd10="C50.9",
        icd10_display="Malignant neoplasm of breast, unspecified",
        diagnosis_text="Left breast cancer, diagnosed after core biopsy in January 2025",
        histology="8500/3",
        stage_tnm="T2N0M0",
        stage_group="IIA",
        reasons=["confirm_diagnosis_or_stage", "choose_treatment"],
        questions=[
            "Is breast-conserving surgery possible for me, or is a mastectomy needed?",
            "Should I have chemotherapy before the operation?",
        ],
        destination_preference="countries",
        destination_countries=["DE"],
        locale="uk",
        birth_date=date(1979, 6, 14),
        consents=[
            ConsentForFhir(kind="processing", version="2025-01", granted_at=CREATED),
            ConsentForFhir(kind="cross_border", version="2025-02", granted_at=CREATED),
        ],
        documents=[
            _document(
                document_id=DISCHARGE_ID,
                kind="discharge_summary",
                sha256=_digest(b"discharge summary, in Ukrainian"),
                language="uk",
                status="translation_required",
            ),
            _document(
                document_id=TRANSLATION_ID,
                kind="translation",
                sha256=_digest(b"discharge summary, in German"),
                language="de",
                status="accepted",
                created_at=CREATED + timedelta(days=2),
                translation_of=DISCHARGE_ID,
            ),
            _document(
                document_id=PATHOLOGY_ID,
                kind="pathology_report",
                media_type="image/jpeg",
                sha256=_digest(b"pathology report"),
                language="en",
                status="accepted",
            ),
        ],
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


def _full_url(bundle: dict[str, Any], resource: dict[str, Any]) -> str:
    (url,) = [entry["fullUrl"] for entry in bundle["entry"] if entry["resource"] is resource]
    return url


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


def test_the_bundle_parses_back_as_an_r4_collection(case):
    bundle = case_bundle(case, base_url=BASE)

    parsed = Bundle.model_validate(bundle)

    assert parsed.type == "collection"
    assert [e.resource.get_resource_type() for e in parsed.entry] == [
        "Patient",
        "Condition",
        "ServiceRequest",
        "Task",
        "DocumentReference",
        "DocumentReference",
        "DocumentReference",
        "Consent",
        "Consent",
    ]
    assert parsed.model_dump(mode="json") == bundle


def test_the_bundle_is_plain_json_and_the_same_every_time(case):
    bundle = case_bundle(case, base_url=BASE)

    assert json.loads(json.dumps(bundle)) == bundle
    assert case_bundle(case, base_url=BASE + "/") == bundle


@pytest.mark.parametrize(("case_status", "task_status"), sorted(DESIGN_TASK_STATUS.items()))
def test_every_case_status_maps_to_the_task_status_of_the_design(case, case_status, task_status):
    bundle = case_bundle(replace(case, status=case_status), base_url=BASE)

    task = _one(bundle, "Task")
    assert task["status"] == task_status
    assert task["intent"] == "order"
    assert task["statusReason"]["text"] == case.status_reason
    assert task["lastModified"] == "2025-03-05T12:15:00Z"
    if case_status == "action_required":
        assert task["businessStatus"]["text"] == "awaiting-information"
    elif case_status == "information_requested":
        assert task["businessStatus"]["coding"][0]["code"] == "information-requested"
    elif case_status == "choosing_center":
        assert task["businessStatus"]["coding"][0]["code"] == "awaiting-patient-choice"
    else:
        assert "businessStatus" not in task
    assert _one(bundle, "ServiceRequest")["status"] == SERVICE_REQUEST_STATUS[case_status]


def test_the_status_tables_cover_exactly_the_case_statuses_with_fhir_codes():
    case_statuses = {status.value for status in CaseStatus}

    assert set(TASK_STATUS) == case_statuses == set(SERVICE_REQUEST_STATUS)
    assert TASK_STATUS == DESIGN_TASK_STATUS
    assert set(TASK_STATUS.values()) <= FHIR_TASK_STATUSES
    assert set(SERVICE_REQUEST_STATUS.values()) <= FHIR_REQUEST_STATUSES


def test_the_task_tracks_the_service_request_for_the_patient(case):
    bundle = case_bundle(case, base_url=BASE)

    task = _one(bundle, "Task")
    assert task["focus"]["reference"] == REQUEST_URL
    assert task["for"]["reference"] == PATIENT_URL
    assert task["authoredOn"] == "2025-03-03T09:15:00Z"


def test_the_patient_carries_no_name_telecom_or_address(case):
    patient = _one(case_bundle(case, base_url=BASE), "Patient")

    assert set(patient) == {"resourceType", "id", "text", "identifier", "birthDate"}
    assert patient["birthDate"] == "1979-06-14"
    assert patient["text"]["status"] == "generated"
    (identifier,) = patient["identifier"]
    assert identifier["value"] == f"urn:uuid:{CASE_ID}"
    assert identifier["type"]["coding"][0]["code"] == "MR"


def test_a_patient_without_a_known_birth_date_has_none(case):
    patient = _one(case_bundle(replace(case, birth_date=None), base_url=BASE), "Patient")

    assert "birthDate" not in patient


def test_every_reference_resolves_to_an_entry_of_the_bundle(case):
    bundle = case_bundle(case, base_url=BASE)

    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == _expected_url(resource)
    references = _references(bundle)
    assert references
    assert set(references) <= set(full_urls)


def test_the_condition_carries_the_icd10_diagnosis_stage_and_histology(case):
    condition = _one(case_bundle(case, base_url=BASE), "Condition")

    assert condition["code"]["coding"] == [
        {
            "system": "http://hl7.org/fhir/sid/icd-10",
            "code": "C50.9",
            "display": "Malignant neoplasm of breast, unspecified",
        }
    ]
    assert condition["code"]["text"] == case.diagnosis_text
    assert [stage["summary"]["text"] for stage in condition["stage"]] == ["IIA", "T2N0M0"]
    assert [note["text"] for note in condition["note"]] == [
        "Histology (ICD-O-3 morphology): 8500/3"
    ]
    assert condition["subject"]["reference"] == PATIENT_URL


def test_a_histology_in_words_is_kept_as_reported(case):
    changed = replace(case, histology="Invasive ductal carcinoma, G2")

    condition = _one(case_bundle(changed, base_url=BASE), "Condition")

    assert condition["note"] == [{"text": "Histology (as reported): Invasive ductal carcinoma, G2"}]


def test_the_service_request_asks_for_a_second_opinion_with_the_patients_reasons(case):
    bundle = case_bundle(case, base_url=BASE)

    request = _one(bundle, "ServiceRequest")
    assert request["intent"] == "order"
    assert request["status"] == "active"
    assert request["authoredOn"] == "2025-03-03T09:15:00Z"
    assert request["reasonReference"] == [
        {"reference": _full_url(bundle, _one(bundle, "Condition")), "type": "Condition"}
    ]
    assert [reason["coding"][0]["code"] for reason in request["reasonCode"]] == case.reasons
    assert [note["text"] for note in request["note"]] == case.questions
    assert [ref["reference"] for ref in request["supportingInfo"]] == [
        _full_url(bundle, document) for document in _resources(bundle, "DocumentReference")
    ]
    assert request["locationCode"] == [
        {
            "coding": [{"system": "urn:iso:std:iso:3166", "code": "DE", "display": "Germany"}],
            "text": "Germany",
        }
    ]


def test_the_translation_relates_to_its_original(case):
    bundle = case_bundle(case, base_url=BASE)

    documents = {doc["id"]: doc for doc in _resources(bundle, "DocumentReference")}
    translation = documents[str(TRANSLATION_ID)]
    assert translation["relatesTo"] == [
        {
            "code": "transforms",
            "target": {
                "reference": _full_url(bundle, documents[str(DISCHARGE_ID)]),
                "type": "DocumentReference",
            },
        }
    ]
    assert "relatesTo" not in documents[str(DISCHARGE_ID)]
    assert translation["content"][0]["attachment"]["language"] == "de"


def test_a_document_reference_names_its_record_id_and_its_sha256(case):
    bundle = case_bundle(case, base_url=BASE)

    pathology = next(
        doc for doc in _resources(bundle, "DocumentReference") if doc["id"] == str(PATHOLOGY_ID)
    )
    assert pathology["status"] == "current"
    assert pathology["type"]["text"] == "pathology_report"
    assert pathology["subject"]["reference"] == PATIENT_URL
    attachment = pathology["content"][0]["attachment"]
    # No url: nothing at the deployment's address serves the bytes to every reader; records
    # serves them by the document id, the masterIdentifier.
    assert attachment == {"contentType": "image/jpeg", "language": "en", "size": 245_760}
    assert pathology["masterIdentifier"]["value"] == f"urn:uuid:{PATHOLOGY_ID}"
    # No SHA-1 to give, so no Attachment.hash; the SHA-256 is an RFC 6920 name instead.
    (digest_identifier,) = pathology["identifier"]
    scheme, encoded = digest_identifier["value"].split(";")
    assert scheme == "ni:///sha-256"
    assert base64.urlsafe_b64decode(encoded + "=") == hashlib.sha256(b"pathology report").digest()


def test_a_superseded_document_and_a_huge_study_are_stated_validly(case):
    study = _document(
        document_id=UUID("5f1c2d3e-0000-4000-8000-000000000004"),
        kind="imaging_study",
        media_type="application/dicom",
        size_bytes=3 * 2**30,
        language=None,
        status="superseded",
    )
    bundle = case_bundle(replace(case, documents=[*case.documents, study]), base_url=BASE)

    references = {doc["id"]: doc for doc in _resources(bundle, "DocumentReference")}
    reference = references[str(study.document_id)]
    assert reference["status"] == "superseded"
    # 3 GiB does not fit FHIR R4's unsignedInt, so the size is left out rather than wrong.
    assert reference["content"][0]["attachment"] == {"contentType": "application/dicom"}


def test_consents_carry_their_versions_and_what_each_permits(case):
    consents = _resources(case_bundle(case, base_url=BASE), "Consent")

    by_policy = {consent["policy"][0]["uri"]: consent for consent in consents}
    assert set(by_policy) == {
        f"{BASE}/v1/consent-texts/processing/2025-01",
        f"{BASE}/v1/consent-texts/cross_border/2025-02",
    }
    for consent in consents:
        assert consent["status"] == "active"
        assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
        # HL7's own consent types (v3 ActConsentType), not LOINC: checked offline too.
        assert consent["category"][0]["coding"][0]["system"] == (
            "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        )
        assert consent["dateTime"] == "2025-03-03T09:15:00Z"
        assert consent["patient"]["reference"] == PATIENT_URL
    processing = by_policy[f"{BASE}/v1/consent-texts/processing/2025-01"]
    cross_border = by_policy[f"{BASE}/v1/consent-texts/cross_border/2025-02"]
    assert "version 2025-01" in processing["text"]["div"]
    assert "version 2025-02" in cross_border["text"]["div"]
    # The cross-border consent permits disclosure (to a center abroad) under its own text; the
    # processing consent permits collection and use. Both are for treatment.
    actions = {
        kind: [a["coding"][0]["code"] for a in consent["provision"]["action"]]
        for kind, consent in [("processing", processing), ("cross_border", cross_border)]
    }
    assert actions == {"processing": ["collect", "use"], "cross_border": ["disclose"]}
    categories = {
        kind: consent["category"][0]["coding"][0]["code"]
        for kind, consent in [("processing", processing), ("cross_border", cross_border)]
    }
    assert categories == {"processing": "INFA", "cross_border": "IDSCL"}
    for consent in consents:
        assert [p["code"] for p in consent["provision"]["purpose"]] == ["TREAT"]
        assert "policyRule" not in consent


def test_an_older_consent_of_the_same_kind_is_kept_as_inactive(case):
    renewed = ConsentForFhir(
        kind="processing", version="2025-03", granted_at=CREATED + timedelta(days=1)
    )
    consents = _resources(
        case_bundle(replace(case, consents=[*case.consents, renewed]), base_url=BASE), "Consent"
    )

    status_by_version = {
        consent["policy"][0]["uri"].rsplit("/", 1)[1]: consent["status"] for consent in consents
    }
    assert status_by_version == {"2025-01": "inactive", "2025-02": "active", "2025-03": "active"}


def test_an_unknown_case_status_is_refused(case):
    with pytest.raises(ValueError, match="unknown case status 'closed'"):
        case_bundle(replace(case, status="closed"), base_url=BASE)


def test_a_translation_of_a_document_outside_the_case_is_refused(case):
    orphan = _document(
        document_id=UUID("5f1c2d3e-0000-4000-8000-000000000005"),
        kind="translation",
        translation_of=UUID("5f1c2d3e-0000-4000-8000-0000000000ff"),
    )

    with pytest.raises(ValueError, match="not another document of the case"):
        case_bundle(replace(case, documents=[*case.documents, orphan]), base_url=BASE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reasons": ["second_guess"]}, "unknown second-opinion reason"),
        ({"destination_countries": ["XX"]}, "unknown ISO 3166-1"),
        ({"destination_countries": []}, "does not match the countries"),
        ({"updated_at": CREATED - timedelta(seconds=1)}, "updated_at is before created_at"),
        ({"created_at": CREATED.replace(tzinfo=None)}, "has no time zone"),
    ],
)
def test_a_case_the_bundle_cannot_state_faithfully_is_refused(case, change, message):
    with pytest.raises(ValueError, match=message):
        case_bundle(replace(case, **change), base_url=BASE)


def test_a_relative_base_url_is_refused(case):
    with pytest.raises(ValueError, match="absolute http"):
        case_bundle(case, base_url="/fhir")


def test_every_reason_of_the_contracts_has_a_coding(case):
    reasons = [reason.value for reason in ReferralReason]

    request = _one(case_bundle(replace(case, reasons=reasons), base_url=BASE), "ServiceRequest")

    assert [reason["coding"][0]["code"] for reason in request["reasonCode"]] == reasons


@pytest.mark.parametrize("kind", [kind.value for kind in DocumentKind])
def test_every_document_kind_of_the_contracts_is_a_document_type(case, kind):
    document = _document(document_id=UUID(int=7), kind=kind)

    bundle = case_bundle(replace(case, documents=[document]), base_url=BASE)

    assert _one(bundle, "DocumentReference")["type"]["text"] == kind


@pytest.mark.parametrize(
    ("preference", "countries", "location"),
    [
        ("ukraine", [], [{"system": "urn:iso:std:iso:3166", "code": "UA", "display": "Ukraine"}]),
        ("abroad", [], None),
    ],
)
def test_the_destination_preference_is_stated(case, preference, countries, location):
    changed = replace(case, destination_preference=preference, destination_countries=countries)

    request = _one(case_bundle(changed, base_url=BASE), "ServiceRequest")

    assert request["orderDetail"][0]["coding"][0]["code"] == preference
    (location_code,) = request["locationCode"]
    assert location_code.get("coding") == location


def test_the_opinions_outcome_is_the_tasks_coded_output(case):
    outcome = {
        "diagnosis": "changed",
        "icd10": "C50.4",
        "stage": "confirmed",
        "new_stage": None,
        "treatment": "alternative_proposed",
        "additional_tests": ["HER2 in situ hybridisation"],
        "clinical_trials": True,
        "clinical_trials_detail": None,
    }
    done = replace(case, status="opinion_delivered", opinion_outcome=outcome)
    task = _one(case_bundle(done, base_url=BASE), "Task")
    outputs = {o["type"]["text"]: o for o in task["output"]}
    diagnosis = outputs["diagnosis"]["valueCodeableConcept"]["coding"]
    assert [c["code"] for c in diagnosis] == ["diagnosis-changed", "C50.4"]
    assert diagnosis[1]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert outputs["treatment"]["valueCodeableConcept"]["coding"][0]["code"] == (
        "treatment-alternative-proposed"
    )
    assert outputs["additional-test"]["valueString"] == "HER2 in situ hybridisation"
    assert outputs["clinical-trials-mentioned"]["valueBoolean"] is True
    assert "output" not in _one(case_bundle(case, base_url=BASE), "Task")


def test_follow_up_questions_and_answers_are_communications(case):
    from uuid import uuid4

    from referrals_intake.fhir import FollowUpForFhir

    asked = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
    answered_id, open_id = uuid4(), uuid4()
    follow_ups = [
        FollowUpForFhir(
            answered_id, "charite-berlin", "Can I join the trial?", asked, "Yes.", asked
        ),
        FollowUpForFhir(open_id, "charite-berlin", "And radiotherapy?", asked),
    ]
    bundle = case_bundle(replace(case, follow_ups=follow_ups), base_url=BASE)
    comms = {c["id"]: c for c in _resources(bundle, "Communication")}
    assert set(comms) >= {str(answered_id), str(open_id)}
    answers = [c for c in comms.values() if c.get("inResponseTo")]
    (answer,) = answers
    assert answer["inResponseTo"][0]["reference"] == f"urn:uuid:{answered_id}"
    assert answer["payload"][0]["contentString"] == "Yes."
    assert comms[str(open_id)]["payload"][0]["contentString"] == "And radiotherapy?"
    Bundle.model_validate(bundle)


def test_every_resource_has_a_generated_narrative(case):
    bundle = case_bundle(replace(case, status="opinion_delivered"), base_url=BASE)

    for entry in bundle["entry"]:
        text = entry["resource"]["text"]
        assert text["status"] == "generated"
        assert text["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


def test_the_center_owns_the_task_and_the_opinion_is_its_output(case):
    from referrals_intake.fhir import FollowUpForFhir

    opinion = _document(document_id=UUID(int=11), kind="opinion")
    asked = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
    question = FollowUpForFhir(UUID(int=12), "DE-HD-NCT", "Radiotherapy?", asked, "No.", asked)
    done = replace(
        case,
        status="opinion_delivered",
        center_code="DE-HD-NCT",
        documents=[*case.documents, opinion],
        follow_ups=[question],
    )

    bundle = case_bundle(done, base_url=BASE)

    task = _one(bundle, "Task")
    assert task["owner"]["type"] == "Organization"
    assert task["owner"]["identifier"]["value"] == "DE-HD-NCT"
    references = {o["type"]["text"]: o["valueReference"]["reference"] for o in task["output"]}
    assert references["opinion"] == f"urn:uuid:{opinion.document_id}"
    answer = next(c for c in _resources(bundle, "Communication") if c.get("inResponseTo"))
    assert references["follow-up-answer"] == _expected_url(answer)
    assert "owner" not in _one(case_bundle(case, base_url=BASE), "Task")


def test_every_code_of_our_own_systems_is_defined(case):
    from referrals_intake.fhir import code_systems

    outcome = {
        "diagnosis": "changed",
        "icd10": "C50.4",
        "stage": "not_assessed",
        "treatment": "agreed",
        "additional_tests": [],
        "clinical_trials": False,
    }
    bundles = [
        case_bundle(replace(case, status=status, opinion_outcome=outcome), base_url=BASE)
        for status in TASK_STATUS
    ]
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

    ours = [c for b in bundles for c in codings(b) if c["system"].startswith(f"{BASE}/fhir/")]
    assert ours
    for coding in ours:
        assert defined[(coding["system"], coding["code"])] == coding["display"]


def test_a_follow_up_answers_documents_are_references_in_its_payload(case):
    """Issue 21 §1: the answer's documents are its payload's references to their
    DocumentReferences (only those in the bundle), not opinions of their own in the Task."""
    from referrals_intake.fhir import FollowUpForFhir

    opinion = _document(document_id=UUID(int=21), kind="opinion")
    note = _document(document_id=UUID(int=22), kind="opinion")
    asked = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
    question = FollowUpForFhir(
        UUID(int=23),
        "DE-HD-NCT",
        "The staging?",
        asked,
        "See the note.",
        asked,
        document_ids=[note.document_id, UUID(int=99)],  # the second is not in the bundle
    )
    done = replace(
        case,
        status="opinion_delivered",
        center_code="DE-HD-NCT",
        documents=[*case.documents, opinion, note],
        follow_ups=[question],
    )
    bundle = case_bundle(done, base_url=BASE)
    (answer,) = [c for c in _resources(bundle, "Communication") if c.get("inResponseTo")]
    assert answer["payload"] == [
        {"contentString": "See the note."},
        {
            "contentReference": {
                "reference": f"urn:uuid:{note.document_id}",
                "type": "DocumentReference",
            }
        },
    ]
    outputs = [o["valueReference"]["reference"] for o in _one(bundle, "Task")["output"]]
    assert f"urn:uuid:{opinion.document_id}" in outputs
    assert f"urn:uuid:{note.document_id}" not in outputs  # output through the answer instead
    Bundle.model_validate(bundle)


@pytest.mark.parametrize(
    ("payer", "payor", "coding"),
    [
        (
            {"kind": "self_pay"},
            {"type": "Patient"},
            [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/coverage-selfpay",
                    "code": "pay",
                    "display": "PAY",
                }
            ],
        ),
        (
            {"kind": "insurer", "insurer": "allianz-care", "insurer_name": "Allianz Care"},
            {
                "type": "Organization",
                "identifier": {
                    "system": f"{BASE}/fhir/NamingSystem/insurer",
                    "value": "allianz-care",
                },
                "display": "Allianz Care",
            },
            None,
        ),
        (
            {"kind": "charity"},
            {"type": "Organization", "display": "a charity or fund"},
            None,
        ),
    ],
)
def test_who_pays_is_a_coverage_the_service_request_names(case, payer, payor, coding):
    from referrals_intake.fhir import PayerForFhir

    bundle = case_bundle(replace(case, payer=PayerForFhir(**payer)), base_url=BASE)
    coverage = _one(bundle, "Coverage")
    assert coverage["status"] == "active"
    patient = next(
        e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert coverage["beneficiary"]["reference"] == patient
    got = coverage["payor"][0]
    if payor["type"] == "Patient":
        assert got["reference"] == patient
    else:
        assert got == payor
    assert coverage["type"].get("coding") == coding
    request = _one(bundle, "ServiceRequest")
    assert request["insurance"] == [{"reference": f"urn:uuid:{coverage['id']}", "type": "Coverage"}]
    Bundle.model_validate(bundle)
    # Without a payer there is no Coverage.
    plain = case_bundle(replace(case, payer=None), base_url=BASE)
    assert not _resources(plain, "Coverage")
    assert "insurance" not in _one(plain, "ServiceRequest")
