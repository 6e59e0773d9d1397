"""Events published by **partners**: routing on `referrals.routing.v1`, offers on partner inboxes.

Partners keeps the registry of cancer centers, routes a ready case to the best eligible center,
re-routes on a decline or an expired deadline, and relays the center's answer and opinion. The
routing events tell the platform what happened to a referral. `ReferralOffered` is the one event a
center reads: it goes to that center's own inbox topic, `referrals.partner-inbox.<center>.v1`, and
carries the clinical summary and how to fetch the documents through the partner API. No event
carries contact data; a center that needs more from the patient asks through the platform.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    model_validator,
)

from . import topics
from .envelope import EventData
from .information import CenterText, RequestedItem
from .intake import ClinicalSummary, CountryCode, Icd10Code, Stage
from .meetings import (
    CancelledBy,
    MeetingPlace,
    MeetingSlot,
    MeetingSlots,
    PatientCancelReason,
    ReminderBefore,
    TimeZoneName,
    check_slots,
)
from .records import DocumentKind, MediaType

SOURCE = "/referrals/partners"

PARTNER_INBOX_TOPIC_TEMPLATE = "referrals.partner-inbox.{center}.v1"
"""The topic of a center's inbox; `{center}` is the center code (see `topics.partner_inbox`)."""

CenterCode = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=63),
    Field(
        description="Code of a cancer center in the partner registry: lower-case letters, digits "
        "and inner '-'; it names the center's inbox topic",
        examples=["charite-berlin"],
    ),
]
"""The registry code of a cancer center."""


def _no_duplicates(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("the list has duplicate centers")
    return values


def _no_duplicate_ids(values: list[UUID]) -> list[UUID]:
    if len(set(values)) != len(values):
        raise ValueError("the list names a document twice")
    return values


def document_fetch_path(referral_id: UUID, document_id: UUID) -> str:
    """The partner API path a center fetches one document of a referral from."""
    return f"/v1/referrals/{referral_id}/documents/{document_id}"


class DeclineReason(StrEnum):
    """Why a center declined a referral."""

    OUTSIDE_EXPERTISE = "outside_expertise"
    NO_CAPACITY = "no_capacity"
    INSUFFICIENT_DOCUMENTS = "insufficient_documents"
    LANGUAGE = "language"
    OTHER = "other"


class UnroutableReason(StrEnum):
    """Why no center will give an opinion on a case."""

    NO_ELIGIBLE_CENTER = "no_eligible_center"
    """No center in the registry matches the diagnosis, age group, destination and languages."""
    ALL_CENTERS_DECLINED = "all_centers_declined"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    """Declines and expired offers used up the attempts routing allows."""
    PAYER_NOT_ACCEPTED = "payer_not_accepted"
    """No center matches the case, and some would but for who pays: none of them accepts the
    case's payer (its insurer, self-pay, or a charity or fund)."""


class ReferralRequested(EventData):
    """Partners chose a center for the case and offered it the referral.

    Emitted for every attempt, at the same time as the `ReferralOffered` on the center's inbox.
    A consumer may rely on: `attempt` counts from 1 and grows by one per re-routing of the case;
    the center must answer by `answer_due_at` or the referral expires.
    """

    event_type: ClassVar[str] = "referrals.referral.requested.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral: one offer of the case to one center")
    center_code: CenterCode
    center_country: CountryCode = Field(description="Country of the center")
    center_name: str | None = Field(
        default=None, max_length=200, description="The center's display name, in English"
    )
    attempt: PositiveInt = Field(
        description="1 for the first center offered the case, then 2, 3 and so on"
    )
    answer_due_at: AwareDatetime = Field(description="When the center must accept or decline")
    rationale: str = Field(
        min_length=1,
        max_length=1000,
        description="Why this center was chosen, in English, for operators and the case page",
    )


class ReferralAccepted(EventData):
    """The center accepted the referral and will write an opinion.

    Emitted once per referral, before its deadline. No other center is offered the case while this
    referral is open.
    """

    event_type: ClassVar[str] = "referrals.referral.accepted.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The accepted referral")
    center_code: CenterCode
    expected_opinion_at: AwareDatetime = Field(
        description="When the center expects to deliver its opinion"
    )


