"""A further opinion, and the center that owns the case, in the FHIR view of a case.

After an opinion the patient may ask for one more from another center. The Task says which
opinion the case is on and, per further opinion, why it was asked; when the patient agreed to
share the earlier opinions, a Consent permits disclosing exactly the shared documents and the
Task points at it. The Task's owner is the center the case is with, when intake knows it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from fhir.resources.R4B.bundle import Bundle

from referrals_common.contracts.intake import FurtherOpinionReason
from referrals_intake.fhir import (
    CaseForFhir,
    ConsentForFhir,
    DocumentForFhir,
    FurtherOpinionForFhir,
    InformationRequestForFhir,
    case_bundle,
    code_systems,
)

pytestmark = pytest.mark.unit

BASE = "https://referrals.test"
CASE_ID = UUID("0b9a4a4e-8f53-4c1e-9c1a-3f0f6c7d2e11")
CREATED = datetime(2025, 3, 3, 9, 15, tzinfo=UTC)
ASKED = datetime(2025, 4, 2, 18, 40, tzinfo=UTC)
FIRST_OPINION_ID = UUID("5f1c2d3e-0000-4000-8000-000000000011")
SECOND_OPINION_ID = UUID("5f1c2d3e-0000-4000-8000-000000000012")
PATHOLOGY_ID = UUID("5f1c2d3e-0000-4000-8000-000000000003")
SYSTEM = f"{BASE}/fhir/CodeSystem"


def _document(document_id: UUID, kind: str) -> DocumentForFhir:
    return DocumentForFhir(
        document_id=document_id,
        kind=kind,
        media_type="application/pdf",
        size_bytes=120_000,
        sha256="cd" * 32,
        language="en",
        status="accepted",
        created_at=CREATED + timedelta(days=10),
        translation_of=None,
    )


SHARED = FurtherOpinionForFhir(
    opinion_round=2,
    reason="conflicting_opinions",
    share_earlier_opinions=True,
    requested_at=ASKED,
    consented_at=ASKED,
    shared_document_ids=[FIRST_OPINION_ID],
)
NOT_SHARED = FurtherOpinionForFhir(
    opinion_round=3,
    reason="another_view",
    share_earlier_opinions=False,
    requested_at=ASKED + timedelta(days=30),
)


@pytest.fixture
def case() -> CaseForFhir:
    """A case sent on for a second opinion after the first, with the first opinion shared."""
    return CaseForFhir(
        case_id=CASE_ID,
        status="ready",
        status_reason="The patient asked for a further opinion from another cancer center, "
        "sharing the earlier opinion.",
        created_at=CREATED,
        updated_at=ASKED,
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
        documents=[
            _document(PATHOLOGY_ID, "pathology_report"),
            _document(FIRST_OPINION_ID, "opinion"),
        ],
        opinion_round=2,
        further_opinions=[SHARED],
    )


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def _task(case: CaseForFhir) -> dict[str, Any]:
    (task,) = _resources(case_bundle(case, base_url=BASE), "Task")
    return task


def _inputs(task: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []
    for each in task.get("input", []):
        value = next(v for k, v in each.items() if k.startswith("value"))
        found.append((each["type"]["coding"][0]["code"], value))
    return found


def _sharing_consents(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for c in _resources(bundle, "Consent")
        if "/v1/consent-texts/share_earlier_opinions/" in c["policy"][0]["uri"]
    ]


def test_the_task_says_which_opinion_and_why_it_was_asked(case):
    task = _task(case)

    consent_id = uuid5(CASE_ID, "consent:share-earlier-opinions:2")
    assert _inputs(task) == [
        ("opinion-round", 2),
        (
            "further-opinion",
            {
                "coding": [
                    {
                        "system": f"{SYSTEM}/further-opinion-reason",
                        "code": "conflicting_opinions",
                        "display": "The opinion differs from the treating doctors' plan or "
                        "from another",
                    }
                ],
                "text": "The opinion differs from the treating doctors' plan or from another",
            },
        ),
        ("earlier-opinions-shared", {"reference": f"urn:uuid:{consent_id}", "type": "Consent"}),
    ]
    assert task["status"] == "ready"
    assert "Opinion 2 of the case." in task["text"]["div"]
    assert "earlier opinions shared with the next cancer center" in task["text"]["div"]


def test_sharing_the_earlier_opinion_is_a_consent_to_disclose_exactly_the_shared_documents(case):
    bundle = case_bundle(case, base_url=BASE)

    (consent,) = _sharing_consents(bundle)
    assert consent["status"] == "active"
    assert consent["dateTime"] == "2025-04-02T18:40:00Z"
    assert consent["patient"]["reference"] == f"urn:uuid:{uuid5(CASE_ID, 'Patient')}"
    provision = consent["provision"]
    assert provision["type"] == "permit"
    assert [a["coding"][0]["code"] for a in provision["action"]] == ["disclose"]
    assert [p["code"] for p in provision["purpose"]] == ["TREAT"]
    assert provision["data"] == [
        {
            "meaning": "instance",
            "reference": {"reference": f"urn:uuid:{FIRST_OPINION_ID}", "type": "DocumentReference"},
        }
    ]
    # The consents to processing stay as they were.
    assert len(_resources(bundle, "Consent")) == 2


def test_a_further_opinion_without_sharing_has_no_sharing_consent(case):
    third = replace(
        case,
        documents=[*case.documents, _document(SECOND_OPINION_ID, "opinion")],
        opinion_round=3,
        further_opinions=[SHARED, NOT_SHARED],
    )

    bundle = case_bundle(third, base_url=BASE)

    assert len(_sharing_consents(bundle)) == 1
    (task,) = _resources(bundle, "Task")
    assert [code for code, _ in _inputs(task)] == [
        "opinion-round",
        "further-opinion",
        "earlier-opinions-shared",
        "further-opinion",
    ]
    assert _inputs(task)[0] == ("opinion-round", 3)
    assert (
        "Further opinion 3 asked 2025-05-02T18:40:00+00:00: Another cancer center's view; "
        "the earlier opinions not shared." in task["text"]["div"]
    )


def test_only_shared_documents_the_bundle_holds_are_named(case):
    outside = UUID("5f1c2d3e-0000-4000-8000-0000000000ff")
    changed = replace(
        case, further_opinions=[replace(SHARED, shared_document_ids=[FIRST_OPINION_ID, outside])]
    )

    bundle = case_bundle(changed, base_url=BASE)

    (consent,) = _sharing_consents(bundle)
    assert [d["reference"]["reference"] for d in consent["provision"]["data"]] == [
        f"urn:uuid:{FIRST_OPINION_ID}"
    ]
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert f"urn:uuid:{outside}" not in full_urls
    Bundle.model_validate(bundle)


def test_a_case_on_its_first_opinion_has_no_task_input(case):
    first = replace(case, opinion_round=1, further_opinions=[])

    bundle = case_bundle(first, base_url=BASE)

    assert "input" not in _resources(bundle, "Task")[0]
    assert _sharing_consents(bundle) == []


@pytest.mark.parametrize("reason", [reason.value for reason in FurtherOpinionReason])
def test_every_further_opinion_reason_of_the_contracts_is_a_defined_code(case, reason):
    task = _task(replace(case, further_opinions=[replace(SHARED, reason=reason)]))

    defined = {
        (system["url"], concept["code"]): concept["display"]
        for system in code_systems(base_url=BASE)
        for concept in system["concept"]
    }
    for each in task["input"]:
        for coding in [
            *each["type"]["coding"],
            *each.get("valueCodeableConcept", {}).get("coding", []),
        ]:
            assert defined[(coding["system"], coding["code"])] == coding["display"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"further_opinions": [replace(SHARED, opinion_round=3)]}, "do not count 2, 3"),
        ({"further_opinions": [SHARED, SHARED]}, "do not count 2, 3"),
        ({"opinion_round": 1}, "up to the case's opinion round"),
        ({"further_opinions": [replace(SHARED, reason="cheaper")]}, "unknown further opinion"),
        (
            {"further_opinions": [replace(SHARED, requested_at=ASKED.replace(tzinfo=None))]},
            "has no time zone",
        ),
    ],
)
def test_further_opinions_the_bundle_cannot_state_faithfully_are_refused(case, change, message):
    with pytest.raises(ValueError, match=message):
        case_bundle(replace(case, **change), base_url=BASE)


# ------------------------------------------------------------------------- the Task's owner


def test_the_center_that_gave_the_opinion_owns_the_task(case):
    delivered = replace(case, status="opinion_delivered", center_code="AT-VIE-CCC")

    owner = _task(delivered)["owner"]

    assert owner["type"] == "Organization"
    assert owner["identifier"] == {
        "system": f"{BASE}/fhir/NamingSystem/cancer-center",
        "value": "AT-VIE-CCC",
    }


@pytest.mark.parametrize("status", ["ready", "referred", "accepted"])
def test_without_a_known_center_the_task_has_no_owner(case, status):
    assert "owner" not in _task(replace(case, status=status, center_code=None))


def test_while_a_center_waits_for_information_it_owns_the_task(case):
    waiting = InformationRequestForFhir(
        request_id=UUID("7a000000-0000-4000-8000-000000000001"),
        center_code="AT-VIE-CCC",
        requested_at=ASKED + timedelta(days=3),
        due_at=None,
        reason="Staging is incomplete",
        items=[("imaging", "Chest CT")],
        status="open",
    )
    asked = replace(case, status="information_requested", information_requests=[waiting])

    assert _task(asked)["owner"]["identifier"]["value"] == "AT-VIE-CCC"
