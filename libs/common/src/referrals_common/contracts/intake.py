"""Events published by **intake** on `referrals.cases.v1`, and the case vocabulary.

Intake opens a case, keeps the patient's contact details and consents, and is the process manager
of the case lifecycle (see docs/architecture.md). What it publishes is the clinical side of the
case only: identifiers and clinical facts (diagnosis code, stage, reasons, the patient's clinical
questions, age group, where the opinion should come from). Names, contact details, addresses and
dates of birth never leave intake; the age group (`adult` / `pediatric`) stands in for the age.

This module also defines the case vocabulary other contracts reuse: the ICD-10 neoplasm code, the
stage, country and language codes, the reasons for a second opinion, the destination preference
and `ClinicalSummary`, the clinical facts of a case exactly as a cancer center receives them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from referrals_common.text import NoControlCharacters

from . import topics
from .envelope import EventData
from .information import Shipment
from .meetings import PatientCancelReason, TimeZoneName

SOURCE = "/referrals/intake"

T = TypeVar("T")


def _no_duplicates(values: list[T]) -> list[T]:
    if len(set(values)) != len(values):
        raise ValueError("the list has duplicate items")
    return values


Icd10Code = Annotated[
    str,
    StringConstraints(pattern=r"^(C[0-9]{2}|D[0-4][0-9])(\.[0-9A-Z]{1,4})?$"),
    Field(
        description="ICD-10 code from the neoplasm chapter (C00-D49), upper case, with the dot: "
        "C50.9, C34.1, D46.9",
        examples=["C50.9"],
    ),
]
"""An ICD-10 code of a neoplasm (chapter II, C00-D49)."""

IcdO3Morphology = Annotated[
    str,
    StringConstraints(pattern=r"^[89][0-9]{3}/[0-369]$"),
    Field(
        description="ICD-O-3 morphology (histology and behaviour) code, e.g. 8500/3 for "
        "infiltrating duct carcinoma",
        examples=["8500/3"],
    ),
]
"""A coded histology: the ICD-O-3 morphology code (type/behaviour)."""

CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2 country code, upper case: UA, DE, PL", examples=["DE"]),
]
"""An ISO 3166-1 alpha-2 country code."""

LanguageCode = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z]{2}$"),
    Field(
        description="ISO 639-1 two-letter language code, lower case (a BCP-47 primary language "
        "subtag): uk, en, de",
        examples=["uk"],
    ),
]
"""An ISO 639-1 language code (a valid BCP-47 tag without subtags)."""

Locale = Literal["uk", "en"]
"""The languages the platform speaks to patients in."""

TnmStage = Annotated[
    str,
    StringConstraints(
        pattern=r"^(y|r|a)?[cp]?T(X|x|is|[0-4][a-d]?)(\([^)\s]{1,6}\))? ?"
        r"[cp]?N(X|x|[0-3][a-c]?(mi)?)(\([^)\s]{1,6}\))? ?"
        r"[cp]?M(X|x|[01][a-d]?)(\([^)\s]{1,6}\))?$"
    ),
    Field(
        description="TNM classification (UICC/AJCC), with optional c/p/y/r prefixes: cT2N1M0, "
        "ypT1c N0 M0, pTisN0M0",
        examples=["cT2N1M0"],
    ),
]
"""A TNM classification string."""

StageGroup = Annotated[
    str,
    StringConstraints(pattern=r"^(0|0a|0is|IS|I{1,3}|IV)([A-E][0-9]?){0,2}$"),
    Field(
        description="Stage group in Roman numerals with optional sub-groups: IIIA, IVB, IIIC1, "
        "IIE (Ann Arbor)",
        examples=["IIIA"],
    ),
]
"""A stage group such as IIIA."""

ClinicalQuestion = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    NoControlCharacters,
    Field(description="One clinical question, in the patient's words"),
]
"""One of the patient's clinical questions to the cancer center."""


class AgeGroup(StrEnum):
    """Adult or pediatric oncology: stands in for the date of birth, which is never published."""

    ADULT = "adult"
    PEDIATRIC = "pediatric"


class ReferralReason(StrEnum):
    """Why the patient wants a second opinion."""

    CONFIRM_DIAGNOSIS_OR_STAGE = "confirm_diagnosis_or_stage"
    CHOOSE_TREATMENT = "choose_treatment"
    DRUG_OPTIONS = "drug_options"
    NEW_TACTICS_AFTER_FAILURE_OR_RECURRENCE = "new_tactics_after_failure_or_recurrence"
    OTHER = "other"


