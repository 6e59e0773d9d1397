"""The official HL7 FHIR validator accepts intake's FHIR export of a case in every state.

The validator (`org.hl7.fhir.validation`'s command line, installed by devstack from Maven Central
with the FHIR R4 core, terminology and extensions packages) runs offline, without a terminology
server, once over all the bundles (it is a slow JVM start): one exported by the real platform
(a case opened through intake's public API), one per case status built by the same
`case_bundle` from realistic case rows, and cases after the opinion with consultation meetings in
every state (booked, cancelled by either side, offered, chosen, held, missed) and with further
opinions (the earlier opinion shared, then not). The platform's own code systems
(`code_systems`) are given to it as an implementation guide, so every code of ours is checked
too.

Without a terminology server the validator cannot look into external code systems; the HL7
terminology package lists them with no content. ICD-10, ISO 3166, the IETF language tags and
the media types are given to it from the code lists the platform ships (`fhir_terminology`), so
those codes are checked too (each exists, with its display). LOINC and SNOMED CT are licensed
terminologies no package here carries: the validator says for each such code that it cannot
check it, naming the system. Those messages, and only those, are set apart, counted and printed;
every other error or warning fails the test. Information messages are printed.

What the validator said before the stand-ins and HL7's consent categories (18 bundles): 154
errors (every media type: `urn:ietf:bcp:13 ... could not be found`) and 299 warnings (LOINC
145+36, the language tags 47, ISO 3166 32, ICD-10 24, SNOMED CT 17), all set apart as not
checked offline. After: 0 errors, and warnings only for LOINC (the document types of
DocumentReference.type) and SNOMED CT, counted by system in the summary line.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from rich.console import Console

from devstack import install
from devstack.demo import CASE, CONSENT_VERSION
from referrals_intake.fhir import (
    TASK_STATUS,
    CaseForFhir,
    ConsentForFhir,
    DocumentForFhir,
    FollowUpForFhir,
    FurtherOpinionForFhir,
    InformationRequestForFhir,
    MeetingForFhir,
    MeetingSlotForFhir,
    PayerForFhir,
    case_bundle,
    code_systems,
)

from .fhir_terminology import stand_ins

pytestmark = pytest.mark.e2e

BASE = "https://referrals.test"
OPENED = datetime(2026, 1, 12, 8, 30, tzinfo=UTC)

# The code systems the validator cannot read offline: their codes are checked by a terminology
# server only. A message that names another system, or no system, is the export's problem.
EXTERNAL_SYSTEMS = ("http://loinc.org", "http://snomed.info/sct")
# What the validator says when it cannot read a code system: "A definition for CodeSystem …
# could not be found", "… because the code system … was not found", "The System URI could not be
# determined for the code … (the value set's system) … could not be found".
TERMINOLOGY_UNAVAILABLE = ("could not be found", "was not found", "could not be determined")


def _document(number: int, kind: str, **fields: Any) -> DocumentForFhir:
    values: dict[str, Any] = {
        "document_id": UUID(f"5f1c2d3e-0000-4000-8000-{number:012d}"),
        "kind": kind,
        "media_type": "application/pdf",
        "size_bytes": 180_000 + number,
        "sha256": f"{number:02x}" * 32,
        "language": "en",
        "status": "accepted",
        "created_at": OPENED + timedelta(minutes=10 + number),
        "translation_of": None,
    }
    return DocumentForFhir(**(values | fields))


DISCHARGE = _document(1, "discharge_summary", language="uk", status="translation_required")
TRANSLATION = _document(
    2, "translation", language="de", translation_of=DISCHARGE.document_id, status="accepted"
)
PATHOLOGY = _document(3, "pathology_report", media_type="image/jpeg")
IMAGING = _document(4, "imaging_study", media_type="application/dicom", language=None)
OPINION = _document(5, "opinion", created_at=OPENED + timedelta(days=12))
IHC = _document(6, "pathology_report", created_at=OPENED + timedelta(days=6))

ANSWERED = InformationRequestForFhir(
    request_id=UUID("7a000000-0000-4000-8000-000000000001"),
    center_code="DE-HD-NCT",
    requested_at=OPENED + timedelta(days=4),
    due_at=OPENED + timedelta(days=18),
    reason="The tumour board needs a HER2 re-test before it can recommend a treatment",
    items=[
        ("pathology_review", "Paraffin block of the core biopsy for HER2 re-testing"),
        ("family_history", "Breast or ovarian cancer in first-degree relatives"),
    ],
    status="answered",
    answered_at=OPENED + timedelta(days=7),
    answer="My mother had breast cancer at 52. The block was sent by courier.",
    document_ids=[IHC.document_id],
    shipments=[
        {
            "shipment_id": "7b000000-0000-4000-8000-000000000001",
            "material": "blocks",
            "carrier": "DHL Express",
            "tracking_number": "1234567890",
            "sent_on": "2026-01-19",
            "received_at": "2026-01-21T10:05:00+00:00",
        }
    ],
)
STILL_OPEN = InformationRequestForFhir(
    request_id=UUID("7a000000-0000-4000-8000-000000000002"),
    center_code="DE-HD-NCT",
    requested_at=OPENED + timedelta(days=8),
    due_at=OPENED + timedelta(days=22),
    reason="Staging is incomplete",
    items=[("imaging", "Chest CT from the last 3 months")],
    status="open",
)
EXPIRED = replace(
    STILL_OPEN,
    request_id=UUID("7a000000-0000-4000-8000-000000000003"),
    center_code="AT-VIE-CCC",
    status="expired",
)
OUTCOME = {
    "diagnosis": "refined",
    "icd10": "C50.4",
    "stage": "changed",
    "new_stage": {"tnm": "cT2N1M0", "group": "IIB"},
    "treatment": "alternative_proposed",
    "additional_tests": ["HER2 in situ hybridisation", "Germline BRCA1/2 testing"],
    "clinical_trials": True,
    "clinical_trials_detail": None,
}
FOLLOW_UPS = [
    FollowUpForFhir(
        question_id=UUID("7c000000-0000-4000-8000-000000000001"),
        center_code="DE-HD-NCT",
        question="Could I join the trial you mention from Ukraine?",
        asked_at=OPENED + timedelta(days=14),
        answer="Yes: the trial accepts patients from abroad; your oncologist can refer you.",
        answered_at=OPENED + timedelta(days=15),
    ),
    FollowUpForFhir(
        question_id=UUID("7c000000-0000-4000-8000-000000000002"),
        center_code="DE-HD-NCT",
        question="Is radiotherapy needed after breast-conserving surgery?",
        asked_at=OPENED + timedelta(days=16),
    ),
]


def _slot(number: int, day: int, hour: int) -> MeetingSlotForFhir:
    starts = OPENED.replace(hour=hour, minute=0) + timedelta(days=day)
    return MeetingSlotForFhir(
        slot_id=UUID(f"7d000000-0000-4000-8000-{number:012d}"),
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
    )


SLOTS = [_slot(1, 20, 9), _slot(2, 20, 14), _slot(3, 21, 10)]
BOOKED = MeetingForFhir(
    meeting_id=UUID("7e000000-0000-4000-8000-000000000001"),
    center_code="DE-HD-NCT",
    status="booked",
    mode="video",
    created_at=OPENED + timedelta(days=13),
    slots=SLOTS,
    booked_slot=SLOTS[1],
    time_zone="Europe/Berlin",
    language="de",
    note="Please have your questions ready; an interpreter joins the call.",
)
CANCELLED_BY_PATIENT = replace(
    BOOKED,
    meeting_id=UUID("7e000000-0000-4000-8000-000000000002"),
    status="cancelled",
    cancelled_by="patient",
    cancel_reason="cannot_attend",
)
CANCELLED_BY_CENTER = replace(
    BOOKED,
    meeting_id=UUID("7e000000-0000-4000-8000-000000000003"),
    status="cancelled",
    booked_slot=None,
    cancelled_by="center",
    cancel_reason="The doctor is ill; we will offer new times.",
)
OFFERED = replace(
    BOOKED,
    meeting_id=UUID("7e000000-0000-4000-8000-000000000004"),
    status="offered",
    booked_slot=None,
)
CHOSEN = replace(
    OFFERED,
    meeting_id=UUID("7e000000-0000-4000-8000-000000000005"),
    requested_slot_id=SLOTS[2].slot_id,
)
HELD_IN_PERSON = replace(
    BOOKED,
    meeting_id=UUID("7e000000-0000-4000-8000-000000000006"),
    status="held",
    mode="in_person",
    center_address="Im Neuenheimer Feld 460, 69120 Heidelberg, building 2, room 112",
    note=None,
)
MISSED = replace(BOOKED, meeting_id=UUID("7e000000-0000-4000-8000-000000000007"), status="missed")
SECOND_OPINION = _document(
    7,
    "opinion",
    created_at=OPENED + timedelta(days=40),
    language="de",
    media_type="application/pdf",
)
FOLLOW_UP_DOCUMENT = _document(
    8,
    "opinion",
    created_at=OPENED + timedelta(days=15),
    language="en",
    media_type="application/pdf",
)
FURTHER_SHARED = FurtherOpinionForFhir(
    opinion_round=2,
    reason="conflicting_opinions",
    share_earlier_opinions=True,
    requested_at=OPENED + timedelta(days=25),
    consented_at=OPENED + timedelta(days=25),
    shared_document_ids=[OPINION.document_id],
)
FURTHER_NOT_SHARED = FurtherOpinionForFhir(
    opinion_round=3,
    reason="another_view",
    share_earlier_opinions=False,
    requested_at=OPENED + timedelta(days=45),
)


def _variants() -> dict[str, CaseForFhir]:
    """Cases after the opinion with meetings and further opinions, by bundle file name."""
    delivered = _case("opinion_delivered")
    return {
        "meeting-booked.json": replace(delivered, meetings=[BOOKED]),
        "meeting-cancelled.json": replace(
            delivered, meetings=[CANCELLED_BY_PATIENT, CANCELLED_BY_CENTER]
        ),
        "meetings-offered-chosen-held-missed.json": replace(
            delivered, meetings=[OFFERED, CHOSEN, HELD_IN_PERSON, MISSED]
        ),
        "further-opinion-referred.json": replace(
            delivered,
            status="referred",
            status_reason="Referred to cancer center AT-VIE-CCC (AT), attempt 1.",
            center_code=None,
            opinion_round=2,
            further_opinions=[FURTHER_SHARED],
            meetings=[HELD_IN_PERSON],
            updated_at=OPENED + timedelta(days=26),
        ),
        "further-opinion-delivered.json": replace(
            delivered,
            documents=[*delivered.documents, SECOND_OPINION],
            center_code="AT-VIE-CCC",
            opinion_round=2,
            further_opinions=[FURTHER_SHARED],
            status_reason="Cancer center AT-VIE-CCC delivered its written opinion.",
            updated_at=OPENED + timedelta(days=40),
        ),
        # A follow-up answered with a document the center uploaded (issue 21 §1), and who pays
        # (issue 21 §4) as a Coverage: an insurer, the patient, a charity.
        "follow-up-with-document-insurer.json": replace(
            delivered,
            documents=[*delivered.documents, FOLLOW_UP_DOCUMENT],
            follow_ups=[
                replace(FOLLOW_UPS[0], document_ids=[FOLLOW_UP_DOCUMENT.document_id]),
                FOLLOW_UPS[1],
            ],
            payer=PayerForFhir(kind="insurer", insurer="allianz-care", insurer_name="Allianz Care"),
            updated_at=OPENED + timedelta(days=17),
        ),
        "payer-self-pay.json": replace(_case("referred"), payer=PayerForFhir(kind="self_pay")),
        "payer-charity.json": replace(_case("ready"), payer=PayerForFhir(kind="charity")),
        "further-opinion-not-shared.json": replace(
            delivered,
            documents=[*delivered.documents, SECOND_OPINION],
            center_code=None,
            opinion_round=3,
            further_opinions=[FURTHER_SHARED, FURTHER_NOT_SHARED],
            status="ready",
            status_reason="The patient asked for a further opinion from another cancer center, "
            "without the earlier opinion.",
            updated_at=OPENED + timedelta(days=45),
        ),
    }


def _case(status: str) -> CaseForFhir:
    """A breast cancer case from Ukraine in `status`, with what a case in it has."""
    case = CaseForFhir(
        case_id=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:example:fhir-validator:{status}"),
        status=status,
        status_reason=None,
        created_at=OPENED,
        updated_at=OPENED + timedelta(days=1),
        icd10="C50.4",
        icd10_display="Malignant neoplasm: Upper-outer quadrant of breast",
        diagnosis_text="Carcinoma of the upper outer quadrant of the left breast",
        histology="8500/3",
        stage_tnm="cT2N1M0",
        stage_group="IIB",
        reasons=["confirm_diagnosis_or_stage", "choose_treatment"],
        questions=["Is breast-conserving surgery possible after neoadjuvant chemotherapy?"],
        destination_preference="countries",
        destination_countries=["DE", "AT"],
        locale="uk",
        birth_date=date(1979, 4, 12),
        consents=[ConsentForFhir("processing", "2026-01", OPENED + timedelta(minutes=2))],
        documents=[],
    )
    if status == "draft":
        return replace(case, destination_preference="abroad", destination_countries=[])
    submitted = replace(
        case,
        consents=[
            *case.consents,
            ConsentForFhir("cross_border", "2026-01", OPENED + timedelta(minutes=3)),
        ],
        documents=[replace(DISCHARGE, status="stored"), PATHOLOGY],
        status_reason="Submitted for a second opinion.",
    )
    ready = replace(
        submitted,
        documents=[replace(DISCHARGE, status="superseded"), TRANSLATION, PATHOLOGY, IMAGING],
        status_reason="Every document can be read by the centers.",
        updated_at=OPENED + timedelta(days=2),
    )
    with_center = replace(ready, center_code="DE-HD-NCT", updated_at=OPENED + timedelta(days=3))
    match status:
        case "submitted":
            return replace(submitted, status=status)
        case "action_required":
            return replace(
                submitted,
                status=status,
                documents=[DISCHARGE, PATHOLOGY],
                status_reason="The discharge summary needs a translation into English or German.",
            )
        case "ready" | "choosing_center" | "withdrawn":
            return replace(ready, status=status)
        case "unroutable":
            return replace(
                ready,
                status=status,
                information_requests=[EXPIRED],
                status_reason="No cancer center is left to ask.",
            )
        case "referred" | "accepted":
            return replace(with_center, status=status)
        case "information_requested":
            return replace(
                with_center,
                status=status,
                documents=[*ready.documents, IHC],
                information_requests=[EXPIRED, ANSWERED, STILL_OPEN],
                center_code=None,  # the owner comes from the open request
                updated_at=OPENED + timedelta(days=8),
            )
        case "opinion_delivered":
            return replace(
                with_center,
                status=status,
                documents=[*ready.documents, IHC, OPINION],
                information_requests=[ANSWERED],
                opinion_outcome=OUTCOME,
                follow_ups=FOLLOW_UPS,
                status_reason="Cancer center DE-HD-NCT delivered its written opinion.",
                updated_at=OPENED + timedelta(days=16),
            )
    raise AssertionError(f"no case row for status {status!r}")


@pytest.fixture(scope="module")
def validator() -> install.FhirValidator:
    return install.ensure_fhir_validator(Console(stderr=True))


@pytest.fixture(scope="module")
async def platform_export(running_platform: tuple[Any, Any]) -> dict[str, Any]:
    """The FHIR export of a case opened on the real platform (with both consents)."""
    _stack, platform = running_platform
    async with httpx.AsyncClient(base_url=platform.apis["intake"], timeout=30) as intake:
        created = await intake.post(
            "/v1/cases",
            json=CASE,
            headers={
                "X-Api-Key": str(platform.keys()["front_end"]),
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert created.status_code == 201, created.text
        case_id = created.json()["case"]["id"]
        auth = {"Authorization": f"Bearer {created.json()['access_token']}"}
        for kind in ("processing", "cross_border"):
            consent = await intake.put(
                f"/v1/cases/{case_id}/consents/{kind}",
                json={"version": CONSENT_VERSION},
                headers=auth,
            )
            assert consent.is_success, consent.text
        exported = await intake.get(f"/v1/cases/{case_id}/fhir", headers=auth)
        assert exported.status_code == 200, exported.text
        return exported.json()  # type: ignore[no-any-return]


def _issues(outcome: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(file, severity, text) of every issue in the validator's output: one OperationOutcome, or
    a Bundle of them (one per file validated)."""
    outcomes = (
        [entry["resource"] for entry in outcome.get("entry", [])]
        if outcome["resourceType"] == "Bundle"
        else [outcome]
    )
    found = []
    for each in outcomes:
        source = next(
            (
                ext.get("valueString", "")
                for ext in each.get("extension", [])
                if ext.get("url", "").endswith("operationoutcome-file")
            ),
            "",
        )
        for issue in each.get("issue", []):
            where = ", ".join(issue.get("expression", []) or issue.get("location", []))
            message_id = next(
                (
                    ext.get("valueCode", "")
                    for ext in issue.get("extension", [])
                    if ext.get("url", "").endswith("operationoutcome-message-id")
                ),
                "",
            )
            text = f"[{message_id}] {where}: {issue['details']['text']}"
            found.append((Path(source).name, issue["severity"], text))
    return found


