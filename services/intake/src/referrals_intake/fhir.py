"""A FHIR R4 view of one second-opinion case: one `Bundle` a cancer center or an exchange can read.

Intake fills the frozen dataclasses below from its database; `case_bundle` turns one case into a
FHIR `Bundle` of type `collection` holding the Patient (minimum personal data), the Condition (the
diagnosis and its stage), the ServiceRequest (the request for a second opinion), the Task that
tracks its fulfilment (the case lifecycle), one DocumentReference per document, one Consent per
recorded consent, one CommunicationRequest per request for more information a cancer center made,
and one Communication per request the patient answered.

The resources are built with the `fhir.resources.R4B` models (FHIR 4.3, identical to R4 for every
element used here), so building a bundle validates its structure and data types. The models do not
check codes against value sets, so every code written here comes from a table in this module.

Every resource lives at `{base_url}/fhir/{type}/{id}`, and every reference in the bundle is one of
those absolute URLs, which resolve against the entries' `fullUrl`s. Our own code systems and naming
systems also live under `{base_url}/fhir/`: the deployment's base URL is the one namespace the
platform really owns (an invented domain could belong to someone else).

The patient's `locale` is deliberately not written: the Patient carries nothing beyond a
case-scoped identifier and the birth date, and the locale does not say which language the
patient's questions are written in.
"""

from __future__ import annotations

import base64
import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit
from uuid import UUID

import pycountry
from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.codesystem import CodeSystem, CodeSystemConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.communication import Communication, CommunicationPayload
from fhir.resources.R4B.communicationrequest import (
    CommunicationRequest,
    CommunicationRequestPayload,
)
from fhir.resources.R4B.condition import Condition, ConditionStage
from fhir.resources.R4B.consent import Consent, ConsentPolicy, ConsentProvision
from fhir.resources.R4B.documentreference import (
    DocumentReference,
    DocumentReferenceContent,
    DocumentReferenceRelatesTo,
)
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.narrative import Narrative
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task, TaskOutput

__all__ = [
    "SERVICE_REQUEST_STATUS",
    "TASK_STATUS",
    "CaseForFhir",
    "ConsentForFhir",
    "DocumentForFhir",
    "InformationRequestForFhir",
    "case_bundle",
    "code_systems",
]


@dataclass(frozen=True)
class ConsentForFhir:
    """One consent the patient gave: what to, to which version of the text, and when."""

    kind: Literal["processing", "cross_border"]
    version: str
    granted_at: datetime


@dataclass(frozen=True)
class DocumentForFhir:
    """One medical document of the case as records stored it, with its language-check status."""

    document_id: UUID
    # discharge_summary, pathology_report, imaging_report, imaging_study, lab_results,
    # medication_list, translation, opinion, other
    kind: str
    media_type: str
    size_bytes: int
    sha256: str
    language: str | None
    status: Literal["stored", "accepted", "translation_required", "unreadable", "superseded"]
    created_at: datetime
    translation_of: UUID | None


@dataclass(frozen=True)
class FollowUpForFhir:
    """A patient's follow-up question on the opinion, and the center's answer once given."""

    question_id: UUID
    center_code: str
    question: str
    asked_at: datetime
    answer: str | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True)
class InformationRequestForFhir:
    """A cancer center's request for more information and, once answered, the patient's answer."""

    request_id: UUID
    center_code: str
    requested_at: datetime
    due_at: datetime | None
    reason: str
    # pathology_review, pathology_report, imaging, lab_test, document, question, family_history,
    # medications, allergies; the detail is in the center's words
    items: list[tuple[str, str]]  # (kind, detail)
    status: str  # open | answered | expired | cancelled
    answered_at: datetime | None = None
    answer: str | None = None
    document_ids: list[UUID] = field(default_factory=list)  # documents added in answer
    # shipment_id, material, carrier, tracking_number, sent_on (date ISO str), received_at (ISO
    # str or None)
    shipments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CaseForFhir:
    """One second-opinion case: the clinical facts, the destination, consents and documents."""

    case_id: UUID
    # draft, submitted, action_required, ready, referred, accepted, information_requested,
    # opinion_delivered, unroutable, withdrawn
    status: str
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    icd10: str
    icd10_display: str
    diagnosis_text: str | None
    histology: str | None
    stage_tnm: str | None
    stage_group: str | None
    reasons: list[str]
    questions: list[str]
    destination_preference: Literal["ukraine", "abroad", "countries"]
    destination_countries: list[str]  # ISO 3166-1 alpha-2
    locale: str
    birth_date: date | None
    consents: list[ConsentForFhir]
    documents: list[DocumentForFhir]
    information_requests: list[InformationRequestForFhir] = field(default_factory=list)
    opinion_outcome: dict[str, Any] | None = None
    """The opinion's conclusion (`OpinionOutcome` as JSON), once delivered with one."""
    follow_ups: list[FollowUpForFhir] = field(default_factory=list)
    """Follow-up questions on the opinion, oldest first."""
    center_code: str | None = None
    """The cancer center the case is with (referred, accepted, asked for information, gave the
    opinion), when known; without it the center of an open information request while the case
    waits for the answer, or the center answering follow-up questions after the opinion."""