class DestinationPreference(StrEnum):
    """Where the patient wants the opinion to come from."""

    UKRAINE = "ukraine"
    """A Ukrainian cancer center."""
    ABROAD = "abroad"
    """Any eligible center outside Ukraine."""
    COUNTRIES = "countries"
    """A center in one of the countries the patient named."""


class CaseStatus(StrEnum):
    """The states of a case, owned by intake (FHIR Task status in brackets)."""

    DRAFT = "draft"  # draft
    SUBMITTED = "submitted"  # received
    ACTION_REQUIRED = "action_required"  # on-hold, businessStatus awaiting-information
    READY = "ready"  # ready
    REFERRED = "referred"  # requested
    ACCEPTED = "accepted"  # accepted / in-progress
    INFORMATION_REQUESTED = "information_requested"  # on-hold, businessStatus information-requested
    CHOOSING_CENTER = "choosing_center"  # on-hold, businessStatus awaiting-patient-choice
    OPINION_DELIVERED = "opinion_delivered"  # completed
    UNROUTABLE = "unroutable"  # failed
    WITHDRAWN = "withdrawn"  # cancelled


class StatusChangeReason(StrEnum):
    """The machine-readable cause of a status change; notifications words its message from it."""

    PATIENT_SUBMITTED = "patient_submitted"
    DOCUMENTS_ACCEPTED = "documents_accepted"
    DOCUMENT_REJECTED = "document_rejected"
    TRANSLATION_REQUIRED = "translation_required"
    DOCUMENT_UNREADABLE = "document_unreadable"
    DOCUMENTS_UPDATED = "documents_updated"
    REFERRAL_REQUESTED = "referral_requested"
    REFERRAL_ACCEPTED = "referral_accepted"
    REFERRAL_DECLINED = "referral_declined"
    REFERRAL_EXPIRED = "referral_expired"
    INFO_REQUESTED = "info_requested"
    INFORMATION_PROVIDED = "information_provided"
    INFORMATION_NOT_PROVIDED = "information_not_provided"
    CENTERS_PROPOSED = "centers_proposed"
    OPINION_DELIVERED = "opinion_delivered"
    NO_ELIGIBLE_CENTER = "no_eligible_center"
    PATIENT_WITHDREW = "patient_withdrew"
    FURTHER_OPINION_REQUESTED = "further_opinion_requested"
    """After an opinion, the patient asked another center for one more (seed 003)."""
    FURTHER_OPINION_UNAVAILABLE = "further_opinion_unavailable"
    """No other center could give a further opinion: the case keeps the opinion it has."""
    OTHER = "other"


class FurtherOpinionReason(StrEnum):
    """Why the patient asks for a further opinion (a choice, never free text: it reaches the
    next center)."""

    CONFLICTING_OPINIONS = "conflicting_opinions"
    """The opinion differs from the treating doctors' plan, or from another opinion."""
    ANOTHER_VIEW = "another_view"
    OTHER = "other"


class WithdrawalReason(StrEnum):
    """Why a case was withdrawn."""

    PATIENT_REQUEST = "patient_request"
    CONSENT_REVOKED = "consent_revoked"
    DUPLICATE = "duplicate"
    OTHER = "other"


ConsentVersion = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$"),
    Field(description="Version identifier of the consent text the patient agreed to"),
]


class Stage(BaseModel):
    """The stage of the disease: TNM, stage group, or both; at least one is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tnm: TnmStage | None = Field(default=None, description="TNM classification, if known")
    group: StageGroup | None = Field(default=None, description="Stage group, if known")

    @model_validator(mode="after")
    def _something_known(self) -> Stage:
        if self.tnm is None and self.group is None:
            raise ValueError("a stage has a TNM classification, a stage group or both")
        return self


class Destination(BaseModel):
    """Where the opinion should come from.

    `countries` is non-empty exactly when `preference` is `countries`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preference: DestinationPreference = Field(description="Ukraine, abroad, or named countries")
    countries: Annotated[list[CountryCode], AfterValidator(_no_duplicates)] = Field(
        default_factory=list,
        max_length=20,
        description="The countries the patient named, without duplicates; empty unless the "
        "preference is `countries`",
    )

    @model_validator(mode="after")
    def _countries_match_preference(self) -> Destination:
        named = self.preference is DestinationPreference.COUNTRIES
        if named and not self.countries:
            raise ValueError("the preference `countries` needs at least one country")
        if not named and self.countries:
            raise ValueError(f"the preference `{self.preference}` takes no countries")
        return self

    @property
    def crosses_border(self) -> bool:
        """Whether an opinion from this destination may involve a center outside Ukraine."""
        if self.preference is DestinationPreference.UKRAINE:
            return False
        if self.preference is DestinationPreference.ABROAD:
            return True
        return any(country != "UA" for country in self.countries)


