"""A FHIR R4 view of one second-opinion case: one `Bundle` a cancer center or an exchange can read.

Intake fills the frozen dataclasses below from its database; `case_bundle` turns one case into a
FHIR `Bundle` of type `collection` holding the Patient (minimum personal data), the Condition (the
diagnosis and its stage), the ServiceRequest (the request for a second opinion), the Task that
tracks its fulfilment (the case lifecycle), one DocumentReference per document, one Consent per
recorded consent, one CommunicationRequest per request for more information a cancer center made,
one Communication per request the patient answered, one Appointment per consultation meeting a
center offered (with the center's doctors as a PractitionerRole and, for a meeting in person, the
place as a Location), and, for each further opinion the patient asked for, the reason as the
Task's input and, when the patient agreed to share the earlier opinions, a Consent naming them.

The resources are built with the `fhir.resources.R4B` models (FHIR 4.3, identical to R4 for every
element used here), so building a bundle validates its structure and data types. The models do not
check codes against value sets, so every code written here comes from a table in this module.

Every entry's `fullUrl` is a `urn:uuid:` (see `_url`) and every reference in the bundle is one of
them, so each resolves inside the bundle. Our own code systems and naming systems live under
`{base_url}/fhir/`: the deployment's base URL is the one namespace the
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
from fhir.resources.R4B.address import Address
from fhir.resources.R4B.annotation import Annotation
from fhir.resources.R4B.appointment import Appointment, AppointmentParticipant
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
from fhir.resources.R4B.consent import (
    Consent,
    ConsentPolicy,
    ConsentProvision,
    ConsentProvisionData,
)
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.documentreference import (
    DocumentReference,
    DocumentReferenceContent,
    DocumentReferenceRelatesTo,
)
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.narrative import Narrative
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task, TaskInput, TaskOutput

from referrals_intake.consent_texts import SHARING_VERSION, policy_path

__all__ = [
    "SERVICE_REQUEST_STATUS",
    "TASK_STATUS",
    "CaseForFhir",
    "ConsentForFhir",
    "DocumentForFhir",
    "FollowUpForFhir",
    "FurtherOpinionForFhir",
    "InformationRequestForFhir",
    "MeetingForFhir",
    "MeetingSlotForFhir",
    "case_bundle",
    "code_systems",
]


ConsentKind = Literal["processing", "cross_border"]
DestinationPreferenceCode = Literal["ukraine", "abroad", "countries"]
DocumentStatus = Literal["stored", "accepted", "translation_required", "unreadable", "superseded"]


@dataclass(frozen=True)
class ConsentForFhir:
    """One consent the patient gave: what to, to which version of the text, and when."""

    kind: ConsentKind
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
    status: DocumentStatus
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
    document_ids: list[UUID] = field(default_factory=list)
    """Documents the center attached to its answer (in the bundle as DocumentReferences)."""


@dataclass(frozen=True)
class PayerForFhir:
    """Who pays for the opinion: self-pay, an insurer (its registry code, and its name as the
    front end gave it), or a charity or fund. Never the policy number: the bundle names no
    personal identifier of the patient."""

    kind: Literal["self_pay", "insurer", "charity"]
    insurer: str | None = None
    insurer_name: str | None = None


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
class MeetingSlotForFhir:
    """One time of a consultation meeting: an instant range."""

    slot_id: UUID
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class MeetingForFhir:
    """The consultation meeting at which a center explains its opinion, as intake keeps it."""

    meeting_id: UUID
    center_code: str
    status: str  # offered | booked | held | missed | cancelled
    mode: str  # video | in_person
    created_at: datetime
    slots: list[MeetingSlotForFhir]
    """The times the center offers (those of an open meeting; kept as last offered)."""
    booked_slot: MeetingSlotForFhir | None = None
    requested_slot_id: UUID | None = None
    """The time the patient chose while the center's booking of it is still to come."""
    center_address: str | None = None
    time_zone: str | None = None
    """The center's time zone (IANA), in which the center shows the times."""
    language: str | None = None  # ISO 639-1, the language the doctors speak at the meeting
    note: str | None = None
    """The center's words to the patient about the meeting."""
    cancelled_by: str | None = None  # patient | center
    cancel_reason: str | None = None
    """The patient's reason code (`PatientCancelReason`), or the center's words."""


