"""One concept seen by two audiences: the patient's front end (intake) and the center (partners).

Each audience has its own view of a shipment, an information request, a follow-up question, a
meeting and the payer (what one may see, the other may not), but where both views carry the same
fact they carry it under the same name with the same schema. A fact one audience alone sees is
listed below with the reason; the v1 names that differed (`shipment_id`, `new_document_ids`) stay
beside the agreed ones, marked deprecated, until a v2 (docs/event-catalogue.md, Compatibility).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app

pytestmark = pytest.mark.unit

PAIRS = {
    # concept: (the patient's view in intake, the center's view in partners)
    "shipment": ("ShipmentPublic", "ShipmentView"),
    "information request": ("InformationRequestPublic", "InformationRequestView"),
    "follow-up question": ("FollowUpPublic", "FollowUpView"),
    "meeting": ("MeetingPublic", "MeetingView"),
    "payer": ("Payer", "PayerView"),
}
PATIENT_ONLY = {
    "center_code": "which center: a center knows itself",
    "cancel_reason": "the patient's own reason for cancelling, never a center's to read",
    "chosen_slot_id": "the patient's pick while the center's calendar confirms it",
    "patient_time_zone": "where the patient is: the center sees times in UTC only",
}
CENTER_ONLY = {
    "insurer_name": "the policy's details, opened for the accepting center only",
    "policy_number": "the policy's details, opened for the accepting center only",
}
AUDIENCE_SCHEMAS = {
    # A field whose values one audience sees more of: the patient's meeting may be `booking`
    # (chosen, the center's calendar confirming), a state the center's own view never has.
    ("meeting", "status"),
    # The patient also reads requests from events published before the information loop,
    # which carry no due date; a center only has requests made through its API, which do.
    ("information request", "due_at"),
    # Each side's own view of the shipments and requests it lists.
    ("information request", "shipments"),
}
RENAMED_IN_V2 = {"shipment_id": "id", "new_document_ids": "document_ids"}


@pytest.fixture(scope="module")
def views() -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        create_intake_app().openapi()["components"]["schemas"],
        create_partners_app().openapi()["components"]["schemas"],
    )


def _current(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema["properties"].items() if not v.get("deprecated")}


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    def bare(p: dict[str, Any]) -> str:
        return json.dumps(
            {k: v for k, v in p.items() if k not in ("description", "title", "readOnly")},
            sort_keys=True,
        )

    return bare(left) == bare(right)


@pytest.mark.parametrize("concept", sorted(PAIRS))
def test_a_fact_both_audiences_see_has_one_name_and_one_schema(views, concept: str) -> None:
    intake, partners = views
    patient_name, center_name = PAIRS[concept]
    patient, center = _current(intake[patient_name]), _current(partners[center_name])

    assert set(patient) - set(center) <= set(PATIENT_ONLY), concept
    assert set(center) - set(patient) <= set(CENTER_ONLY), concept
    for name in set(patient) & set(center):
        if (concept, name) in AUDIENCE_SCHEMAS:
            continue
        assert _same(patient[name], center[name]), (concept, name, patient[name], center[name])


def test_the_v1_names_stay_deprecated_beside_the_agreed_ones(views) -> None:
    intake, partners = views
    for components in (intake, partners):
        for schema in components.values():
            properties = schema.get("properties") or {}
            for old, new in RENAMED_IN_V2.items():
                if old in properties:
                    assert properties[old].get("deprecated") is True, old
                    assert new in properties, (old, new)


def test_the_check_finds_a_fact_under_two_names() -> None:
    patient = {"properties": {"shipment_id": {"type": "string"}, "carrier": {"type": "string"}}}
    center = {"properties": {"id": {"type": "string"}, "carrier": {"type": "integer"}}}
    assert set(_current(patient)) - set(_current(center)) == {"shipment_id"}
    assert not _same(patient["properties"]["carrier"], center["properties"]["carrier"])