class ReferralDeclined(EventData):
    """The center declined the referral; partners re-routes the case or gives up.

    Emitted once per declined referral. It is followed by a `ReferralRequested` for the next
    center or by `CaseUnroutable`.
    """

    event_type: ClassVar[str] = "referrals.referral.declined.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The declined referral")
    center_code: CenterCode
    reason: DeclineReason = Field(description="Why the center declined")
    detail: str | None = Field(
        default=None,
        max_length=1000,
        description="The center's explanation, if it gave one, without personal data",
    )


class ExpiryReason(StrEnum):
    """Why a referral expired."""

    NO_ANSWER = "no_answer"
    """The center did not accept or decline by `answer_due_at`."""
    INFORMATION_NOT_PROVIDED = "information_not_provided"
    """The center asked for information and the patient did not answer by its due date."""


class ReferralExpired(EventData):
    """The referral ended without an opinion because a deadline passed.

    Emitted once per expired referral: the center did not answer by `answer_due_at`
    (`no_answer`), or the patient did not answer the center's request for information by its
    due date (`information_not_provided`, with the request's id). It is followed by a
    `ReferralRequested` for the next center or by `CaseUnroutable`; a late answer is refused.
    """

    event_type: ClassVar[str] = "referrals.referral.expired.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The expired referral")
    center_code: CenterCode
    reason: ExpiryReason = Field(
        default=ExpiryReason.NO_ANSWER,
        description="Which deadline passed; absent in events older than the information loop "
        "(read it as `no_answer`)",
    )
    request_id: UUID | None = Field(
        default=None,
        description="The unanswered information request, when the reason is "
        "`information_not_provided`",
    )


class ReferralInfoRequested(EventData):
    """The center needs more information from the patient before it can go on.

    Emitted each time a center asks (through the partner API), from an offered or an accepted
    referral, which then waits (`info_requested`) until the patient answers
    (`case.information_provided`) or `due_at` passes (`referral.expired`, reason
    `information_not_provided`). `message` says why, in the center's words; `items` says what.
    Events published before the information loop have neither `request_id`, `items` nor
    `due_at`: read them as one free-text question without a due date.
    """

    event_type: ClassVar[str] = "referrals.referral.info_requested.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral the request is about")
    center_code: CenterCode
    message: str = Field(
        min_length=1,
        max_length=4000,
        description="Why the center needs it, in the center's words (clinical content only)",
    )
    request_id: UUID | None = Field(
        default=None, description="The request; the patient's answer names it"
    )
    items: list[RequestedItem] = Field(
        default_factory=list, max_length=20, description="What the center needs, item by item"
    )
    due_at: AwareDatetime | None = Field(
        default=None,
        description="When the patient must have answered; then the referral expires",
    )
    resumes_as: Literal["offered", "accepted"] | None = Field(
        default=None,
        description="What the referral goes back to once answered: `offered` (the center "
        "has not accepted yet; it gets a new answer deadline) or `accepted`",
    )


class ReminderKind(StrEnum):
    """Which reminder of an unanswered information request."""

    DAYS_BEFORE = "days_before"
    """Some days before the due date (three by default)."""
    DUE_SOON = "due_soon"
    """On the due day, hours before the request expires."""


class ReferralInfoReminder(EventData):
    """The center's request for information is still unanswered and its due date is near.

    Emitted by partners' scheduler at the reminder times before `due_at` (by default three days
    before and eight hours before), once each; a reminder whose time had passed when the
    request was made is not sent. Notifications reminds the patient.
    """

    event_type: ClassVar[str] = "referrals.referral.info_reminder.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The waiting referral")
    center_code: CenterCode
    request_id: UUID = Field(description="The unanswered request")
    reminder: ReminderKind = Field(description="Which reminder this is")
    due_at: AwareDatetime = Field(description="When the request expires")