@dataclass(frozen=True)
class FurtherOpinionForFhir:
    """One further opinion the patient asked for after an opinion (round 2, 3, ...)."""

    opinion_round: int
    reason: str  # conflicting_opinions | another_view | other
    share_earlier_opinions: bool
    requested_at: datetime
    consented_at: datetime | None = None
    """When the patient agreed to share the earlier opinions (None: not shared)."""
    shared_document_ids: list[UUID] = field(default_factory=list)


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
    destination_preference: DestinationPreferenceCode
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
    meetings: list[MeetingForFhir] = field(default_factory=list)
    """Consultation meetings, oldest first."""
    opinion_round: int = 1
    """Which opinion the case is on: 1, then 2 and so on for each further opinion asked."""
    further_opinions: list[FurtherOpinionForFhir] = field(default_factory=list)
    """Each further opinion asked, oldest first."""
    payer: PayerForFhir | None = None
    """Who pays, when the front end said (a Coverage, the ServiceRequest's insurance)."""


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
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# The consent's category from HL7's own consent types (v3 ActConsentType, in the consent-category
# value set; offline in the HL7 terminology package, unlike LOINC): processing is access to the
# health data, the transfer abroad and the sharing of earlier opinions are disclosures.
_CONSENT_CATEGORY = {
    "processing": ("INFA", "information access"),
    "cross_border": ("IDSCL", "information disclosure"),
    "share_earlier_opinions": ("IDSCL", "information disclosure"),
}
_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
_APPOINTMENT_CANCELLATION = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"

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

_SERVICE_DISPLAY = {
    "second-opinion": "Oncology second opinion",
    "opinion-consultation": "Consultation on the second opinion",
}

# Meeting status -> Appointment.status (http://hl7.org/fhir/appointmentstatus). An offered
# meeting whose time the patient chose, before the center's booking confirms it, is `pending`.
_APPOINTMENT_STATUS = {
    "offered": "proposed",
    "booked": "booked",
    "held": "fulfilled",
    "missed": "noshow",
    "cancelled": "cancelled",
}

_MEETING_MODE_DISPLAY = {"video": "by video", "in_person": "in person at the center"}

# Why the patient cancelled a meeting (`PatientCancelReason`): a choice, never words.
_MEETING_CANCEL_REASON_DISPLAY = {
    "cannot_attend": "The patient cannot attend",
    "none_of_the_times": "None of the offered times suits the patient",
    "no_longer_needed": "The patient no longer needs the meeting",
    "other": "Another reason",
}

# Why the patient asks for a further opinion (`FurtherOpinionReason`).
_FURTHER_OPINION_REASON_DISPLAY = {
    "conflicting_opinions": "The opinion differs from the treating doctors' plan or from another",
    "another_view": "Another cancer center's view",
    "other": "Other reason",
}