class ClinicalSummary(BaseModel):
    """The clinical facts of a case, the same in intake's events and in a center's offer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    icd10: Icd10Code = Field(description="Primary diagnosis: ICD-10 code of the neoplasm")
    morphology: IcdO3Morphology | None = Field(
        default=None, description="Histology as an ICD-O-3 morphology code, if known"
    )
    stage: Stage | None = Field(default=None, description="Stage of the disease; null if unknown")
    age_group: AgeGroup = Field(description="Adult or pediatric patient")
    reasons: Annotated[list[ReferralReason], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="Why the patient asks for a second opinion, without duplicates"
    )
    questions: list[ClinicalQuestion] = Field(
        default_factory=list,
        max_length=20,
        description="The patient's clinical questions for the cancer center, in the patient's "
        "words (clinical content only: intake asks the patient not to write personal details)",
    )


class CaseSubmitted(EventData):
    """The patient submitted a case: the clinical facts, the destination and the consents.

    Emitted once per case, when it leaves `draft` (a `CaseStatusChanged` to `submitted` follows).
    A consumer may rely on: the processing consent is recorded (version given); when the
    destination may involve a center outside Ukraine the cross-border consent is recorded too;
    the documents of the case arrive separately as `referrals.document.stored.v1`.
    """

    event_type: ClassVar[str] = "referrals.case.submitted.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    clinical: ClinicalSummary = Field(description="Diagnosis, stage, reasons and questions")
    destination: Destination = Field(description="Where the opinion should come from")
    locale: Locale = Field(description="The language the patient is spoken to in")
    processing_consent_version: ConsentVersion = Field(
        description="Version of the consent to processing of health data the patient gave"
    )
    cross_border_consent_version: ConsentVersion | None = Field(
        default=None,
        description="Version of the consent to cross-border transfer; null when not given. "
        "Always given when the destination may involve a center outside Ukraine",
    )
    submitted_at: AwareDatetime = Field(description="When the patient submitted the case")

    @model_validator(mode="after")
    def _cross_border_consent(self) -> CaseSubmitted:
        if self.destination.crosses_border and self.cross_border_consent_version is None:
            raise ValueError("a destination outside Ukraine needs cross_border_consent_version")
        return self


class CaseStatusChanged(EventData):
    """The case moved from one lifecycle state to another.

    Emitted by intake on every transition, in order (the case id is the key, so one partition
    carries a case's transitions in the order they happened). `from_status` differs from
    `to_status`. `reason_code` is machine-readable; `reason` is an English explanation for the case
    timeline and operators, free of personal data.
    """

    event_type: ClassVar[str] = "referrals.case.status_changed.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    from_status: CaseStatus = Field(description="The state the case left")
    to_status: CaseStatus = Field(description="The state the case is in now")
    reason_code: StatusChangeReason = Field(description="Why the case moved")
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Human-readable explanation in English, without personal data",
    )

    @model_validator(mode="after")
    def _a_change(self) -> CaseStatusChanged:
        if self.from_status == self.to_status:
            raise ValueError("from_status and to_status are the same")
        return self


PreparationText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    NoControlCharacters,
]


class Medication(BaseModel):
    """A medicine the patient takes now, as written on the prescription."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    medicine: PreparationText = Field(description="The medicine (brand or substance)")
    dose: PreparationText = Field(description="The dose and how often, e.g. `50 mg twice a day`")


class Preparation(BaseModel):
    """What a second-opinion consultation asks the patient to prepare (family history, current
    medications with doses, allergies), besides the documents and the questions. Every part is
    optional: an empty list or null means "not given yet", never "none"; say "none" in words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family_history: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
            NoControlCharacters,
        ]
        | None
    ) = Field(
        default=None,
        description="Cancers and related diseases in the family, with the relation "
        "(`mother: breast cancer at 52`); clinical facts only, no names",
    )
    medications: list[Medication] = Field(
        default_factory=list, max_length=50, description="Current medications with doses"
    )
    allergies: list[PreparationText] = Field(
        default_factory=list, max_length=50, description="Allergies and intolerances"
    )


class PayerKind(StrEnum):
    """Who pays for the second opinion (seeds 003, 004)."""

    SELF_PAY = "self_pay"
    INSURER = "insurer"
    """A health insurer covers it: `Payer.insurer` names which."""
    CHARITY = "charity"
    """A charity or fund pays."""


InsurerCode = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=63),
    Field(
        description="An insurer's code, as the center registry lists the insurers a center "
        "accepts: lower-case letters, digits and inner '-'",
        examples=["allianz-care"],
    ),
]


class Payer(BaseModel):
    """Who pays, as routing needs it: the kind, and for an insurer which one. Never the policy
    number (that stays sealed with intake), and never on a center's inbox: a center learns the
    payer through the partner API once it accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PayerKind = Field(description="Self-pay, an insurer, or a charity or fund")
    insurer: InsurerCode | None = Field(
        default=None, description="For `insurer`: which insurer (its registry code)"
    )

    @model_validator(mode="after")
    def _insurer_named(self) -> Payer:
        if (self.kind is PayerKind.INSURER) != (self.insurer is not None):
            raise ValueError("an insurer is named exactly when the payer is an insurer")
        return self


class CaseReadyForReferral(EventData):
    """Every document of the case is stored and in an acceptable language: partners may route it.

    Emitted when the case enters `ready`. Partners re-routes on its own after a decline or an
    expired offer, so this is normally emitted once; a case that needed more documents after a
    center's request becomes ready again and the latest event supersedes the earlier ones. A
    consumer may rely on: every listed document was stored and accepted by the language check;
    `cross_border_transfer_allowed` is true whenever the destination may involve a center outside
    Ukraine; without it only Ukrainian centers are eligible.
    """

    event_type: ClassVar[str] = "referrals.case.ready_for_referral.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    clinical: ClinicalSummary = Field(description="Diagnosis, stage, reasons and questions")
    destination: Destination = Field(description="Where the opinion should come from")
    cross_border_transfer_allowed: bool = Field(
        description="Whether the patient consented to the transfer of the case outside Ukraine"
    )
    document_ids: Annotated[list[UUID], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="The documents to send to the center, without duplicates"
    )
    document_languages: Annotated[list[LanguageCode], AfterValidator(_no_duplicates)] = Field(
        min_length=1,
        description="The languages the documents are written in (main languages), without "
        "duplicates; a center must read all of them",
    )
    preparation: Preparation | None = Field(
        default=None,
        description="Family history, current medications and allergies, as far as the patient "
        "gave them; null when none was given. For the accepting center only (partners shows it "
        "through its API, never on a center's topic)",
    )
    payer: Payer | None = Field(
        default=None,
        description="Who pays: routing offers only centers that accept this payer; null when "
        "the front end did not say (every center's terms apply as before)",
    )
    patient_chooses: bool = Field(
        default=False,
        description="The patient asked to choose the center: when several are eligible, "
        "partners proposes the best few (`case.centers_proposed`) instead of offering the case, "
        "and offers it to the one chosen (`case.center_chosen`), or to the first after the "
        "choice's deadline",
    )
    locale: Locale | None = Field(
        default=None,
        description="The language the patient is spoken to in: partners tells the patient's "
        "front end why a center was chosen in it; null from an intake that did not send it "
        "(English then)",
    )

    @model_validator(mode="after")
    def _cross_border_consent(self) -> CaseReadyForReferral:
        if self.destination.crosses_border and not self.cross_border_transfer_allowed:
            raise ValueError("a destination outside Ukraine needs cross_border_transfer_allowed")
        return self


class CaseContactShared(EventData):
    """How to reach the patient, sealed for notifications alone, on its private topic.

    Emitted once when the case is submitted, on `referrals.contacts.v1`, a topic only
    notifications may read (Kafka ACLs in production). `sealed_contact` is encrypted to
    notifications' public key (`referrals_common.crypto.SealedBox`, bound to the case id): the
    broker, the dead-letter topic and any other reader see ciphertext. Once opened it is
    `{"email": str | null, "phone": str | null, "preferred_channel": "email" | "sms"}`.
    """

    event_type: ClassVar[str] = "referrals.case.contact_shared.v1"
    topic: ClassVar[str] = topics.CONTACTS
    source: ClassVar[str] = SOURCE

    sealed_contact: str = Field(
        min_length=40, max_length=4000, description="Base64 sealed box of the contact details"
    )
    locale: Locale = Field(description="The language the patient is spoken to in")
    front_end: str = Field(
        min_length=1, max_length=64, description="The partner front end the case came from"
    )


class CasePolicyShared(EventData):
    """The patient's insurance policy, sealed for partners alone, for the center that accepted.

    Emitted once per accepted referral of a case an insurer pays (`Payer.kind` `insurer`) whose
    front end gave the policy, on the platform's cases topic (never a center's inbox). Only
    partners opens `sealed_policy`: it is encrypted to partners' public key
    (`referrals_common.crypto.SealedBox`, bound to `<case_id>/<referral_id>`, so it opens for no
    other case or referral); the broker, the dead-letter topic and every other reader see
    ciphertext. Once opened it is `{"insurer": str, "provider": str, "policy_number": str}`.
    Partners shows it to the accepting center through the authenticated partner API only.
    """

    event_type: ClassVar[str] = "referrals.case.policy_shared.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The accepted referral the policy is for")
    sealed_policy: str = Field(
        min_length=40, max_length=4000, description="Base64 sealed box of the policy reference"
    )