TASK_STATUS: dict[str, str] = {
    "draft": "draft",
    "submitted": "received",
    "action_required": "on-hold",
    "ready": "ready",
    "referred": "requested",
    # The center agreed to give an opinion; nothing tells us when its work starts, so
    # `in-progress` would claim more than we know. `accepted` is exactly what happened.
    "accepted": "accepted",
    # The center paused its work until the patient answers; businessStatus says why.
    "information_requested": "on-hold",
    # Waiting for the patient to choose among the proposed centers.
    "choosing_center": "on-hold",
    "opinion_delivered": "completed",
    "unroutable": "failed",
    "withdrawn": "cancelled",
}
"""Case status -> FHIR Task.status (http://hl7.org/fhir/task-status), as in the design."""

SERVICE_REQUEST_STATUS: dict[str, str] = {
    "draft": "draft",
    # From submission to the opinion the patient's request stands. Waiting for a translation is a
    # pause in the *fulfilment* (the Task is on-hold); the requester withdrew nothing, so the
    # request itself is not `on-hold`.
    "submitted": "active",
    "action_required": "active",
    "ready": "active",
    "referred": "active",
    "accepted": "active",
    # As for action_required: the fulfilment waits, the patient's request still stands.
    "information_requested": "active",
    "choosing_center": "active",
    "opinion_delivered": "completed",
    # No eligible center was found: the fulfilment failed (Task `failed`), but the patient did not
    # revoke the request, and `revoked` means "no further activity should occur", which would
    # forbid a manual re-route. Withdrawal, the patient's own act, is what revokes it.
    "unroutable": "active",
    "withdrawn": "revoked",
}
"""Case status -> FHIR ServiceRequest.status (http://hl7.org/fhir/request-status)."""

_ICD10 = "http://hl7.org/fhir/sid/icd-10"
_SNOMED = "http://snomed.info/sct"
_LOINC = "http://loinc.org"
_ISO_3166 = "urn:iso:std:iso:3166"
_URI = "urn:ietf:rfc:3986"
_TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
_CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"

_REASON_DISPLAY = {
    "confirm_diagnosis_or_stage": "Confirm the diagnosis or the stage",
    "choose_treatment": "Choose between treatment options",
    "drug_options": "Find drug options",
    "new_tactics_after_failure_or_recurrence": "New plan after a failed treatment or a recurrence",
    "other": "Other reason",
}

_DESTINATION_DISPLAY = {
    "ukraine": "A cancer center in Ukraine",
    "abroad": "Any eligible cancer center outside Ukraine",
    "countries": "A cancer center in one of the named countries",
}

_DOCUMENT_KIND_DISPLAY = {
    "discharge_summary": "Discharge summary",
    "pathology_report": "Pathology report",
    "imaging_report": "Imaging report",
    "imaging_study": "Imaging study (images)",
    "lab_results": "Laboratory results",
    "medication_list": "Medication list",
    "translation": "Translation of another document",
    "opinion": "Second opinion",
    "other": "Other document",
}

# LOINC document types only where the kind means exactly that document; the others (images,
# medication lists, translations, "other") stay text plus our own code rather than a near miss.
_DOCUMENT_KIND_LOINC = {
    "discharge_summary": ("18842-5", "Discharge summary"),
    "pathology_report": ("11526-1", "Pathology study"),
    "imaging_report": ("18748-4", "Diagnostic imaging study"),
    "lab_results": ("11502-2", "Laboratory report"),
    "opinion": ("11488-4", "Consult note"),
}

_DOCUMENT_STATUS = {
    "stored": "current",
    "accepted": "current",
    "translation_required": "current",
    "unreadable": "current",
    "superseded": "superseded",
}

# Information request status -> CommunicationRequest.status (http://hl7.org/fhir/request-status).
# An expired or cancelled request is `revoked`: nothing more should be sent in answer to it.
_INFORMATION_REQUEST_STATUS = {
    "open": "active",
    "answered": "completed",
    "expired": "revoked",
    "cancelled": "revoked",
}

_REQUESTED_ITEM_DISPLAY = {
    "pathology_review": "Pathology material for re-review",
    "pathology_report": "Pathology report",
    "imaging": "Imaging",
    "lab_test": "Laboratory test",
    "document": "Document",
    "question": "Question",
    "family_history": "Family history",
    "medications": "Current medications",
    "allergies": "Allergies and intolerances",
}

_SHIPMENT_MATERIAL_DISPLAY = {
    "slides": "slides",
    "blocks": "blocks",
    "slides_and_blocks": "slides and blocks",
    "other": "other material",
}

_SHIPMENT_KEYS = frozenset(
    {"shipment_id", "material", "carrier", "tracking_number", "sent_on", "received_at"}
)

_CONSENT_TEXT = {
    "processing": "Consent to the processing of health data for a second opinion",
    "cross_border": "Consent to the transfer of health data to another country",
}

_BUSINESS_STATUS_DISPLAY = {
    "awaiting-patient-choice": "Waiting for the patient to choose a cancer center",
    "information-requested": "Information requested by the cancer center",
}

_STAGE_TYPE_DISPLAY = {"group": "Stage group", "tnm": "TNM classification"}

_SERVICE_DISPLAY = {"second-opinion": "Oncology second opinion"}

# The parts of an opinion's conclusion and the verdicts of each (`OpinionOutcome` in the
# contracts); a code is `{part}-{verdict}` with hyphens.
_OUTCOME_VERDICTS = {
    "diagnosis": ("confirmed", "refined", "changed"),
    "stage": ("confirmed", "changed", "not_assessed"),
    "treatment": ("agreed", "alternative_proposed", "not_assessed"),
}

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_ICD_O_3 = re.compile(r"[89][0-9]{3}/[0-369]")  # morphology/behaviour, e.g. 8500/3