# What the Task's inputs are: the opinion the case is on, each further opinion asked, and the
# patient's consent to share the earlier opinions with the next center.
_TASK_INPUT_DISPLAY = {
    "opinion-round": "Which opinion of the case is asked for",
    "further-opinion": "A further opinion from another cancer center",
    "earlier-opinions-shared": "Consent to share the earlier opinions",
}

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
    `inactive`), then one Consent per further opinion that shares the earlier opinions (id =
    uuid5 of the case id and the round; its `provision.data` the shared DocumentReferences the
    bundle holds); then, per information request in the order given, a CommunicationRequest (id =
    request id) and, when the request was answered, the Communication of the answer (id = uuid5
    of the request id); then per follow-up question a Communication (id = question id) and,
    once answered, the Communication of the answer (`inResponseTo` it); then per meeting, in the
    order given, the PractitionerRole of its center's doctors (once per center; id = uuid5 of
    the case id and the center code), for a meeting in person its Location (id = uuid5 of the
    meeting id), and its Appointment (id = meeting id). Each further opinion is a Task input
    (its reason), with the opinion round and a reference to the sharing Consent. Each entry's
    `fullUrl` is a `urn:uuid:` (see `_url`) and every reference in the bundle is one of them. The
    Patient carries only a case-scoped identifier and the birth date (when known): no name,
    telecom or address. The Task status follows `TASK_STATUS`, the ServiceRequest status
    `SERVICE_REQUEST_STATUS`. The same case always gives the same bundle (no clock, no random ids).

    Raises ValueError when the case cannot be written faithfully: an unknown case status, reason,
    destination preference, consent kind, document kind or document status, information request
    status, requested item kind or shipment material; a shipment missing a field; duplicate
    information request ids; a meeting with an unknown status, mode or patient's cancel reason,
    a booked, held or missed meeting without its booked time, a slot that ends before it starts,
    or a meeting listed twice; a further opinion with an unknown reason or a round that is not
    2, 3, ... in order up to `opinion_round`; an unknown country
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
        *_sharing_consents(case, base),
        *_information_requests(case, base),
        *_follow_ups(case, base),
        *_meetings(case, base),
        *_coverages(case, base),
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
        "meeting-cancel-reason": (
            "Why the patient cancelled a consultation meeting",
            _MEETING_CANCEL_REASON_DISPLAY,
        ),
        "further-opinion-reason": (
            "Why the patient asks for a further opinion",
            _FURTHER_OPINION_REASON_DISPLAY,
        ),
        "task-input": ("What a case Task's input is", _TASK_INPUT_DISPLAY),
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

    meeting_ids = [meeting.meeting_id for meeting in case.meetings]
    if len(set(meeting_ids)) != len(meeting_ids):
        raise ValueError("the case lists a meeting id twice")
    for meeting in case.meetings:
        _check_meeting(meeting)

    rounds = [further.opinion_round for further in case.further_opinions]
    if rounds != list(range(2, 2 + len(rounds))) or case.opinion_round < 1 + len(rounds):
        raise ValueError(
            f"further opinion rounds {rounds} do not count 2, 3, ... up to the case's opinion "
            f"round {case.opinion_round}"
        )
    for further in case.further_opinions:
        if further.reason not in _FURTHER_OPINION_REASON_DISPLAY:
            raise ValueError(f"unknown further opinion reason {further.reason!r}")
        _aware(further.requested_at, f"further opinion {further.opinion_round} requested_at")
        if further.consented_at is not None:
            _aware(further.consented_at, f"further opinion {further.opinion_round} consented_at")


