"""What each notification says: one typed context model per trigger.

A context model lists exactly the facts the templates of its trigger use (besides the fields every
message shares), so the consumer that builds it from an event and the templates that word it agree
on one typed contract. Templates are rendered with `StrictUndefined`: a template that needs a fact
the model does not have fails loudly instead of sending a message with a hole in it.

Free text arrives from outside (the patient's name, a file name, a center's message), so every text
field refuses control characters (a header or SMS cannot be split by a stray newline) and has a
length limit. Codes stay codes (language, country, reason); the templates turn them into words in
the patient's language.

`webhook_facts` names the fields a partner front end may receive in a webhook: codes, counts, center
names, prices and dates, never the patient's name, a file name or a center's free-text message.
`calendar_facts` names the fields only a calendar file uses (a meeting's id and version): they are
never written in a message's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    HttpUrl,
    PositiveInt,
    StringConstraints,
    model_validator,
)

from referrals_common.contracts.information import RequestedItemKind
from referrals_common.contracts.intake import CountryCode, LanguageCode, WithdrawalReason
from referrals_common.contracts.meetings import (
    MAX_SLOTS,
    MEETING_MAX_LENGTH,
    MEETING_MIN_LENGTH,
    CancelledBy,
    MeetingMode,
    PatientCancelReason,
    ReminderBefore,
)
from referrals_common.contracts.notifications import NotificationTrigger
from referrals_common.contracts.partners import (
    CenterCode,
    DiagnosisVerdict,
    Price,
    ReminderKind,
    TreatmentVerdict,
    UnroutableReason,
)
from referrals_common.contracts.records import DocumentKind, RejectionReason
from referrals_common.contracts.translation import UnreadableReason
from referrals_common.frozen import FrozenModel

DEFAULT_TIME_ZONE = "Europe/Kyiv"
"""The time zone dates are shown in unless the patient chose another."""

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_NO_CONTROL_BUT_LINES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$"

CaseRef = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){1,3}$"),
    Field(description="The short reference of the case the patient sees: 3F0F-6C7D"),
]
"""A short, human-friendly reference of a case (see `case_reference`)."""

GreetingName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NO_CONTROL),
    Field(description="How the patient is greeted, used as given (e.g. a vocative form)"),
]

CenterName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_CONTROL),
    Field(description="The cancer center's display name from the partner registry"),
]

DocumentName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=_NO_CONTROL),
    Field(description="The name the patient gave the document (their own file name)"),
]

CenterMessage = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=4000, pattern=_NO_CONTROL_BUT_LINES
    ),
    Field(description="The center's words, relayed as they are (line breaks kept)"),
]

CenterDetail = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000, pattern=_NO_CONTROL),
    Field(description="What exactly the center needs, in its words, on one line"),
]


def _known_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


TimeZoneName = Annotated[
    str,
    AfterValidator(_known_time_zone),
    Field(description="IANA time zone the patient reads dates in: Europe/Kyiv"),
]

LocaleTag = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"),
    Field(description="The patient's language tag; uk and en are spoken, others fall back to en"),
]


def case_reference(case_id: UUID) -> str:
    """The short reference of a case shown to the patient: the first 8 hex digits, `3F0F-6C7D`.

    Enough to tell a patient's cases apart and to quote on the phone; not an identifier to look a
    case up by (32 bits collide across the whole platform eventually).
    """
    head = case_id.hex[:8].upper()
    return f"{head[:4]}-{head[4:]}"


class MessageContext(FrozenModel):
    """The facts every notification carries, whatever its trigger."""

    trigger: ClassVar[NotificationTrigger]
    webhook_facts: ClassVar[tuple[str, ...]] = ()
    calendar_facts: ClassVar[tuple[str, ...]] = ()
    """Fields only the e-mail's calendar file uses (its UID, SEQUENCE, DTSTAMP): no template
    shows them."""

    case_ref: CaseRef
    greeting_name: GreetingName | None = Field(
        default=None, description="Name to greet the patient by; a neutral greeting if absent"
    )
    locale: LocaleTag = Field(default="en", description="The patient's language")
    time_zone: TimeZoneName = DEFAULT_TIME_ZONE
    case_url: HttpUrl | None = Field(
        default=None, description="Link to the case page in the partner front end, if known"
    )


class _DocumentFacts(MessageContext):
    """A notification about one document: named by the patient's file name, or by its kind."""

    document_name: DocumentName | None = None
    document_kind: DocumentKind | None = None