class CaseInformationProvided(EventData):
    """The patient answered a center's request for information and sent it to the center.

    Emitted once per answered request (the front end's "send to the center"), when every
    document named is stored and accepted by the language check. Partners gives the case back
    to the same center with this material. `answer`, the shipments and the preparation are the
    patient's words: this event stays on the platform's topics, and a center reads them through
    the authenticated partner API, never from its inbox topic.
    """

    event_type: ClassVar[str] = "referrals.case.information_provided.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    request_id: UUID = Field(description="The request answered (`referral.info_requested`)")
    referral_id: UUID = Field(description="The referral that waits for the answer")
    answer: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
            NoControlCharacters,
        ]
        | None
    ) = Field(default=None, description="The patient's written answer, if any")
    new_document_ids: Annotated[list[UUID], AfterValidator(_no_duplicates)] = Field(
        default_factory=list,
        max_length=50,
        description="The documents added in answer (stored and accepted), without duplicates",
    )
    document_ids: Annotated[list[UUID], AfterValidator(_no_duplicates)] = Field(
        min_length=1,
        description="Every document of the case the center now gets, the new ones included",
    )
    shipments: list[Shipment] = Field(
        default_factory=list, max_length=10, description="Physical material sent by courier"
    )
    preparation: Preparation | None = Field(
        default=None, description="The preparation checklist as it is now, if the patient gave one"
    )

    @model_validator(mode="after")
    def _something_answered(self) -> CaseInformationProvided:
        if not (self.answer or self.new_document_ids or self.shipments or self.preparation):
            raise ValueError("an answer holds words, documents, a shipment or the preparation")
        if not set(self.new_document_ids) <= set(self.document_ids):
            raise ValueError("every new document is one of the case's documents")
        return self