class ReferralResumed(EventData):
    """The patient answered the center's request: the same center has the case again.

    Emitted once per answered request. `status` is what the referral went back to: `offered`
    (with a new `answer_due_at`, and a new `ReferralOffered` on the center's inbox) or
    `accepted` (with `expected_opinion_at` moved on by the time the center waited, and a
    `ReferralInformationReceived` on the center's inbox).
    """

    event_type: ClassVar[str] = "referrals.referral.resumed.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral that goes on")
    center_code: CenterCode
    request_id: UUID = Field(description="The answered request")
    status: Literal["offered", "accepted"] = Field(description="What the referral is now")
    answer_due_at: AwareDatetime | None = Field(
        default=None, description="When the center must accept or decline (status `offered`)"
    )
    expected_opinion_at: AwareDatetime | None = Field(
        default=None, description="When the center expects its opinion (status `accepted`)"
    )


class ReferralShipmentReceived(EventData):
    """The center confirmed it received physical material the patient sent (slides, blocks).

    Emitted once per shipment, when the center confirms receipt through the partner API.
    """

    event_type: ClassVar[str] = "referrals.referral.shipment_received.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral the material was sent for")
    center_code: CenterCode
    request_id: UUID = Field(description="The request the shipment answered")
    shipment_id: UUID = Field(description="The shipment")
    received_at: AwareDatetime = Field(description="When the center received it")


class DiagnosisVerdict(StrEnum):
    """What the second opinion says of the diagnosis (seed 003)."""

    CONFIRMED = "confirmed"
    REFINED = "refined"
    """The same disease, described more precisely (a more specific code, a subtype)."""
    CHANGED = "changed"
    """A different diagnosis."""


class StageVerdict(StrEnum):
    CONFIRMED = "confirmed"
    CHANGED = "changed"
    NOT_ASSESSED = "not_assessed"


class TreatmentVerdict(StrEnum):
    """What the second opinion says of the treatment plan the patient was given."""

    AGREED = "agreed"
    ALTERNATIVE_PROPOSED = "alternative_proposed"
    NOT_ASSESSED = "not_assessed"