class CaseSubmittedContext(MessageContext):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.CASE_SUBMITTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("submitted_at",)

    submitted_at: AwareDatetime


class DocumentRejectedContext(_DocumentFacts):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.DOCUMENT_REJECTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("reason",)

    reason: RejectionReason


class TranslationRequiredContext(_DocumentFacts):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.TRANSLATION_REQUIRED
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "document_kind",
        "detected_language",
        "acceptable_languages",
    )

    detected_language: LanguageCode
    acceptable_languages: list[LanguageCode] = Field(min_length=1, max_length=20)


class DocumentUnreadableContext(_DocumentFacts):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.DOCUMENT_UNREADABLE
    webhook_facts: ClassVar[tuple[str, ...]] = ("document_kind", "reason")

    reason: UnreadableReason


class CaseReadyContext(MessageContext):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.CASE_READY


class ReferralRequestedContext(MessageContext):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.REFERRAL_REQUESTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "center_country", "answer_due_at")

    center_name: CenterName
    center_country: CountryCode
    answer_due_at: AwareDatetime


class ReferralAcceptedContext(MessageContext):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.REFERRAL_ACCEPTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "expected_opinion_at")

    center_name: CenterName
    expected_opinion_at: AwareDatetime


class DeclineOutcome(StrEnum):
    """How the offer to a center ended without an acceptance."""

    DECLINED = "declined"
    EXPIRED = "expired"
    """The center did not answer by the deadline."""


class ReferralDeclinedContext(MessageContext):
    """The center declined or let the offer expire; the case goes on to another center.

    The center's decline reason is deliberately not told: it is written for the platform, and the
    next center may well take the case.
    """

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.REFERRAL_DECLINED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "outcome")

    center_name: CenterName
    outcome: DeclineOutcome


class RequestedItemFacts(FrozenModel):
    """One thing the center asks for: its kind (worded by the templates) and the center's words."""

    kind: RequestedItemKind
    detail: CenterDetail


class InfoRequestedContext(MessageContext):
    """The center needs more information: what (`items`), why (`message`), by when (`due_at`).

    Requests made before the information loop have no items and no due date: `message` is then
    the whole request, in the center's words.
    """

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.INFO_REQUESTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "due_at")

    center_name: CenterName
    message: CenterMessage
    items: list[RequestedItemFacts] = Field(default_factory=list, max_length=20)
    due_at: AwareDatetime | None = Field(
        default=None, description="When the answer is due; then the case goes to another center"
    )


class InfoReminderContext(MessageContext):
    """The center's request is still unanswered and its due date is near."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.INFO_REMINDER
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "reminder", "due_at")

    center_name: CenterName
    reminder: ReminderKind
    due_at: AwareDatetime


class InfoExpiredContext(MessageContext):
    """The request was not answered in time: the case goes on to another center."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.INFO_EXPIRED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name",)

    center_name: CenterName


class InformationSentContext(MessageContext):
    """The patient's answer went to the center. Counts only: never the answer's words, a
    document's name or a shipment's courier or tracking number."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.INFORMATION_SENT
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "center_name",
        "new_documents",
        "shipments",
        "written_answer",
    )

    center_name: CenterName | None = Field(
        default=None, description="The center, if notifications saw its referral"
    )
    new_documents: int = Field(default=0, ge=0, le=50)
    shipments: int = Field(default=0, ge=0, le=10)
    written_answer: bool = False
    preparation: bool = Field(
        default=False,
        description="Whether this answer sent the preparation checklist: its request asked for "
        "parts of it and the answer completes them (a checklist the case merely has is not sent)",
    )


class ShipmentReceivedContext(MessageContext):
    """The center confirmed receiving the material the patient sent by courier."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.SHIPMENT_RECEIVED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "received_at")

    center_name: CenterName
    received_at: AwareDatetime