class CaseCenterChosen(EventData):
    """The patient chose one of the centers partners proposed.

    Emitted once, while the case is `choosing_center` and before the choice's deadline; partners
    offers the case to that center (and after a decline or an expiry routes on as usual).
    """

    event_type: ClassVar[str] = "referrals.case.center_chosen.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    center_code: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")] = Field(
        max_length=63, description="The chosen center, one of `case.centers_proposed`'s"
    )


class CaseFollowUpAsked(EventData):
    """After the opinion, the patient asked the center that gave it a follow-up question.

    Emitted once per question (a case takes a few, within a window after the opinion; intake's
    settings). `question` is the patient's words: this event stays on the platform's topics;
    partners tells the center on its inbox that a question waits, and the center reads it
    through the authenticated partner API.
    """

    event_type: ClassVar[str] = "referrals.case.follow_up_asked.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    question_id: UUID = Field(description="The question; the center's answer names it")
    referral_id: UUID = Field(description="The referral whose opinion the question is about")
    question: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
        NoControlCharacters,
    ] = Field(description="The patient's question, in their words")
    asked_at: AwareDatetime = Field(description="When the patient asked")


class CaseMeetingSlotChosen(EventData):
    """The patient picked a time of the consultation meeting the center offered (or moved to
    another of the offered times).

    Emitted once per choice, while the meeting is offered or booked and the slot is ahead.
    Partners books it when the meeting is still open and the slot still offered
    (`referral.meeting_booked`); otherwise the choice is dropped and the meeting's current state
    stands (a center's re-schedule or cancellation crossed it).
    """

    event_type: ClassVar[str] = "referrals.case.meeting_slot_chosen.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    meeting_id: UUID = Field(description="The meeting, as partners' `referral.meeting_offered`")
    slot_id: UUID = Field(description="The chosen slot, one of `referral.meeting_offered`'s")
    time_zone: TimeZoneName = Field(description="The patient's time zone")