# FHIR R4 `unsignedInt` stops at 2^31-1; a bigger DICOM study cannot state its size there.
_UNSIGNED_INT_MAX = 2**31 - 1


def case_bundle(case: CaseForFhir, *, base_url: str) -> dict[str, Any]:
    """Return the FHIR R4 `Bundle` (type `collection`) of one case as plain JSON data.

    The bundle holds, in this order: a Patient, a Condition, a ServiceRequest and a Task, all with
    the case id as their id; one DocumentReference per document (id = document id, in the order
    given); one Consent per distinct consent (the latest of each kind `active`, older ones
    `inactive`); then, per information request in the order given, a CommunicationRequest (id =
    request id) and, when the request was answered, the Communication of the answer (id = uuid5
    of the request id); then per follow-up question a Communication (id = question id) and,
    once answered, the Communication of the answer (`inResponseTo` it). Each entry's `fullUrl` is
    `{base_url}/fhir/{type}/{id}` and every reference in the bundle is one of those URLs. The
    Patient carries only a case-scoped identifier and the birth date (when known): no name,
    telecom or address. The Task status follows `TASK_STATUS`, the ServiceRequest status
    `SERVICE_REQUEST_STATUS`. The same case always gives the same bundle (no clock, no random ids).

    Raises ValueError when the case cannot be written faithfully: an unknown case status, reason,
    destination preference, consent kind, document kind or document status, information request
    status, requested item kind or shipment material; a shipment missing a field; duplicate
    information request ids; an unknown country
    code or countries that contradict the preference; a SHA-256 that is not 64 hex digits; a
    translation whose original is not another document of the case; duplicate document ids;
    a datetime without a time zone; `updated_at` before `created_at`; a `base_url` that is not an
    absolute http(s) URL.
    """
    base = _base(base_url)
    _check(case)

    entries: list[Resource] = [
        _patient(case, base),
        _condition(case, base),
        _service_request(case, base),
        _task(case, base),
        *(_document_reference(case, doc, base) for doc in case.documents),
        *_consents(case, base),
        *_information_requests(case, base),
        *_follow_ups(case, base),
    ]
    bundle = Bundle(
        type="collection",
        entry=[BundleEntry(fullUrl=_url(r.get_resource_type(), r.id), resource=r) for r in entries],
    )
    return bundle.model_dump(mode="json")


def code_systems(*, base_url: str) -> list[dict[str, Any]]:
    """Return the platform's own FHIR R4 CodeSystems (plain JSON data), complete: every code the
    bundles of `case_bundle` take from a system under `{base_url}/fhir/CodeSystem/` is defined in
    one of them, with the display the bundles give it. A reader (or a validator) that has them
    can check every code of a bundle; their `url` is where the deployment publishes them."""
    base = _base(base_url)
    outcome = {part: part for part in _OUTCOME_VERDICTS}
    for part, verdicts in _OUTCOME_VERDICTS.items():
        for verdict in verdicts:
            code = f"{part}-{verdict.replace('_', '-')}"
            outcome[code] = code.replace("-", " ")
    tables = {
        "case-business-status": ("Why a paused case waits", _BUSINESS_STATUS_DISPLAY),
        "stage-type": ("Which staging a Condition.stage entry holds", _STAGE_TYPE_DISPLAY),
        "second-opinion-reason": ("Why the patient asks for a second opinion", _REASON_DISPLAY),
        "service": ("The service a referral asks for", _SERVICE_DISPLAY),
        "destination-preference": (
            "Where the patient wants the opinion from",
            _DESTINATION_DISPLAY,
        ),
        "document-kind": ("The kinds of a case's medical documents", _DOCUMENT_KIND_DISPLAY),
        "opinion-outcome": ("The parts and verdicts of an opinion's conclusion", outcome),
    }
    found = []
    for name, (title, concepts) in tables.items():
        system = CodeSystem(
            id=name,
            text=_narrative(
                f"{title}.", *(f"{code}: {display}" for code, display in concepts.items())
            ),
            url=_system(base, name),
            name="".join(word.capitalize() for word in name.split("-")),
            title=title,
            status="active",
            publisher="The second-opinion referrals platform",
            description=f"{title}: the codes of the platform's FHIR export.",
            caseSensitive=True,
            content="complete",
            count=len(concepts),
            concept=[
                CodeSystemConcept(code=code, display=display) for code, display in concepts.items()
            ],
        )
        found.append(system.model_dump(mode="json"))
    return found


def _base(base_url: str) -> str:
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    return base


# The Patient, the Condition and the Task share the case id with the ServiceRequest (each id is
# unique within its type); their entries need URNs of their own.
_CASE_SCOPED = frozenset({"Patient", "Condition", "Task"})


def _url(resource_type: str, resource_id: object) -> str:
    """The entry's `fullUrl`, a `urn:uuid:` that names it inside the bundle and nowhere else (no
    reader tries to fetch it from a server that does not serve it): the resource's own UUID id,
    except for the case-scoped Patient, Condition and Task, whose UUID derives from the case id
    (uuid5 of it and the type); the ServiceRequest, the request that is the case, has the case's.
    """
    if resource_type in _CASE_SCOPED:
        return f"urn:uuid:{uuid.uuid5(UUID(str(resource_id)), resource_type)}"
    return f"urn:uuid:{resource_id}"