class OpinionOutcome(BaseModel):
    """The conclusion of a written opinion in a few structured fields (seed 003: the second
    doctor may agree, suggest a different treatment, recommend more tests, or change the
    diagnosis), recorded by the center with the document. Clinical content only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    diagnosis: DiagnosisVerdict = Field(description="The diagnosis confirmed, refined or changed")
    icd10: Icd10Code | None = Field(
        default=None,
        description="The refined or changed diagnosis (required when `changed`; absent when "
        "`confirmed`)",
    )
    stage: StageVerdict = Field(description="The stage confirmed, changed or not assessed")
    new_stage: Stage | None = Field(
        default=None, description="The stage the center found, when `changed`"
    )
    treatment: TreatmentVerdict = Field(
        description="The treatment plan agreed, an alternative proposed, or not assessed"
    )
    additional_tests: list[CenterText] = Field(
        default_factory=list, max_length=20, description="Further tests the center recommends"
    )
    clinical_trials: bool = Field(
        default=False, description="Whether the opinion mentions clinical-trial options"
    )
    clinical_trials_detail: CenterText | None = Field(
        default=None, description="Which trials, in the center's words"
    )

    @model_validator(mode="after")
    def _consistent(self) -> OpinionOutcome:
        if self.diagnosis is DiagnosisVerdict.CHANGED and self.icd10 is None:
            raise ValueError("a changed diagnosis names the new ICD-10 code (icd10)")
        if self.diagnosis is DiagnosisVerdict.CONFIRMED and self.icd10 is not None:
            raise ValueError("a confirmed diagnosis takes no new ICD-10 code")
        if (self.stage is StageVerdict.CHANGED) != (self.new_stage is not None):
            raise ValueError("new_stage is given exactly when the stage is `changed`")
        if self.clinical_trials_detail and not self.clinical_trials:
            raise ValueError("clinical_trials_detail needs clinical_trials: true")
        return self

    @property
    def changes_diagnosis(self) -> bool:
        return self.diagnosis is DiagnosisVerdict.CHANGED

    @property
    def changes_plan(self) -> bool:
        return self.treatment is TreatmentVerdict.ALTERNATIVE_PROPOSED


class ReferralOpinionDelivered(EventData):
    """The center delivered its written opinion: the case is complete.

    Emitted once per case. A consumer may rely on: the opinion is a stored document of kind
    `opinion` with id `opinion_document_id`.
    """

    event_type: ClassVar[str] = "referrals.referral.opinion_delivered.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral the opinion answers")
    center_code: CenterCode
    opinion_document_id: UUID = Field(description="The stored opinion document")
    outcome: OpinionOutcome | None = Field(
        default=None,
        description="The opinion's conclusion in structured fields, when the center recorded "
        "it (absent in events older than the field)",
    )


class ReferralFollowUpAnswered(EventData):
    """The center answered the patient's follow-up question on its opinion.

    Emitted once per question, when the center answers through the partner API. `answer` is the
    center's words (clinical content; platform topics only): intake keeps it with the case,
    notifications tells the patient. `document_ids` are documents the center attached: each one
    it uploaded to records for this referral (stored as part of its opinion, kind `opinion`),
    which the patient reads with the case.
    """

    event_type: ClassVar[str] = "referrals.referral.follow_up_answered.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose opinion the question was about")
    center_code: CenterCode
    question_id: UUID = Field(description="The question answered")
    answer: CenterText = Field(description="The center's answer, in its words")
    answered_at: AwareDatetime = Field(description="When the center answered")
    document_ids: Annotated[list[UUID], AfterValidator(_no_duplicate_ids)] = Field(
        default_factory=list,
        max_length=5,
        description="Documents the center attached to its answer, each uploaded to records for "
        "this referral; empty when it answered in words only (and in events older than the "
        "field)",
    )


class ReferralMeetingOffered(EventData):
    """The center offered times for the consultation meeting that explains its opinion.

    Emitted when a center that accepted the referral offers slots, and again (`rescheduled`) when
    it replaces them with new times, which releases a booked time. The patient picks one through
    the front end (intake's `case.meeting_slot_chosen`).
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_offered.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose opinion the meeting explains")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting; the patient books one of its slots")
    place: MeetingPlace = Field(description="How and where the patient meets the doctors")
    slots: Annotated[MeetingSlots, AfterValidator(check_slots)] = Field(
        description="The times offered, in time order, none overlapping"
    )
    rescheduled: bool = Field(
        default=False, description="True when these times replace earlier ones"
    )
    released_slot: MeetingSlot | None = Field(
        default=None,
        description="On a re-schedule of a booked meeting: the booked time these times replace "
        "(the patient's calendar entry for it is withdrawn, with `sequence`)",
    )
    patient_time_zone: TimeZoneName | None = Field(
        default=None, description="The patient's time zone, once they booked a time"
    )
    sequence: int = Field(
        default=0, ge=0, description="Calendar SEQUENCE of the meeting after this change"
    )
    note: CenterText | None = Field(
        default=None, description="What the center asks the patient to prepare, in its words"
    )


class ReferralMeetingBooked(EventData):
    """The meeting is booked at one of the offered times (or moved to another of them).

    Emitted by partners when it takes the patient's choice while the meeting is open and the slot
    still offered. `sequence` starts at 0 and grows with every change of the meeting, as a
    calendar's SEQUENCE does, so the patient's calendar file replaces the earlier one.
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_booked.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting")
    slot: MeetingSlot = Field(description="The booked time")
    place: MeetingPlace = Field(description="How and where the patient meets the doctors")
    patient_time_zone: TimeZoneName = Field(
        description="The patient's time zone, to tell them the time as their clock shows it"
    )
    sequence: int = Field(ge=0, description="Calendar SEQUENCE of this version of the meeting")
    rebooked: bool = Field(default=False, description="True when the patient changed the time")


class ReferralMeetingCancelled(EventData):
    """The meeting will not take place: the patient or the center cancelled it.

    Emitted once per meeting. `slot` is the booked time that is cancelled, if one was booked.
    A center may offer a new meeting afterwards.
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_cancelled.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting")
    cancelled_by: CancelledBy = Field(description="Who cancelled")
    patient_reason: PatientCancelReason | None = Field(
        default=None, description="The patient's reason, when the patient cancelled"
    )
    center_reason: CenterText | None = Field(
        default=None, description="The center's words, when the center cancelled"
    )
    slot: MeetingSlot | None = Field(default=None, description="The booked time, if any")
    patient_time_zone: TimeZoneName | None = Field(
        default=None, description="The patient's time zone, when a time was booked"
    )
    sequence: int = Field(ge=0, description="Calendar SEQUENCE of the cancellation")