class CaseMeetingCancelled(EventData):
    """The patient cancelled the consultation meeting (a reason code, never free text).

    Emitted once per meeting, while it is offered or booked; partners records the cancellation
    (`referral.meeting_cancelled`) and tells the center.
    """

    event_type: ClassVar[str] = "referrals.case.meeting_cancelled.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    meeting_id: UUID = Field(description="The cancelled meeting")
    reason: PatientCancelReason = Field(description="Why, as the patient chose it")


class CaseFurtherOpinionRequested(EventData):
    """After an opinion, the patient asked for one more from another center (seed 003:
    conflicting opinions may need a further consultation).

    Emitted once per further opinion, while the case is `opinion_delivered` (it then becomes
    `ready`, and partners routes it again, never to a center that was offered the case before).
    The earlier opinions travel with the case only if the patient agreed, in an explicit consent
    step: then `shared_document_ids` lists them, and only those documents of other centers are
    readable by the next center; otherwise it is empty.
    """

    event_type: ClassVar[str] = "referrals.case.further_opinion_requested.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    opinion_round: Annotated[int, Field(ge=2, le=10)] = Field(
        description="Which opinion this will be: 2 for the first further opinion"
    )
    reason: FurtherOpinionReason = Field(description="Why, as the patient chose it")
    share_earlier_opinions: bool = Field(
        description="The patient agreed that the earlier opinions go to the next center"
    )
    shared_document_ids: list[UUID] = Field(
        default_factory=list,
        max_length=10,
        description="The earlier opinions' documents the next center may read (empty unless "
        "the patient agreed)",
    )

    @model_validator(mode="after")
    def _consented(self) -> CaseFurtherOpinionRequested:
        if self.shared_document_ids and not self.share_earlier_opinions:
            raise ValueError("earlier opinions are shared only with the patient's consent")
        return self


class CaseWithdrawn(EventData):
    """The case was withdrawn and is closed: consumers stop all work on it.

    Emitted once, from any open state (a `CaseStatusChanged` to `withdrawn` accompanies it).
    Partners withdraw open offers; notifications sends nothing more but the confirmation. When the
    reason is `consent_revoked`, every service deletes the case's data it holds as its retention
    rules require.
    """

    event_type: ClassVar[str] = "referrals.case.withdrawn.v1"
    topic: ClassVar[str] = topics.CASES
    source: ClassVar[str] = SOURCE

    reason: WithdrawalReason | None = Field(
        default=None, description="Why the case was withdrawn; null if the patient gave no reason"
    )


__all__ = [
    "AgeGroup",
    "CaseCenterChosen",
    "CaseContactShared",
    "CaseFollowUpAsked",
    "CaseFurtherOpinionRequested",
    "CaseInformationProvided",
    "CaseMeetingCancelled",
    "CaseMeetingSlotChosen",
    "CasePolicyShared",
    "CaseReadyForReferral",
    "CaseStatus",
    "CaseStatusChanged",
    "CaseSubmitted",
    "CaseWithdrawn",
    "ClinicalQuestion",
    "ClinicalSummary",
    "ConsentVersion",
    "CountryCode",
    "Destination",
    "DestinationPreference",
    "FurtherOpinionReason",
    "Icd10Code",
    "IcdO3Morphology",
    "InsurerCode",
    "LanguageCode",
    "Locale",
    "Medication",
    "Payer",
    "PayerKind",
    "Preparation",
    "ReferralReason",
    "Stage",
    "StageGroup",
    "StatusChangeReason",
    "TnmStage",
    "WithdrawalReason",
]