def _ref(base: str, resource_type: str, resource_id: object) -> Reference:
    return Reference(reference=_url(resource_type, resource_id), type=resource_type)


def _narrative(*lines: str) -> Narrative:
    """A generated narrative: the resource's content in plain sentences, one paragraph each."""
    paragraphs = "".join(f"<p>{html.escape(line, quote=False)}</p>" for line in lines if line)
    return Narrative(
        status="generated", div=f'<div xmlns="http://www.w3.org/1999/xhtml">{paragraphs}</div>'
    )


def _system(base: str, name: str) -> str:
    return f"{base}/fhir/CodeSystem/{name}"


def _check(case: CaseForFhir) -> None:
    """Refuse, before building anything, what the bundle could only state wrongly."""
    if case.status not in TASK_STATUS:
        raise ValueError(f"unknown case status {case.status!r}")
    for reason in case.reasons:
        if reason not in _REASON_DISPLAY:
            raise ValueError(f"unknown second-opinion reason {reason!r}")
    if case.destination_preference not in _DESTINATION_DISPLAY:
        raise ValueError(f"unknown destination preference {case.destination_preference!r}")
    named = case.destination_preference == "countries"
    if named != bool(case.destination_countries):
        raise ValueError(
            f"destination preference {case.destination_preference!r} does not match the "
            f"countries {case.destination_countries!r}"
        )
    for moment, what in [(case.created_at, "created_at"), (case.updated_at, "updated_at")]:
        _aware(moment, f"case {what}")
    # Task invariant inv-1: lastModified (updated_at) >= authoredOn (created_at).
    if case.updated_at < case.created_at:
        raise ValueError("case updated_at is before created_at")
    for consent in case.consents:
        if consent.kind not in _CONSENT_TEXT:
            raise ValueError(f"unknown consent kind {consent.kind!r}")
        _aware(consent.granted_at, "consent granted_at")

    ids = [doc.document_id for doc in case.documents]
    if len(set(ids)) != len(ids):
        raise ValueError("the case lists a document id twice")
    for doc in case.documents:
        if doc.kind not in _DOCUMENT_KIND_DISPLAY:
            raise ValueError(f"unknown document kind {doc.kind!r}")
        if doc.status not in _DOCUMENT_STATUS:
            raise ValueError(f"unknown document status {doc.status!r}")
        if not _SHA256_HEX.fullmatch(doc.sha256):
            raise ValueError(f"document {doc.document_id}: sha256 is not 64 hex digits")
        _aware(doc.created_at, f"document {doc.document_id} created_at")
        # The relatesTo reference must resolve inside the bundle.
        if doc.translation_of is not None and (
            doc.translation_of == doc.document_id or doc.translation_of not in ids
        ):
            raise ValueError(
                f"document {doc.document_id} is a translation of {doc.translation_of}, which is "
                "not another document of the case"
            )

    request_ids = [request.request_id for request in case.information_requests]
    if len(set(request_ids)) != len(request_ids):
        raise ValueError("the case lists an information request id twice")
    for request in case.information_requests:
        _check_information_request(request)


def _check_information_request(request: InformationRequestForFhir) -> None:
    what = f"information request {request.request_id}"
    if request.status not in _INFORMATION_REQUEST_STATUS:
        raise ValueError(f"{what}: unknown status {request.status!r}")
    for kind, _detail in request.items:
        if kind not in _REQUESTED_ITEM_DISPLAY:
            raise ValueError(f"{what}: unknown requested item kind {kind!r}")
    for moment, name in [
        (request.requested_at, "requested_at"),
        (request.due_at, "due_at"),
        (request.answered_at, "answered_at"),
    ]:
        if moment is not None:
            _aware(moment, f"{what} {name}")
    for shipment in request.shipments:
        missing = _SHIPMENT_KEYS - set(shipment)
        if missing:
            raise ValueError(f"{what}: a shipment lacks {sorted(missing)}")
        if shipment["material"] not in _SHIPMENT_MATERIAL_DISPLAY:
            raise ValueError(f"{what}: unknown shipment material {shipment['material']!r}")
        _day(shipment["sent_on"])
        if shipment["received_at"] is not None:
            _day(shipment["received_at"])


def _aware(moment: datetime, what: str) -> None:
    # FHIR dateTime and instant values with a time need a time zone offset.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} has no time zone")


def _patient(case: CaseForFhir, base: str) -> Patient:
    # Minimum personal data: the identifier names "the patient of this case" and links to nothing
    # outside it (the same person with two cases is two unlinkable Patients).
    born = f"Born {case.birth_date.isoformat()}." if case.birth_date else "Birth date not known."
    return Patient(
        id=str(case.case_id),
        text=_narrative(f"The patient of second-opinion case {case.case_id}.", born),
        identifier=[
            Identifier(
                # The case's record number stands for the patient (a pseudonym of one case).
                system=_URI,
                value=f"urn:uuid:{case.case_id}",
                type=CodeableConcept(
                    coding=[
                        Coding(system=_IDENTIFIER_TYPE, code="MR", display="Medical record number")
                    ],
                    text="Patient of one second-opinion case (pseudonym)",
                ),
            )
        ],
        birthDate=case.birth_date,
    )