def _check_meeting(meeting: MeetingForFhir) -> None:
    what = f"meeting {meeting.meeting_id}"
    if meeting.status not in _APPOINTMENT_STATUS:
        raise ValueError(f"{what}: unknown status {meeting.status!r}")
    if meeting.mode not in _MEETING_MODE_DISPLAY:
        raise ValueError(f"{what}: unknown mode {meeting.mode!r}")
    if meeting.cancelled_by not in (None, "patient", "center"):
        raise ValueError(f"{what}: cancelled by {meeting.cancelled_by!r}")
    if (
        meeting.cancelled_by == "patient"
        and meeting.cancel_reason is not None
        and meeting.cancel_reason not in _MEETING_CANCEL_REASON_DISPLAY
    ):
        raise ValueError(f"{what}: unknown patient's cancel reason {meeting.cancel_reason!r}")
    # Appointment invariant app-3: only a proposed or cancelled appointment has no start and end.
    if meeting.status in ("booked", "held", "missed") and meeting.booked_slot is None:
        raise ValueError(f"{what} is {meeting.status} without its booked time")
    _aware(meeting.created_at, f"{what} created_at")
    slots = [*meeting.slots, *([meeting.booked_slot] if meeting.booked_slot else [])]
    for slot in slots:
        _aware(slot.starts_at, f"{what} slot {slot.slot_id}")
        _aware(slot.ends_at, f"{what} slot {slot.slot_id}")
        if slot.ends_at <= slot.starts_at:
            raise ValueError(f"{what}: slot {slot.slot_id} ends before it starts")


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
            (notes[0].text or "") if notes else "",
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
        insurance=[_ref(base, "Coverage", _coverage_id(case))] if case.payer else None,
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
    inputs = _further_opinion_inputs(case, base)
    return Task(
        id=str(case.case_id),
        text=_narrative(
            f"Second-opinion case {case.case_id}: {case.status.replace('_', ' ')} "
            f"(task {TASK_STATUS[case.status]}).",
            case.status_reason or "",
            f"With cancer center {center}." if center else "",
            f"Opinion {case.opinion_round} of the case." if case.opinion_round > 1 else "",
            *(_further_opinion_sentence(further) for further in case.further_opinions),
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
        input=inputs or None,
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


def _task_input_type(base: str, code: str) -> CodeableConcept:
    return CodeableConcept(
        coding=[
            Coding(system=_system(base, "task-input"), code=code, display=_TASK_INPUT_DISPLAY[code])
        ],
        text=code,
    )


def _further_opinion_inputs(case: CaseForFhir, base: str) -> list[TaskInput]:
    """Once a further opinion was asked: which opinion the case is on, and per further opinion
    (oldest first) its reason, followed, when the patient agreed to share the earlier opinions,
    by a reference to that Consent."""
    if case.opinion_round == 1 and not case.further_opinions:
        return []
    inputs = [
        TaskInput(type=_task_input_type(base, "opinion-round"), valuePositiveInt=case.opinion_round)
    ]
    for further in case.further_opinions:
        display = _FURTHER_OPINION_REASON_DISPLAY[further.reason]
        inputs.append(
            TaskInput(
                type=_task_input_type(base, "further-opinion"),
                valueCodeableConcept=CodeableConcept(
                    coding=[
                        Coding(
                            system=_system(base, "further-opinion-reason"),
                            code=further.reason,
                            display=display,
                        )
                    ],
                    text=display,
                ),
            )
        )
        if further.share_earlier_opinions:
            inputs.append(
                TaskInput(
                    type=_task_input_type(base, "earlier-opinions-shared"),
                    valueReference=_ref(base, "Consent", _sharing_consent_id(case, further)),
                )
            )
    return inputs


def _further_opinion_sentence(further: FurtherOpinionForFhir) -> str:
    return (
        f"Further opinion {further.opinion_round} asked {further.requested_at.isoformat()}: "
        f"{_FURTHER_OPINION_REASON_DISPLAY[further.reason]}; the earlier opinions "
        + (
            "shared with the next cancer center."
            if further.share_earlier_opinions
            else "not shared."
        )
    )


def _opinion_outputs(case: CaseForFhir, base: str) -> list[TaskOutput]:
    """The written opinions: each current document of kind `opinion`, by reference, but for the
    documents a center attached to a follow-up answer (outputs through that answer's
    Communication)."""
    attached = {document_id for q in case.follow_ups for document_id in q.document_ids}
    return [
        TaskOutput(
            type=CodeableConcept(
                coding=[Coding(system=_LOINC, code="11488-4", display="Consult note")],
                text="opinion",
            ),
            valueReference=_ref(base, "DocumentReference", doc.document_id),
        )
        for doc in case.documents
        if doc.kind == "opinion" and doc.status != "superseded" and doc.document_id not in attached
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
        category=[_consent_category(consent.kind)],
        patient=_ref(base, "Patient", case.case_id),
        dateTime=consent.granted_at,
        performer=[_ref(base, "Patient", case.case_id)],
        # The exact text the patient agreed to: one URI per kind and version of the text.
        policy=[
            ConsentPolicy(
                uri=base
                + policy_path(quote(consent.kind, safe=""), quote(consent.version, safe=""))
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


def _consent_category(kind: str) -> CodeableConcept:
    code, display = _CONSENT_CATEGORY[kind]
    return CodeableConcept(coding=[Coding(system=_ACT_CODE, code=code, display=display)])


def _sharing_consent_id(case: CaseForFhir, further: FurtherOpinionForFhir) -> UUID:
    return uuid.uuid5(case.case_id, f"consent:share-earlier-opinions:{further.opinion_round}")


def _sharing_consents(case: CaseForFhir, base: str) -> list[Consent]:
    """Per further opinion for which the patient agreed to share the earlier opinions, the
    permit to disclose them, for treatment, to the center giving it; the shared documents the
    bundle holds are the provision's data."""
    in_bundle = {doc.document_id for doc in case.documents}
    found = []
    for further in case.further_opinions:
        if not further.share_earlier_opinions:
            continue
        shared = [d for d in dict.fromkeys(further.shared_document_ids) if d in in_bundle]
        given = further.consented_at or further.requested_at
        found.append(
            Consent(
                id=str(_sharing_consent_id(case, further)),
                text=_narrative(
                    f"Consent to share the earlier opinions with the cancer center giving "
                    f"further opinion {further.opinion_round}, given {given.isoformat()}.",
                    f"Permits: disclose {len(shared)} document(s), for treatment.",
                ),
                status="active",
                scope=CodeableConcept(
                    coding=[
                        Coding(
                            system=_CONSENT_SCOPE, code="patient-privacy", display="Privacy Consent"
                        )
                    ]
                ),
                category=[_consent_category("share_earlier_opinions")],
                patient=_ref(base, "Patient", case.case_id),
                dateTime=given,
                performer=[_ref(base, "Patient", case.case_id)],
                # The consent step of the request for a further opinion: an explicit yes to
                # sharing, asked each time, under the published words of that step.
                policy=[
                    ConsentPolicy(uri=base + policy_path("share_earlier_opinions", SHARING_VERSION))
                ],
                provision=ConsentProvision(
                    type="permit",
                    action=[
                        CodeableConcept(coding=[Coding(system=_CONSENT_ACTION, code="disclose")])
                    ],
                    purpose=[Coding(system=_ACT_REASON, code="TREAT", display="treatment")],
                    data=[
                        ConsentProvisionData(
                            meaning="instance", reference=_ref(base, "DocumentReference", d)
                        )
                        for d in shared
                    ]
                    or None,
                ),
            )
        )
    return found


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
    question id), and each answer as a Communication in response to it (id = uuid5 of it), its
    payload the center's words and a reference to each DocumentReference it attached."""
    in_bundle = {doc.document_id for doc in case.documents}
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
            # Only documents the bundle holds, so that every reference resolves inside it.
            attached = [d for d in dict.fromkeys(q.document_ids) if d in in_bundle]
            found.append(
                Communication(
                    id=str(_follow_up_answer_id(q)),
                    text=_narrative(
                        f"Cancer center {q.center_code} answered.",
                        q.answer,
                        f"{len(attached)} document(s) attached." if attached else "",
                    ),
                    partOf=[_ref(base, "Task", case.case_id)],
                    inResponseTo=[_ref(base, "Communication", q.question_id)],
                    status="completed",
                    category=[CodeableConcept(text="follow-up-answer")],
                    subject=_ref(base, "Patient", case.case_id),
                    sent=q.answered_at,
                    sender=_center(base, q.center_code),
                    recipient=[_ref(base, "Patient", case.case_id)],
                    payload=[
                        CommunicationPayload(contentString=q.answer),
                        *(
                            CommunicationPayload(
                                contentReference=_ref(base, "DocumentReference", document_id)
                            )
                            for document_id in attached
                        ),
                    ],
                )
            )
    return found


_PAYER_DISPLAY = {
    "self_pay": "The patient pays",
    "insurer": "A health insurer pays",
    "charity": "A charity or fund pays",
}
_COVERAGE_SELF_PAY = "http://terminology.hl7.org/CodeSystem/coverage-selfpay"


def _coverage_id(case: CaseForFhir) -> UUID:
    return uuid.uuid5(case.case_id, "coverage")


def _coverages(case: CaseForFhir, base: str) -> list[Coverage]:
    """Who pays, as one Coverage (id = uuid5 of the case id) the ServiceRequest names as its
    insurance: self-pay is R4's `coverage-selfpay#pay` with the patient as payor; an insurer is
    the payor by its registry code (a logical reference, like the centers); a charity or fund
    the payor by its words only. No policy number (the bundle names no personal identifier)."""
    payer = case.payer
    if payer is None:
        return []
    if payer.kind == "self_pay":
        payor = _ref(base, "Patient", case.case_id)
        kind = CodeableConcept(
            coding=[Coding(system=_COVERAGE_SELF_PAY, code="pay", display="PAY")],
            text=_PAYER_DISPLAY["self_pay"],
        )
    elif payer.kind == "insurer":
        name = (payer.insurer_name or "").strip() or f"insurer {payer.insurer}"
        payor = Reference(
            type="Organization",
            identifier=Identifier(system=f"{base}/fhir/NamingSystem/insurer", value=payer.insurer),
            display=name,
        )
        kind = CodeableConcept(text=_PAYER_DISPLAY["insurer"])
    else:
        payor = Reference(type="Organization", display="a charity or fund")
        kind = CodeableConcept(text=_PAYER_DISPLAY["charity"])
    return [
        Coverage(
            id=str(_coverage_id(case)),
            text=_narrative(
                f"{_PAYER_DISPLAY[payer.kind]} for the second opinion.",
                f"Payor: {payor.display}." if payor.display else "",
            ),
            status="active",
            type=kind,
            beneficiary=_ref(base, "Patient", case.case_id),
            payor=[payor],
        )
    ]


def _meetings(case: CaseForFhir, base: str) -> list[Resource]:
    """Per meeting: its center's doctors (once per center), its place when in person, and the
    Appointment."""
    found: list[Resource] = []
    centers: set[str] = set()
    for meeting in case.meetings:
        if meeting.center_code not in centers:
            centers.add(meeting.center_code)
            found.append(_center_doctors(case, meeting.center_code, base))
        if meeting.mode == "in_person":
            found.append(_meeting_place(meeting, base))
        found.append(_appointment(case, meeting, base))
    return found


def _center_doctors_id(case: CaseForFhir, center_code: str) -> UUID:
    return uuid.uuid5(case.case_id, f"practitioner-role:{center_code}")


def _center_doctors(case: CaseForFhir, center_code: str, base: str) -> PractitionerRole:
    # R4 does not let an Organization take part in an Appointment; the center's doctors, unnamed,
    # do, as a role at the center.
    return PractitionerRole(
        id=str(_center_doctors_id(case, center_code)),
        text=_narrative(f"The doctors of cancer center {center_code} who explain its opinion."),
        active=True,
        organization=_center(base, center_code),
    )


def _meeting_place_id(meeting: MeetingForFhir) -> UUID:
    return uuid.uuid5(meeting.meeting_id, "location")


def _meeting_place(meeting: MeetingForFhir, base: str) -> Location:
    address = meeting.center_address or "the cancer center"
    return Location(
        id=str(_meeting_place_id(meeting)),
        text=_narrative(
            f"Where cancer center {meeting.center_code} meets the patient: {address}.",
            f"Time zone {meeting.time_zone}." if meeting.time_zone else "",
        ),
        status="active",
        name=f"Cancer center {meeting.center_code}",
        mode="instance",
        address=Address(text=meeting.center_address) if meeting.center_address else None,
        managingOrganization=_center(base, meeting.center_code),
    )


def _appointment(case: CaseForFhir, meeting: MeetingForFhir, base: str) -> Appointment:
    chosen = None
    if meeting.status == "offered" and meeting.requested_slot_id is not None:
        chosen = next((s for s in meeting.slots if s.slot_id == meeting.requested_slot_id), None)
    status = "pending" if chosen else _APPOINTMENT_STATUS[meeting.status]
    when = chosen or meeting.booked_slot
    open_ = status in ("proposed", "pending")
    by_patient, by_center = meeting.cancelled_by == "patient", meeting.cancelled_by == "center"
    if status == "proposed":
        patient_status = "needs-action"
    elif status == "cancelled":
        patient_status = "declined" if by_patient else "accepted" if when else "needs-action"
    else:
        patient_status = "accepted"
    # The center offered the times; a chosen time waits for its booking to confirm it.
    center_status = (
        "needs-action" if status == "pending" else "declined" if by_center else "accepted"
    )
    participants = [
        AppointmentParticipant(
            actor=_ref(base, "Patient", case.case_id), required="required", status=patient_status
        ),
        AppointmentParticipant(
            actor=_ref(base, "PractitionerRole", _center_doctors_id(case, meeting.center_code)),
            required="required",
            status=center_status,
        ),
    ]
    if meeting.mode == "in_person":
        participants.append(
            AppointmentParticipant(
                actor=_ref(base, "Location", _meeting_place_id(meeting)),
                required="required",
                status="accepted",
            )
        )
    description = _meeting_description(meeting)
    cancelled = _cancelation_reason(meeting, base) if status == "cancelled" else None
    return Appointment(
        id=str(meeting.meeting_id),
        text=_narrative(
            f"{description} ({status}).",
            f"From {when.starts_at.isoformat()} to {when.ends_at.isoformat()}"
            + (" (the time the patient chose, to be booked)." if chosen else ".")
            if when
            else "",
            *(
                f"Offered: {s.starts_at.isoformat()} to {s.ends_at.isoformat()}."
                for s in (meeting.slots if open_ else [])
            ),
            f"The center's time zone is {meeting.time_zone}." if meeting.time_zone else "",
            f"Cancelled: {cancelled.text}." if cancelled else "",
            meeting.note or "",
        ),
        identifier=[Identifier(system=_URI, value=f"urn:uuid:{meeting.meeting_id}")],
        status=status,
        cancelationReason=cancelled,
        serviceType=[
            CodeableConcept(
                coding=[
                    Coding(
                        system=_system(base, "service"),
                        code="opinion-consultation",
                        display=_SERVICE_DISPLAY["opinion-consultation"],
                    )
                ],
                text=_SERVICE_DISPLAY["opinion-consultation"],
            )
        ],
        # The preferred value set (v2 0276) has no code for a meeting that explains an opinion.
        appointmentType=CodeableConcept(text="consultation on the second opinion"),
        description=description,
        start=when.starts_at if when else None,
        end=when.ends_at if when else None,
        created=meeting.created_at,
        patientInstruction=meeting.note or None,
        basedOn=[_ref(base, "ServiceRequest", case.case_id)],
        participant=participants,
        requestedPeriod=[Period(start=s.starts_at, end=s.ends_at) for s in meeting.slots]
        if open_ and meeting.slots
        else None,
    )


def _meeting_description(meeting: MeetingForFhir) -> str:
    language = None
    if meeting.language:
        found = pycountry.languages.get(alpha_2=meeting.language)
        language = found.name if found else meeting.language
    return (
        f"Consultation on the second opinion with cancer center {meeting.center_code}, "
        f"{_MEETING_MODE_DISPLAY[meeting.mode]}"
        + (
            f" ({meeting.center_address})"
            if meeting.mode == "in_person" and meeting.center_address
            else ""
        )
        + (f", in {language}" if language else "")
    )


def _cancelation_reason(meeting: MeetingForFhir, base: str) -> CodeableConcept:
    """Who cancelled (HL7's patient or provider) and why: the patient's reason code, or the
    center's words."""
    if meeting.cancelled_by == "patient":
        codings = [Coding(system=_APPOINTMENT_CANCELLATION, code="pat", display="Patient")]
        reason = meeting.cancel_reason
        if reason is not None:
            display = _MEETING_CANCEL_REASON_DISPLAY[reason]
            codings.append(
                Coding(system=_system(base, "meeting-cancel-reason"), code=reason, display=display)
            )
            return CodeableConcept(coding=codings, text=display)
        return CodeableConcept(coding=codings, text="cancelled by the patient")
    if meeting.cancelled_by == "center":
        return CodeableConcept(
            coding=[Coding(system=_APPOINTMENT_CANCELLATION, code="prov", display="Provider")],
            text=(meeting.cancel_reason or "").strip() or "cancelled by the cancer center",
        )
    return CodeableConcept(text="cancelled")


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