class OpinionDeliveredContext(MessageContext):
    """The opinion is ready, and, when the center recorded its conclusion, what it concluded in
    plain verdicts: the diagnosis confirmed, refined or changed, the treatment agreed or another
    proposed, how many further tests, whether clinical trials are mentioned. Verdicts and counts
    only: never a diagnosis code or name, a stage, a test's name or a trial's details.

    The verdicts come all together, or not at all: none means no recorded conclusion (an older
    event, or a center that recorded none), and the message is the plain "the opinion is ready".
    """

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.OPINION_DELIVERED
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "center_name",
        "diagnosis",
        "treatment",
        "further_tests",
        "clinical_trials",
    )

    center_name: CenterName
    diagnosis: DiagnosisVerdict | None = Field(
        default=None, description="What the opinion says of the diagnosis, if recorded"
    )
    treatment: TreatmentVerdict | None = Field(
        default=None, description="What the opinion says of the treatment plan, if recorded"
    )
    further_tests: int | None = Field(
        default=None, ge=0, le=20, description="How many further tests the center recommends"
    )
    clinical_trials: bool | None = Field(
        default=None, description="Whether the opinion mentions clinical-trial options"
    )

    @model_validator(mode="after")
    def _all_verdicts_or_none(self) -> OpinionDeliveredContext:
        verdicts = (self.diagnosis, self.treatment, self.further_tests, self.clinical_trials)
        if len({value is None for value in verdicts}) > 1:
            raise ValueError("an opinion's verdicts are all given, or none (no recorded outcome)")
        return self


class FollowUpAnsweredContext(MessageContext):
    """The center answered the patient's follow-up question on its opinion.

    The center, the day and how many documents it attached only: never the answer's words,
    the documents or the patient's question (clinical content stays off e-mail, SMS and
    webhooks; the patient reads and downloads them with the case).
    """

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.FOLLOW_UP_ANSWERED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "answered_at", "documents")

    center_name: CenterName
    answered_at: AwareDatetime
    documents: int = Field(
        default=0, ge=0, le=5, description="How many documents the center attached"
    )


class ProposedCenterFacts(FrozenModel):
    """One center the patient may choose: what a patient weighs, nothing routing-internal.

    Never the center's code or routing's `why` (its reasons may name the disease): the patient
    chooses by name, country, usual time to the opinion and price, on the request page.
    """

    center_name: CenterName
    center_country: CountryCode
    turnaround_days: PositiveInt = Field(description="Usual days from acceptance to opinion")
    price: Price | None = Field(default=None, description="Its price, where it publishes one")


class CentersProposedContext(MessageContext):
    """The patient asked to choose the center: the centers to choose from, best first, and by
    when; without a choice by `choose_by`, the case goes to the first of them."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.CENTERS_PROPOSED
    webhook_facts: ClassVar[tuple[str, ...]] = ("proposals", "choose_by")

    proposals: list[ProposedCenterFacts] = Field(
        min_length=2, max_length=10, description="The centers, best first"
    )
    choose_by: AwareDatetime = Field(description="Without a choice by then, the first is used")


class MeetingTimeFacts(FrozenModel):
    """When a consultation meeting starts and ends (instants; the templates show them in the
    patient's time zone and in the center's). Never the slot's id."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _length(self) -> MeetingTimeFacts:
        if not MEETING_MIN_LENGTH <= self.ends_at - self.starts_at <= MEETING_MAX_LENGTH:
            raise ValueError("a meeting lasts between 15 minutes and 3 hours")
        return self


CenterAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=_NO_CONTROL),
    Field(description="Where at the center the meeting is: the center's words, on one line"),
]


class _MeetingPlaceFacts(MessageContext):
    """How the patient meets the center's doctors: by video, or in person at an address; the
    center's time zone (to show its local time) and the language its doctors speak, if known.

    The video link and the address are the center's, not the patient's; a front end reads them
    from the API, so they are never webhook facts."""

    center_name: CenterName | None = Field(
        default=None, description="The center, if notifications saw its referral (never its code)"
    )
    mode: MeetingMode
    center_address: CenterAddress | None = None
    center_time_zone: TimeZoneName = Field(description="The center's time zone")
    meeting_language: LanguageCode | None = Field(
        default=None, description="The language the doctors speak, if the center said"
    )

    @model_validator(mode="after")
    def _address_in_person(self) -> _MeetingPlaceFacts:
        if (self.mode is MeetingMode.IN_PERSON) != (self.center_address is not None):
            raise ValueError("a meeting in person has the center's address, and only it")
        return self


class _BookedMeetingFacts(_MeetingPlaceFacts):
    """A booked meeting: its time and, for a video call, the link to join."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    join_url: HttpUrl | None = Field(default=None, description="For a video call: the link")

    @model_validator(mode="after")
    def _link_for_video(self) -> _BookedMeetingFacts:
        if (self.mode is MeetingMode.VIDEO) != (self.join_url is not None):
            raise ValueError("a video meeting has the link to join, and only it")
        if self.join_url is not None and self.join_url.scheme != "https":
            raise ValueError("the link to join is https")
        if not MEETING_MIN_LENGTH <= self.ends_at - self.starts_at <= MEETING_MAX_LENGTH:
            raise ValueError("a meeting lasts between 15 minutes and 3 hours")
        return self


class MeetingOfferedContext(_MeetingPlaceFacts):
    """The center offered times for the consultation meeting (or new times, `rescheduled`): the
    patient chooses one on the request page. Each time is shown in the patient's time zone (Kyiv
    time until the patient has booked one) and the center's local time; the link to join comes
    with the booking. New times that replace a booked one (`released_starts_at`) say so, and the
    e-mail withdraws the booked time's calendar entry (`calendar_facts`)."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.MEETING_OFFERED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "mode", "slots", "rescheduled")
    calendar_facts: ClassVar[tuple[str, ...]] = ("meeting_id", "sequence", "changed_at")

    slots: list[MeetingTimeFacts] = Field(min_length=1, max_length=MAX_SLOTS)
    rescheduled: bool = Field(default=False, description="These times replace earlier ones")
    note: CenterMessage | None = Field(
        default=None, description="What the center asks the patient to prepare, in its words"
    )
    released_starts_at: AwareDatetime | None = Field(
        default=None, description="The booked time these times replace, if one was booked"
    )
    released_ends_at: AwareDatetime | None = None
    meeting_id: UUID | None = Field(
        default=None, description="With a released time: the calendar entry's UID, never shown"
    )
    sequence: int | None = Field(
        default=None, ge=0, description="With a released time: the withdrawal's SEQUENCE"
    )
    changed_at: AwareDatetime | None = Field(
        default=None, description="With a released time: when it was released, the DTSTAMP"
    )

    @model_validator(mode="after")
    def _released_with_its_calendar_facts(self) -> MeetingOfferedContext:
        released = (self.released_starts_at, self.released_ends_at)
        calendar = (self.meeting_id, self.sequence, self.changed_at)
        if len({value is None for value in (*released, *calendar)}) > 1:
            raise ValueError("a released time comes with its end and its calendar facts, or none")
        if self.released_starts_at is not None and not self.rescheduled:
            raise ValueError("only new times release a booked one")
        return self