def _terminology_unavailable(text: str) -> bool:
    """Whether a message only says that an external code system cannot be read offline."""
    return any(key in text for key in TERMINOLOGY_UNAVAILABLE) and any(
        system in text for system in EXTERNAL_SYSTEMS
    )


# The platform's start and one JVM over 18 bundles with ICD-10's 12,000 codes: past the
# default 300 s on a loaded machine (14 minutes seen at a load average of 30).
@pytest.mark.timeout(1200)
def test_the_hl7_validator_accepts_the_export_of_a_case_in_every_state(
    validator: install.FhirValidator, platform_export: dict[str, Any], tmp_path: Path
) -> None:
    bundles = {"platform-draft.json": platform_export} | {
        f"{status}.json": case_bundle(_case(status), base_url=BASE) for status in TASK_STATUS
    }
    bundles |= {name: case_bundle(case, base_url=BASE) for name, case in _variants().items()}
    for name, bundle in bundles.items():
        (tmp_path / name).write_text(json.dumps(bundle, indent=1))
    guide = tmp_path / "code-systems"
    guide.mkdir()
    systems = code_systems(base_url=BASE)
    # The platform's bundle names the deployment's own base URL in its code systems.
    platform_base = _platform_base(platform_export)
    if platform_base and platform_base != BASE:
        systems += code_systems(base_url=platform_base)
    systems += stand_ins()  # ICD-10, ISO 3166, BCP 47 and BCP 13, from what the platform ships
    for number, system in enumerate(systems):
        (guide / f"CodeSystem-{number}-{system['id']}.json").write_text(json.dumps(system))
    output = tmp_path / "outcome.json"

    run = subprocess.run(
        validator.argv(
            "-ig",
            str(guide),
            "-show-message-ids",
            *(str(tmp_path / name) for name in bundles),
            "-output",
            str(output),
        ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert output.exists(), run.stdout[-4000:] + run.stderr[-4000:]
    issues = _issues(json.loads(output.read_text()))
    offline = [i for i in issues if i[1] != "information" and _terminology_unavailable(i[2])]
    problems = [i for i in issues if i[1] in ("fatal", "error", "warning") and i not in offline]
    for file, severity, text in issues:
        kind = "not checked offline" if (file, severity, text) in offline else severity
        print(f"{file}: {kind}: {text}")
    by_system = {s: sum(1 for i in offline if s in i[2]) for s in EXTERNAL_SYSTEMS}
    print(
        f"{len(bundles)} bundles: {len(problems)} errors or warnings, {len(offline)} codes of "
        f"external systems not checked offline ({by_system}), "
        f"{sum(1 for i in issues if i[1] == 'information')} information messages"
    )
    assert problems == []
    assert {file for file, *_ in issues} <= set(bundles)


def _platform_base(bundle: dict[str, Any]) -> str | None:
    """The base URL of the platform's own code systems in a bundle, if it names one."""
    for system in _systems(bundle):
        if "/fhir/CodeSystem/" in system:
            return system.split("/fhir/CodeSystem/")[0]
    return None


def _systems(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["system"]] if isinstance(node.get("system"), str) else []
        return own + [s for value in node.values() for s in _systems(value)]
    if isinstance(node, list):
        return [s for item in node for s in _systems(item)]
    return []