def _condition(case: CaseForFhir, base: str) -> Condition:
    stages = []
    if case.stage_group:
        stages.append(_stage(base, "group", "Stage group", case.stage_group))
    if case.stage_tnm:
        stages.append(_stage(base, "tnm", "TNM classification", case.stage_tnm))
    # Histology goes in a note. Core R4 Condition has no element for morphology; `evidence` is
    # for the manifestations behind the verification status; the mCODE histology extension is a
    # US-realm IG bound to SNOMED CT, which a validator without that IG flags as unknown, and our
    # value is an ICD-O-3 code or free text. A note validates everywhere and reaches the reader.
    notes = None
    if case.histology:
        label = "ICD-O-3 morphology" if _ICD_O_3.fullmatch(case.histology) else "as reported"
        notes = [Annotation(text=f"Histology ({label}): {case.histology}")]
    # No clinicalStatus or verificationStatus: the patient reports the diagnosis from their
    # documents (asserter = Patient), and confirming it is what the second opinion is for.
    return Condition(
        id=str(case.case_id),
        text=_narrative(
            f"Diagnosis (ICD-10 {case.icd10}): {case.icd10_display}.",
            case.diagnosis_text or "",
            f"Stage group {case.stage_group}." if case.stage_group else "",
            f"TNM {case.stage_tnm}." if case.stage_tnm else "",
            notes[0].text if notes else "",
        ),
        code=CodeableConcept(
            coding=[Coding(system=_ICD10, code=case.icd10, display=case.icd10_display)],
            text=case.diagnosis_text or case.icd10_display,
        ),
        subject=_ref(base, "Patient", case.case_id),
        recordedDate=case.created_at,
        asserter=_ref(base, "Patient", case.case_id),
        stage=stages or None,
        note=notes,
    )


def _stage(base: str, code: str, display: str, value: str) -> ConditionStage:
    # Text only in the summary: a stage group or TNM string from a Ukrainian discharge summary has
    # no code we could claim; our own `stage-type` code says which entry is which.
    return ConditionStage(
        summary=CodeableConcept(text=value),
        type=CodeableConcept(
            coding=[Coding(system=_system(base, "stage-type"), code=code, display=display)],
            text=display,
        ),
    )


def _service_request(case: CaseForFhir, base: str) -> ServiceRequest:
    reasons = [
        CodeableConcept(
            coding=[
                Coding(
                    system=_system(base, "second-opinion-reason"),
                    code=reason,
                    display=_REASON_DISPLAY[reason],
                )
            ],
            text=_REASON_DISPLAY[reason],
        )
        for reason in dict.fromkeys(case.reasons)
    ]
    questions = [Annotation(text=q.strip()) for q in case.questions if q.strip()]
    return ServiceRequest(
        id=str(case.case_id),
        text=_narrative(
            "Request for an oncology second opinion.",
            "Reasons: " + "; ".join(_REASON_DISPLAY[r] for r in dict.fromkeys(case.reasons)) + "."
            if case.reasons
            else "",
            f"Where: {_DESTINATION_DISPLAY[case.destination_preference]}.",
            *(f"Question: {q.text}" for q in questions),
        ),
        identifier=[Identifier(system=_URI, value=f"urn:uuid:{case.case_id}")],
        status=SERVICE_REQUEST_STATUS[case.status],
        intent="order",
        category=[
            CodeableConcept(
                coding=[Coding(system=_SNOMED, code="183529009", display="Referral to oncologist")],
                text="Referral to an oncologist for a second opinion",
            )
        ],
        code=CodeableConcept(
            coding=[
                Coding(
                    system=_system(base, "service"),
                    code="second-opinion",
                    display="Oncology second opinion",
                )
            ],
            text="Oncology second opinion",
        ),
        # orderDetail needs `code` (invariant prr-1), which is set above.
        orderDetail=[
            CodeableConcept(
                coding=[
                    Coding(
                        system=_system(base, "destination-preference"),
                        code=case.destination_preference,
                        display=_DESTINATION_DISPLAY[case.destination_preference],
                    )
                ],
                text=_DESTINATION_DISPLAY[case.destination_preference],
            )
        ],
        subject=_ref(base, "Patient", case.case_id),
        authoredOn=case.created_at,
        requester=_ref(base, "Patient", case.case_id),
        # locationCode is "where the service should happen", bound to an example value set only,
        # so ISO 3166 country codes are valid there.
        locationCode=_location_codes(case),
        reasonCode=reasons or None,
        reasonReference=[_ref(base, "Condition", case.case_id)],
        supportingInfo=[_ref(base, "DocumentReference", d.document_id) for d in case.documents]
        or None,
        note=questions or None,
    )


def _location_codes(case: CaseForFhir) -> list[CodeableConcept]:
    if case.destination_preference == "abroad":
        return [CodeableConcept(text="Any country outside Ukraine")]
    countries = ["UA"] if case.destination_preference == "ukraine" else case.destination_countries
    codes = []
    for alpha_2 in dict.fromkeys(countries):
        country = pycountry.countries.get(alpha_2=alpha_2) if len(alpha_2) == 2 else None
        if country is None or country.alpha_2 != alpha_2:
            raise ValueError(f"unknown ISO 3166-1 alpha-2 country code {alpha_2!r}")
        codes.append(
            CodeableConcept(
                coding=[Coding(system=_ISO_3166, code=alpha_2, display=country.name)],
                text=country.name,
            )
        )
    return codes


