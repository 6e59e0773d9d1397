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
from typing import Annotated, ClassVar
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
from .intake import ClinicalSummary, CountryCode
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


class ReferralExpired(EventData):
    """The center did not answer by the deadline; the offer is withdrawn from it.

    Emitted once per referral whose `answer_due_at` passed without an answer. It is followed by a
    `ReferralRequested` for the next center or by `CaseUnroutable`; a late answer is refused.
    """

    event_type: ClassVar[str] = "referrals.referral.expired.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The expired referral")
    center_code: CenterCode


class ReferralInfoRequested(EventData):
    """The center needs more information from the patient before it can give its opinion.

    Emitted each time a center asks (through the partner API). `message` is the center's clinical
    question, relayed to the patient by notifications; the answer comes back as new documents.
    """

    event_type: ClassVar[str] = "referrals.referral.info_requested.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    referral_id: UUID = Field(description="The referral the request is about")
    center_code: CenterCode
    message: str = Field(
        min_length=1,
        max_length=4000,
        description="What the center needs, in the center's words (clinical content only)",
    )


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


class CaseUnroutable(EventData):
    """No center will give an opinion on the case: routing gave up.

    Emitted once per case, instead of (or after the last) `ReferralRequested`. `centers_tried` is
    empty when no center was eligible at all.
    """

    event_type: ClassVar[str] = "referrals.case.unroutable.v1"
    topic: ClassVar[str] = topics.ROUTING
    source: ClassVar[str] = SOURCE

    reason: UnroutableReason = Field(description="Why routing gave up")
    centers_tried: Annotated[list[CenterCode], AfterValidator(_no_duplicates)] = Field(
        default_factory=list,
        description="The centers offered the case, in the order they were tried",
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


__all__ = [
    "PARTNER_INBOX_TOPIC_TEMPLATE",
    "CaseUnroutable",
    "CenterCode",
    "DeclineReason",
    "OfferedDocument",
    "ReferralAccepted",
    "ReferralDeclined",
    "ReferralExpired",
    "ReferralInfoRequested",
    "ReferralOffered",
    "ReferralOpinionDelivered",
    "ReferralRequested",
    "UnroutableReason",
]