class MeetingBookedContext(_BookedMeetingFacts):
    """The meeting is booked (or moved to another time, `rebooked`): when, how long, how to join,
    in which language, and how to prepare. The e-mail carries a calendar file (`calendar_facts`
    are its identity and version, never shown in the words)."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.MEETING_BOOKED
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "center_name",
        "mode",
        "starts_at",
        "ends_at",
        "rebooked",
    )
    calendar_facts: ClassVar[tuple[str, ...]] = ("meeting_id", "sequence", "changed_at")

    meeting_id: UUID = Field(description="The meeting: the calendar entry's UID, never shown")
    sequence: int = Field(ge=0, description="The calendar entry's SEQUENCE")
    changed_at: AwareDatetime = Field(description="When the meeting was booked: the DTSTAMP")
    rebooked: bool = Field(default=False, description="The patient moved it to another time")


class MeetingCancelledContext(MessageContext):
    """The meeting will not take place: who cancelled, in plain words; the patient's reason (a
    code) or the center's words; what happens next. With a booked time, the e-mail carries the
    calendar's cancellation of its entry."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.MEETING_CANCELLED
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "center_name",
        "cancelled_by",
        "patient_reason",
        "starts_at",
        "ends_at",
    )
    calendar_facts: ClassVar[tuple[str, ...]] = ("meeting_id", "sequence", "changed_at")

    center_name: CenterName | None = None
    cancelled_by: CancelledBy
    patient_reason: PatientCancelReason | None = None
    center_reason: CenterMessage | None = Field(
        default=None, description="The center's words, when the center cancelled"
    )
    starts_at: AwareDatetime | None = Field(default=None, description="The booked time, if any")
    ends_at: AwareDatetime | None = None
    meeting_id: UUID = Field(description="The meeting: the calendar entry's UID, never shown")
    sequence: int = Field(ge=0, description="The cancellation's calendar SEQUENCE")
    changed_at: AwareDatetime = Field(description="When it was cancelled: the DTSTAMP")

    @model_validator(mode="after")
    def _consistent(self) -> MeetingCancelledContext:
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("a booked time has its start and its end")
        if self.cancelled_by is CancelledBy.CENTER and self.patient_reason is not None:
            raise ValueError("the patient's reason is for the patient's cancellation")
        if self.cancelled_by is CancelledBy.PATIENT and self.center_reason is not None:
            raise ValueError("the center's words are for the center's cancellation")
        return self


class MeetingReminderContext(_BookedMeetingFacts):
    """The booked meeting is in about a day, or in about an hour: when, and how to join."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.MEETING_REMINDER
    webhook_facts: ClassVar[tuple[str, ...]] = (
        "center_name",
        "before",
        "mode",
        "starts_at",
        "ends_at",
    )

    before: ReminderBefore


class MeetingMissedContext(MessageContext):
    """The center recorded that the patient did not join the booked meeting; it may offer new
    times. Said without blame: the opinion itself stands and stays readable."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.MEETING_MISSED
    webhook_facts: ClassVar[tuple[str, ...]] = ("center_name", "starts_at", "ends_at")

    center_name: CenterName | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class FurtherOpinionRequestedContext(MessageContext):
    """After an opinion, the patient asked for one more: we ask another center, one never offered
    the case, and say whether the earlier opinions go with it, as the patient chose.

    Never the patient's reason (it is theirs, and told to the next center only), nor the shared
    documents' ids: how many earlier opinions go, if any."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.FURTHER_OPINION_REQUESTED
    webhook_facts: ClassVar[tuple[str, ...]] = ("share_earlier_opinions", "shared_opinions")

    share_earlier_opinions: bool = Field(
        description="The patient agreed that the earlier opinions go to the next center"
    )
    shared_opinions: int = Field(
        default=0, ge=0, le=10, description="How many earlier opinions go with the case"
    )

    @model_validator(mode="after")
    def _shared_with_consent(self) -> FurtherOpinionRequestedContext:
        if self.shared_opinions and not self.share_earlier_opinions:
            raise ValueError("earlier opinions go to the next center only with the consent")
        return self


class FurtherOpinionUnavailableContext(MessageContext):
    """No other center can give the further opinion the patient asked for (`case.unroutable`
    with an `opinion_round`). Not "no center takes your case": the case keeps the opinion it has,
    and the patient can still discuss it and ask its center follow-up questions."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.FURTHER_OPINION_UNAVAILABLE
    webhook_facts: ClassVar[tuple[str, ...]] = ("reason",)

    reason: UnroutableReason