class ReferralMeetingReminder(EventData):
    """A booked meeting is near: notifications reminds the patient (24 hours, then 1 hour, before).

    Emitted by partners' scheduler once per reminder; a reminder whose time had passed when the
    meeting was booked is not sent.
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_reminder.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting")
    before: ReminderBefore = Field(description="Which reminder: a day or an hour before")
    slot: MeetingSlot = Field(description="The booked time")
    place: MeetingPlace = Field(description="How and where the patient meets the doctors")
    patient_time_zone: TimeZoneName = Field(description="The patient's time zone")


class MeetingEnd(StrEnum):
    HELD = "held"
    MISSED = "missed"
    """The patient did not come."""


class ReferralMeetingEnded(EventData):
    """After the booked time, the center recorded whether the meeting took place.

    Emitted once per booked meeting. A missed meeting is recorded with the case; the center may
    offer new times.
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_ended.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral whose center offered the meeting")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting")
    outcome: MeetingEnd = Field(description="Whether the meeting took place or was missed")
    slot: MeetingSlot = Field(description="The booked time")
    patient_time_zone: TimeZoneName | None = Field(
        default=None, description="The patient's time zone, to tell them the time they missed"
    )


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: float = Field(ge=0, description="The center's published price of a second opinion")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")


class ProposedCenter(BaseModel):
    """One center the patient may choose, as routing ranked it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: PositiveInt = Field(description="1 for the center routing would choose")
    center_code: CenterCode
    center_name: str = Field(max_length=200, description="The center's name, in English")
    center_country: CountryCode
    turnaround_days: PositiveInt = Field(description="Usual days from acceptance to opinion")
    price: Price | None = Field(default=None, description="Its price, where it publishes one")
    why: str = Field(
        max_length=1000, description="Why it is proposed, or why it ranks below the first"
    )


class CentersProposed(EventData):
    """The patient asked to choose: partners proposes the best-ranked eligible centers.

    Emitted once per case that asked to choose (`case.ready_for_referral.patient_chooses`) when
    at least two centers are eligible at its first routing. Intake shows the choice to the
    patient; `case.center_chosen` answers it; without an answer by `choose_by`, the case is
    offered to the first-ranked center.
    """

    event_type: ClassVar[str] = "referrals.case.centers_proposed.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    proposals: list[ProposedCenter] = Field(
        min_length=2, max_length=10, description="The centers, best first"
    )
    choose_by: AwareDatetime = Field(description="Without a choice by then, the first is used")


class CaseUnroutable(EventData):
    """No center will give an opinion on the case: routing gave up.

    Emitted once per case (and once per further opinion that cannot be had), instead of (or
    after the last) `ReferralRequested`. `centers_tried` is empty when no center was eligible at
    all. For a further opinion (`opinion_round` 2 or more) the case keeps the opinion it has.
    """

    event_type: ClassVar[str] = "referrals.case.unroutable.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    reason: UnroutableReason = Field(description="Why routing gave up")
    centers_tried: Annotated[list[CenterCode], AfterValidator(_no_duplicates)] = Field(
        default_factory=list,
        description="The centers offered the case, in the order they were tried",
    )
    opinion_round: int | None = Field(
        default=None,
        ge=2,
        description="Set when a further opinion could not be had: which opinion it was to be "
        "(the case keeps its earlier one); absent for a case's first routing",
    )


class OfferedDocument(BaseModel):
    """One document of an offered referral and where the center fetches it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    document_id: UUID = Field(description="The document")
    kind: DocumentKind = Field(description="What the document is")
    media_type: MediaType = Field(description="Media type of the document")
    fetch_via: str = Field(
        pattern=r"^/v1/referrals/[0-9a-f-]{36}/documents/[0-9a-f-]{36}$",
        description="Partner API path that returns a short-lived presigned link to the document: "
        "/v1/referrals/{referral_id}/documents/{document_id}",
    )


RoutingCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,15}$"),
    Field(
        description="A code a routing rule matched on: an ICD-10 code or coverage entry (C50, "
        "C50.9, C00-C14), an age group (adult), a country (DE), a language (de)",
        examples=["C50"],
    ),
]


class RoutingRule(StrEnum):
    """A rule of routing that the offered center met for the case."""

    DIAGNOSIS = "diagnosis"
    """One of the center's ICD-10 coverage entries covers the case's code."""
    AGE_GROUP = "age_group"
    """The center sees patients of the case's age group."""
    DESTINATION = "destination"
    """The center is where the patient asked for the opinion from (and, outside Ukraine, the
    patient consented to cross-border transfer)."""
    LANGUAGES = "languages"
    """The center's reviewers read every language the documents are in."""
    CAPACITY = "capacity"
    """The center had places left this week."""
    TURNAROUND = "turnaround"
    """The center's usual days from acceptance to the opinion (the first ranking criterion)."""


class RoutingMatch(BaseModel):
    """One rule the center met, with the codes and figures it matched on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: RoutingRule = Field(description="Which rule")
    codes: list[RoutingCode] = Field(
        default_factory=list,
        max_length=20,
        description="What it matched on: for `diagnosis` the center's coverage entry, then the "
        "case's ICD-10 code; `age_group` the age group; `destination` the center's country; "
        "`languages` the documents' languages; empty for `capacity` and `turnaround`",
    )
    places_taken: int | None = Field(
        default=None, ge=0, description="For `capacity`: the center's open referrals this week"
    )
    weekly_capacity: PositiveInt | None = Field(
        default=None, description="For `capacity`: the referrals the center takes per week"
    )
    turnaround_days: PositiveInt | None = Field(
        default=None, description="For `turnaround`: days from acceptance to the opinion"
    )
    text: str = Field(max_length=300, description="The match in one English sentence")


class RoutingReasonCode(StrEnum):
    """Why this center was offered the case, beyond the rules it met."""

    RANKED_FIRST = "ranked_first"
    """First of several eligible centers (by turnaround, load this week, price, code)."""
    ONLY_ELIGIBLE = "only_eligible"
    """The one eligible center."""
    CHOSEN_BY_PATIENT = "chosen_by_patient"
    """The patient chose it among the proposed centers."""
    NO_CHOICE_BY_DEADLINE = "no_choice_by_deadline"
    """The patient was proposed a choice and did not choose in time: the first-ranked center."""
    REROUTED_AFTER_DECLINE = "rerouted_after_decline"
    """Centers offered the case before declined it."""
    REROUTED_AFTER_EXPIRY = "rerouted_after_expiry"
    """Centers offered the case before let the offer expire."""
    FURTHER_OPINION = "further_opinion"
    """The patient asked for a further opinion after an earlier one."""


class RankCriterion(StrEnum):
    """The ranking criterion that put the first-ranked center ahead of the second."""

    TURNAROUND = "turnaround"
    LOAD = "load"
    PRICE = "price"
    CODE = "code"
    """A tie on everything else, broken by center code."""


class RoutingReason(BaseModel):
    """One reason this center was offered the case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: RoutingReasonCode = Field(description="The reason")
    count: PositiveInt | None = Field(
        default=None,
        description="For `rerouted_after_decline` / `rerouted_after_expiry`: how many centers; "
        "for `further_opinion`: which opinion this is (2 for the second); for "
        "`chosen_by_patient`: how many centers were proposed",
    )
    criterion: RankCriterion | None = Field(
        default=None, description="For `ranked_first`: what put it ahead of the second"
    )
    text: str = Field(max_length=300, description="The reason in one English sentence")