def _task(case: CaseForFhir, base: str) -> Task:
    business_status = None
    if case.status == "action_required":
        business_status = CodeableConcept(text="awaiting-information")
    elif case.status == "choosing_center":
        business_status = CodeableConcept(
            coding=[
                Coding(
                    system=_system(base, "case-business-status"),
                    code="awaiting-patient-choice",
                    display=_BUSINESS_STATUS_DISPLAY["awaiting-patient-choice"],
                )
            ],
            text="waiting for the patient to choose among the proposed cancer centers",
        )
    elif case.status == "information_requested":
        business_status = CodeableConcept(
            coding=[
                Coding(
                    system=_system(base, "case-business-status"),
                    code="information-requested",
                    display=_BUSINESS_STATUS_DISPLAY["information-requested"],
                )
            ],
            text="awaiting information requested by the cancer center",
        )
    center = _task_owner(case)
    outputs = [
        *_outcome_outputs(case.opinion_outcome, base),
        *_opinion_outputs(case, base),
        *_follow_up_outputs(case, base),
    ]
    return Task(
        id=str(case.case_id),
        text=_narrative(
            f"Second-opinion case {case.case_id}: {case.status.replace('_', ' ')} "
            f"(task {TASK_STATUS[case.status]}).",
            case.status_reason or "",
            f"With cancer center {center}." if center else "",
        ),
        status=TASK_STATUS[case.status],
        statusReason=CodeableConcept(text=case.status_reason) if case.status_reason else None,
        businessStatus=business_status,
        intent="order",
        code=CodeableConcept(
            coding=[Coding(system=_TASK_CODE, code="fulfill", display="Fulfill the focal request")]
        ),
        focus=_ref(base, "ServiceRequest", case.case_id),
        for_fhir=_ref(base, "Patient", case.case_id),
        authoredOn=case.created_at,
        lastModified=case.updated_at,
        owner=_center(base, center) if center else None,
        output=outputs or None,
    )


def _task_owner(case: CaseForFhir) -> str | None:
    if case.center_code:
        return case.center_code
    if case.status == "information_requested":
        waiting = [r for r in case.information_requests if r.status == "open"]
        if waiting:
            return max(waiting, key=lambda r: r.requested_at).center_code
    if case.status == "opinion_delivered" and case.follow_ups:
        return case.follow_ups[-1].center_code
    return None


def _opinion_outputs(case: CaseForFhir, base: str) -> list[TaskOutput]:
    """The written opinion: each current document of kind `opinion`, by reference."""
    return [
        TaskOutput(
            type=CodeableConcept(
                coding=[Coding(system=_LOINC, code="11488-4", display="Consult note")],
                text="opinion",
            ),
            valueReference=_ref(base, "DocumentReference", doc.document_id),
        )
        for doc in case.documents
        if doc.kind == "opinion" and doc.status != "superseded"
    ]


def _follow_up_outputs(case: CaseForFhir, base: str) -> list[TaskOutput]:
    """The center's answers to follow-up questions, by reference to their Communications."""
    return [
        TaskOutput(
            type=CodeableConcept(text="follow-up-answer"),
            valueReference=_ref(base, "Communication", _follow_up_answer_id(q)),
        )
        for q in case.follow_ups
        if q.answer is not None
    ]


def _follow_up_answer_id(question: FollowUpForFhir) -> UUID:
    return uuid.uuid5(question.question_id, "communication:follow-up-answer")


def _outcome_outputs(outcome: dict[str, Any] | None, base: str) -> list[TaskOutput]:
    """The opinion's conclusion as Task.output: one coded value per part (diagnosis, stage,
    treatment plan), each further test as a string, clinical trials as a boolean."""
    if not outcome:
        return []
    system = _system(base, "opinion-outcome")

    def coded(part: str, value: str, extra: list[Coding] | None = None) -> TaskOutput:
        code = f"{part}-{value.replace('_', '-')}"
        return TaskOutput(
            type=CodeableConcept(
                coding=[Coding(system=system, code=part, display=part)], text=part
            ),
            valueCodeableConcept=CodeableConcept(
                coding=[Coding(system=system, code=code, display=code.replace("-", " "))]
                + (extra or []),
                text=code.replace("-", " "),
            ),
        )

    icd10 = outcome.get("icd10")
    outputs = [
        coded(
            "diagnosis",
            outcome["diagnosis"],
            [Coding(system=_ICD10, code=icd10)] if icd10 else None,
        ),
        coded("stage", outcome["stage"]),
        coded("treatment", outcome["treatment"]),
    ]
    outputs += [
        TaskOutput(type=CodeableConcept(text="additional-test"), valueString=test)
        for test in outcome.get("additional_tests") or []
    ]
    outputs.append(
        TaskOutput(
            type=CodeableConcept(text="clinical-trials-mentioned"),
            valueBoolean=bool(outcome.get("clinical_trials")),
        )
    )
    return outputs