class CaseUnroutableContext(MessageContext):
    """No center will give the case its first opinion (a further opinion that cannot be had is
    `FurtherOpinionUnavailableContext`)."""

    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.CASE_UNROUTABLE
    webhook_facts: ClassVar[tuple[str, ...]] = ("reason",)

    reason: UnroutableReason


class CaseWithdrawnContext(MessageContext):
    trigger: ClassVar[NotificationTrigger] = NotificationTrigger.CASE_WITHDRAWN
    webhook_facts: ClassVar[tuple[str, ...]] = ("reason",)

    reason: WithdrawalReason | None = None


CONTEXT_MODELS: Mapping[NotificationTrigger, type[MessageContext]] = {
    model.trigger: model
    for model in (
        CaseSubmittedContext,
        DocumentRejectedContext,
        TranslationRequiredContext,
        DocumentUnreadableContext,
        CaseReadyContext,
        ReferralRequestedContext,
        ReferralAcceptedContext,
        ReferralDeclinedContext,
        InfoRequestedContext,
        InfoReminderContext,
        InfoExpiredContext,
        InformationSentContext,
        ShipmentReceivedContext,
        OpinionDeliveredContext,
        FollowUpAnsweredContext,
        CentersProposedContext,
        MeetingOfferedContext,
        MeetingBookedContext,
        MeetingCancelledContext,
        MeetingReminderContext,
        MeetingMissedContext,
        FurtherOpinionRequestedContext,
        FurtherOpinionUnavailableContext,
        CaseUnroutableContext,
        CaseWithdrawnContext,
    )
}
"""The context model of every trigger."""


class UnroutableOpsAlert(FrozenModel):
    """The operators' alert that routing gave up on a case, or on a further opinion for it
    (`opinion_round`): in English, without personal data.

    Operators look the patient up in intake by `case_id`; the alert itself names nobody.
    """

    case_id: UUID
    case_ref: CaseRef
    reason: UnroutableReason
    centers_tried: list[CenterCode] = Field(default_factory=list)
    occurred_at: AwareDatetime
    opinion_round: int | None = Field(
        default=None,
        ge=2,
        description="Set when a further opinion could not be had (the case keeps its opinion)",
    )
    console_url: HttpUrl | None = Field(
        default=None, description="Link to the case in the operators' console, if there is one"
    )


__all__ = [
    "CONTEXT_MODELS",
    "DEFAULT_TIME_ZONE",
    "CaseReadyContext",
    "CaseSubmittedContext",
    "CaseUnroutableContext",
    "CaseWithdrawnContext",
    "CentersProposedContext",
    "DeclineOutcome",
    "DocumentRejectedContext",
    "DocumentUnreadableContext",
    "FollowUpAnsweredContext",
    "FurtherOpinionRequestedContext",
    "FurtherOpinionUnavailableContext",
    "InfoExpiredContext",
    "InfoReminderContext",
    "InfoRequestedContext",
    "InformationSentContext",
    "MeetingBookedContext",
    "MeetingCancelledContext",
    "MeetingMissedContext",
    "MeetingOfferedContext",
    "MeetingReminderContext",
    "MeetingTimeFacts",
    "MessageContext",
    "OpinionDeliveredContext",
    "ProposedCenterFacts",
    "ReferralAcceptedContext",
    "ReferralDeclinedContext",
    "ReferralRequestedContext",
    "RequestedItemFacts",
    "ShipmentReceivedContext",
    "TranslationRequiredContext",
    "UnroutableOpsAlert",
    "case_reference",
]