class RoutingExplanation(BaseModel):
    """Why routing offered a case to this center: the rules it met, its rank among the eligible
    centers, and how the offer came about. Codes and figures only, from the registry and the
    case's clinical facts (never the patient's words, contact data or payer); the English
    sentences are made from those codes. Other centers are counted, never named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: PositiveInt = Field(description="Its rank among the eligible centers (1: the best)")
    eligible_count: PositiveInt = Field(description="How many centers were eligible")
    considered_count: PositiveInt = Field(description="How many centers routing considered")
    chosen_by_patient: bool = Field(description="Whether the patient chose this center")
    opinion_round: PositiveInt = Field(
        default=1, description="Which opinion the case was routed for: 1, then 2 and on"
    )
    matched: list[RoutingMatch] = Field(
        max_length=10, description="The rules the center met, in routing's order"
    )
    reasons: list[RoutingReason] = Field(
        min_length=1, max_length=10, description="Why this center, most telling first"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RoutingExplanation:
        if not self.rank <= self.eligible_count <= self.considered_count:
            raise ValueError("rank <= eligible_count <= considered_count must hold")
        return self


class ReferralOffered(EventData):
    """A referral offered to one cancer center, on that center's own inbox topic.

    Emitted with every `ReferralRequested`, to `referrals.partner-inbox.<center_code>.v1` (use
    `ReferralOffered.topic_for(center_code)`); a center reads nothing else. It carries the clinical
    summary without the patient's free-text questions, and the documents, each fetched through
    the authenticated partner API at `fetch_via`; never contact data, names or file names. The
    center answers (accept, decline, ask for information, deliver the opinion) through the partner
    API by `answer_due_at`.
    """

    event_type: ClassVar[str] = "referrals.referral.offered.v1"
    topic: ClassVar[str] = PARTNER_INBOX_TOPIC_TEMPLATE
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral; the id to use in the partner API")
    center_code: CenterCode
    clinical: ClinicalSummary = Field(
        description="Diagnosis, stage and reasons; `questions` is always empty here: the "
        "patient's questions, in the patient's own words, are read through the partner API "
        "(GET /v1/partner/referrals/{referral_id})"
    )
    documents: list[OfferedDocument] = Field(
        min_length=1, description="The case's documents and where to fetch each, each once"
    )
    answer_due_at: AwareDatetime = Field(description="When the center must accept or decline")
    routing: RoutingExplanation | None = Field(
        default=None,
        description="Why routing offered the case to this center: rules met, rank among the "
        "eligible centers, re-routing, the patient's choice (codes and figures, with an English "
        "sentence each); absent in offers made before partners recorded it",
    )

    @classmethod
    def topic_for(cls, center_code: str) -> str:
        """The inbox topic of a center: `referrals.partner-inbox.<center_code>.v1`."""
        return topics.partner_inbox(center_code)

    @property
    def inbox_topic(self) -> str:
        """The topic this offer is published to."""
        return self.topic_for(self.center_code)

    def publish_topic(self) -> str:
        return self.inbox_topic

    @model_validator(mode="after")
    def _documents_of_this_referral(self) -> ReferralOffered:
        if self.clinical.questions:
            # Free text in the patient's words may name the patient: centers read the
            # questions through the authenticated partner API only.
            raise ValueError("an offer carries no questions (read them from the partner API)")
        ids = [doc.document_id for doc in self.documents]
        if len(set(ids)) != len(ids):
            raise ValueError("documents lists a document twice")
        for doc in self.documents:
            expected = document_fetch_path(self.referral_id, doc.document_id)
            if doc.fetch_via != expected:
                raise ValueError(f"fetch_via of document {doc.document_id} is not {expected}")
        return self


class ReferralInformationReceived(EventData):
    """The patient answered this center's request for information on an accepted referral.

    Emitted to the center's own inbox topic (like `ReferralOffered`), once per answered request
    of an accepted referral. It lists the new documents and where to fetch each; the patient's
    written answer, the preparation checklist and any shipment (carrier, tracking number) are
    read through the partner API (`GET /v1/partner/referrals/{referral_id}`), never from a topic.
    """

    event_type: ClassVar[str] = "referrals.referral.information_received.v1"
    topic: ClassVar[str] = PARTNER_INBOX_TOPIC_TEMPLATE
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral; the id to use in the partner API")
    center_code: CenterCode
    request_id: UUID = Field(description="The answered request")
    documents: list[OfferedDocument] = Field(
        default_factory=list, description="The documents added in answer, and where to fetch each"
    )
    shipments: int = Field(
        default=0, ge=0, description="How many shipments of physical material are on their way"
    )
    written_answer: bool = Field(
        description="Whether the patient answered in words (read it through the partner API)"
    )
    expected_opinion_at: AwareDatetime = Field(
        description="The opinion's expected date, moved on by the time the center waited"
    )

    @classmethod
    def topic_for(cls, center_code: str) -> str:
        return topics.partner_inbox(center_code)

    def publish_topic(self) -> str:
        return self.topic_for(self.center_code)

    @model_validator(mode="after")
    def _documents_of_this_referral(self) -> ReferralInformationReceived:
        for doc in self.documents:
            expected = document_fetch_path(self.referral_id, doc.document_id)
            if doc.fetch_via != expected:
                raise ValueError(f"fetch_via of document {doc.document_id} is not {expected}")
        return self


class ReferralFollowUpAsked(EventData):
    """The patient asked this center a follow-up question on its opinion.

    Emitted to the center's own inbox topic, once per question. It carries no words of the
    patient: the center reads the question through the partner API
    (`GET /v1/partner/referrals/{referral_id}`, `follow_up_questions`) and answers there.
    """

    event_type: ClassVar[str] = "referrals.referral.follow_up_asked.v1"
    topic: ClassVar[str] = PARTNER_INBOX_TOPIC_TEMPLATE
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral; the id to use in the partner API")
    center_code: CenterCode
    question_id: UUID = Field(description="The question to answer")

    @classmethod
    def topic_for(cls, center_code: str) -> str:
        return topics.partner_inbox(center_code)

    def publish_topic(self) -> str:
        return self.topic_for(self.center_code)


class MeetingChange(StrEnum):
    BOOKED = "booked"
    """The patient booked one of the offered times, or moved to another."""
    CANCELLED = "cancelled"
    """The patient cancelled the meeting."""


class ReferralMeetingChanged(EventData):
    """The patient booked, moved or cancelled the consultation meeting this center offered.

    Emitted to the center's own inbox topic. It carries times and a reason code, never the
    patient's words or contacts; the meeting's details are in the partner API
    (`GET /v1/partner/referrals/{referral_id}`, `meetings`).
    """

    event_type: ClassVar[str] = "referrals.referral.meeting_changed.v1"
    topic: ClassVar[str] = PARTNER_INBOX_TOPIC_TEMPLATE
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral; the id to use in the partner API")
    center_code: CenterCode
    meeting_id: UUID = Field(description="The meeting")
    change: MeetingChange = Field(description="What the patient did")
    slot: MeetingSlot | None = Field(
        default=None, description="The booked time (for `booked`), or the cancelled one"
    )
    patient_reason: PatientCancelReason | None = Field(
        default=None, description="Why the patient cancelled (for `cancelled`)"
    )

    @classmethod
    def topic_for(cls, center_code: str) -> str:
        return topics.partner_inbox(center_code)

    def publish_topic(self) -> str:
        return self.topic_for(self.center_code)


__all__ = [
    "PARTNER_INBOX_TOPIC_TEMPLATE",
    "CaseUnroutable",
    "CenterCode",
    "CentersProposed",
    "DeclineReason",
    "DiagnosisVerdict",
    "ExpiryReason",
    "MeetingChange",
    "MeetingEnd",
    "OfferedDocument",
    "OpinionOutcome",
    "Price",
    "ProposedCenter",
    "ReferralAccepted",
    "ReferralDeclined",
    "ReferralExpired",
    "ReferralFollowUpAnswered",
    "ReferralFollowUpAsked",
    "ReferralInfoReminder",
    "ReferralInfoRequested",
    "ReferralInformationReceived",
    "ReferralMeetingBooked",
    "ReferralMeetingCancelled",
    "ReferralMeetingChanged",
    "ReferralMeetingEnded",
    "ReferralMeetingOffered",
    "ReferralMeetingReminder",
    "ReferralOffered",
    "ReferralOpinionDelivered",
    "ReferralRequested",
    "ReferralResumed",
    "ReferralShipmentReceived",
    "ReminderKind",
    "StageVerdict",
    "TreatmentVerdict",
    "UnroutableReason",
]