def _document_reference(case: CaseForFhir, doc: DocumentForFhir, base: str) -> DocumentReference:
    # Attachment.hash is defined as the base64 SHA-1 of the data; a SHA-256 there would make any
    # consumer that checks it reject the file, and we do not have the bytes to compute a SHA-1.
    # The SHA-256 goes in an identifier as an RFC 6920 `ni` URI, the standard name for content
    # by its digest: `ni:///sha-256;<base64url digest>`.
    digest = base64.urlsafe_b64encode(bytes.fromhex(doc.sha256)).rstrip(b"=").decode("ascii")
    kind_codings = []
    if doc.kind in _DOCUMENT_KIND_LOINC:
        loinc_code, loinc_display = _DOCUMENT_KIND_LOINC[doc.kind]
        kind_codings.append(Coding(system=_LOINC, code=loinc_code, display=loinc_display))
    kind_codings.append(
        Coding(
            system=_system(base, "document-kind"),
            code=doc.kind,
            display=_DOCUMENT_KIND_DISPLAY[doc.kind],
        )
    )
    relates_to = None
    if doc.translation_of is not None:
        relates_to = [
            DocumentReferenceRelatesTo(
                code="transforms", target=_ref(base, "DocumentReference", doc.translation_of)
            )
        ]
    return DocumentReference(
        id=str(doc.document_id),
        text=_narrative(
            f"{_DOCUMENT_KIND_DISPLAY[doc.kind]} ({doc.media_type}"
            + (f", language {doc.language}" if doc.language else "")
            + f"), {doc.status.replace('_', ' ')}.",
            f"SHA-256 {doc.sha256.lower()}.",
            f"A translation of document {doc.translation_of}." if doc.translation_of else "",
        ),
        # The records service serves the bytes by this id (through the partner API for a center).
        masterIdentifier=Identifier(system=_URI, value=f"urn:uuid:{doc.document_id}"),
        # No identifier type: no code of the identifier-type value set says "digest", and the
        # `ni:` URI names its algorithm itself.
        identifier=[Identifier(system=_URI, value=f"ni:///sha-256;{digest}")],
        status=_DOCUMENT_STATUS[doc.status],
        type=CodeableConcept(coding=kind_codings, text=doc.kind),
        subject=_ref(base, "Patient", case.case_id),
        date=doc.created_at,
        relatesTo=relates_to,
        content=[
            DocumentReferenceContent(
                # No url: no address the export could give serves the bytes to every reader;
                # a center fetches them from records by the masterIdentifier. Never embedded.
                attachment=Attachment(
                    contentType=doc.media_type,
                    language=doc.language,
                    size=doc.size_bytes if 0 <= doc.size_bytes <= _UNSIGNED_INT_MAX else None,
                )
            )
        ],
    )


def _consents(case: CaseForFhir, base: str) -> list[Consent]:
    distinct = list(dict.fromkeys(case.consents))
    # A newer consent of the same kind (to a newer text) is the one in force; the older ones are
    # kept as history with status `inactive`.
    latest: dict[str, ConsentForFhir] = {}
    for consent in distinct:
        if consent.kind not in latest or consent.granted_at >= latest[consent.kind].granted_at:
            latest[consent.kind] = consent
    return [_consent(case, c, base, in_force=latest[c.kind] is c) for c in distinct]


def _consent(case: CaseForFhir, consent: ConsentForFhir, base: str, *, in_force: bool) -> Consent:
    # A stable id from what the consent is, so the same case always gives the same bundle.
    consent_id = uuid.uuid5(
        case.case_id, f"consent:{consent.kind}:{consent.version}:{consent.granted_at.isoformat()}"
    )
    actions = ["collect", "use"] if consent.kind == "processing" else ["disclose"]
    # PurposeOfUse (extensible) has no code for a transfer abroad: the cross-border consent is a
    # permit to disclose for treatment under the cross-border text (its policy URI), not a code
    # of our own in a value set that has none.
    purposes = [Coding(system=_ACT_REASON, code="TREAT", display="treatment")]
    return Consent(
        id=str(consent_id),
        text=_narrative(
            f"{_CONSENT_TEXT[consent.kind]}, version {consent.version}, given "
            f"{consent.granted_at.isoformat()}"
            + ("." if in_force else "; replaced by a newer version."),
            f"Permits: {', '.join(actions)}, for treatment.",
        ),
        status="active" if in_force else "inactive",
        scope=CodeableConcept(
            coding=[
                Coding(system=_CONSENT_SCOPE, code="patient-privacy", display="Privacy Consent")
            ]
        ),
        category=[
            CodeableConcept(
                coding=[Coding(system=_LOINC, code="59284-0", display="Patient Consent")]
            )
        ],
        patient=_ref(base, "Patient", case.case_id),
        dateTime=consent.granted_at,
        performer=[_ref(base, "Patient", case.case_id)],
        # The exact text the patient agreed to: one URI per kind and version of the text.
        policy=[
            ConsentPolicy(
                uri=f"{base}/consent-texts/{quote(consent.kind, safe='')}/"
                f"{quote(consent.version, safe='')}"
            )
        ],
        # No policyRule: the consent-policy value set (extensible) holds US and jurisdiction
        # policies only, and the policy URI already names the exact text and version.
        provision=ConsentProvision(
            type="permit",
            action=[
                CodeableConcept(coding=[Coding(system=_CONSENT_ACTION, code=action)])
                for action in actions
            ],
            purpose=purposes,
        ),
    )


def _information_requests(case: CaseForFhir, base: str) -> list[Resource]:
    resources: list[Resource] = []
    for request in case.information_requests:
        resources.append(_communication_request(case, request, base))
        if request.status == "answered":
            resources.append(_communication(case, request, base))
    return resources


def _center(base: str, center_code: str) -> Reference:
    # The center is not an entry of the bundle: a logical reference by its platform code.
    return Reference(
        type="Organization",
        identifier=Identifier(system=f"{base}/fhir/NamingSystem/cancer-center", value=center_code),
        display=f"cancer center {center_code}",
    )


def _communication_request(
    case: CaseForFhir, request: InformationRequestForFhir, base: str
) -> CommunicationRequest:
    # The center (requester) asks the patient (sender) to send information to the center
    # (recipient): in FHIR the sender and recipient are those of the communication requested.
    payloads = [
        CommunicationRequestPayload(contentString=f"{_REQUESTED_ITEM_DISPLAY[kind]}: {detail}")
        for kind, detail in request.items
    ]
    return CommunicationRequest(
        id=str(request.request_id),
        text=_narrative(
            f"Cancer center {request.center_code} asks for more information ({request.status}).",
            f"Why: {request.reason.strip()}" if request.reason.strip() else "",
            *(f"{_REQUESTED_ITEM_DISPLAY[kind]}: {detail}" for kind, detail in request.items),
            f"Due by {request.due_at.isoformat()}." if request.due_at else "",
        ),
        identifier=[Identifier(system=_URI, value=f"urn:uuid:{request.request_id}")],
        basedOn=[_ref(base, "ServiceRequest", case.case_id)],
        status=_INFORMATION_REQUEST_STATUS[request.status],
        category=[CodeableConcept(text="information-request")],
        subject=_ref(base, "Patient", case.case_id),
        about=[_ref(base, "Task", case.case_id)],
        payload=payloads or None,
        occurrenceDateTime=request.due_at,
        authoredOn=request.requested_at,
        requester=_center(base, request.center_code),
        recipient=[_center(base, request.center_code)],
        sender=_ref(base, "Patient", case.case_id),
        reasonCode=[CodeableConcept(text=request.reason)] if request.reason.strip() else None,
    )


def _communication(
    case: CaseForFhir, request: InformationRequestForFhir, base: str
) -> Communication:
    in_bundle = {doc.document_id for doc in case.documents}
    payloads: list[CommunicationPayload] = []
    if request.answer and request.answer.strip():
        payloads.append(CommunicationPayload(contentString=request.answer.strip()))
    # Only documents the bundle holds, so that every reference resolves inside it.
    payloads.extend(
        CommunicationPayload(contentReference=_ref(base, "DocumentReference", document_id))
        for document_id in dict.fromkeys(request.document_ids)
        if document_id in in_bundle
    )
    payloads.extend(
        CommunicationPayload(contentString=_shipment_text(shipment))
        for shipment in request.shipments
    )
    return Communication(
        # Stable across exports: derived from the request it answers.
        id=str(uuid.uuid5(request.request_id, "communication:answer")),
        text=_narrative(
            f"The patient's answer to the request of cancer center {request.center_code}.",
            *(p.contentString for p in payloads if p.contentString),
            f"{sum(1 for p in payloads if p.contentReference)} document(s) added."
            if any(p.contentReference for p in payloads)
            else "",
        ),
        basedOn=[_ref(base, "CommunicationRequest", request.request_id)],
        partOf=[_ref(base, "Task", case.case_id)],
        status="completed",
        category=[CodeableConcept(text="information-answer")],
        subject=_ref(base, "Patient", case.case_id),
        about=[_ref(base, "ServiceRequest", case.case_id)],
        sent=request.answered_at,
        recipient=[_center(base, request.center_code)],
        sender=_ref(base, "Patient", case.case_id),
        payload=payloads or None,
    )


def _follow_ups(case: CaseForFhir, base: str) -> list[Communication]:
    """Each follow-up question as a Communication from the patient to the center (id = the
    question id), and each answer as a Communication in response to it (id = uuid5 of it)."""
    found: list[Communication] = []
    for q in case.follow_ups:
        found.append(
            Communication(
                id=str(q.question_id),
                text=_narrative(
                    f"The patient's follow-up question to cancer center {q.center_code}.",
                    q.question,
                ),
                partOf=[_ref(base, "Task", case.case_id)],
                status="completed",
                category=[CodeableConcept(text="follow-up-question")],
                subject=_ref(base, "Patient", case.case_id),
                sent=q.asked_at,
                sender=_ref(base, "Patient", case.case_id),
                recipient=[_center(base, q.center_code)],
                payload=[CommunicationPayload(contentString=q.question)],
            )
        )
        if q.answer is not None:
            found.append(
                Communication(
                    id=str(_follow_up_answer_id(q)),
                    text=_narrative(f"Cancer center {q.center_code} answered.", q.answer),
                    partOf=[_ref(base, "Task", case.case_id)],
                    inResponseTo=[_ref(base, "Communication", q.question_id)],
                    status="completed",
                    category=[CodeableConcept(text="follow-up-answer")],
                    subject=_ref(base, "Patient", case.case_id),
                    sent=q.answered_at,
                    sender=_center(base, q.center_code),
                    recipient=[_ref(base, "Patient", case.case_id)],
                    payload=[CommunicationPayload(contentString=q.answer)],
                )
            )
    return found


def _shipment_text(shipment: dict[str, Any]) -> str:
    received = shipment["received_at"]
    return (
        f"Shipment of {_SHIPMENT_MATERIAL_DISPLAY[shipment['material']]} by "
        f"{shipment['carrier']}, tracking {shipment['tracking_number']}, sent "
        f"{_day(shipment['sent_on'])}; received "
        f"{_day(received) if received is not None else 'not yet'}"
    )


def _day(value: object) -> str:
    """The ISO day of a date, a datetime or their ISO text."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date().isoformat()
        except ValueError:
            pass
    raise ValueError(f"not an ISO date or datetime: {value!r}")
