"""Intake listens to documents, language checks and routing, and moves each case accordingly.

One consumer (group `intake.case-lifecycle`) over the three topics: the case row lock in every
handler serialises what happens to one case, whichever topic it came from.

Each handler runs its use case in the consumer's inbox transaction (`uow`), which the consumer
commits: the case use cases through `intake.repository`, the front ends' delivery log through
`webhook_repository` (the real repositories unless a unit test passes fakes).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, uuid5

from referrals_common.contracts import (
    CaseUnroutable,
    CentersProposed,
    CloudEvent,
    DocumentLanguageAccepted,
    DocumentRejected,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralOpinionDelivered,
    ReferralRequested,
    ReferralResumed,
    ReferralShipmentReceived,
    StatusChangeReason,
    topics,
)
from referrals_common.contracts.notifications import WebhookAttempted
from referrals_common.contracts.partners import ExpiryReason
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.webhooks.retention import LogPruner, RetentionSettings
from referrals_intake import meetings, webhooks
from referrals_intake.repository import WebhookRepository, WebhookRepositoryFactory
from referrals_intake.service import Intake

CONSUMER_NAME = "intake.case-lifecycle"
SUBSCRIBED_TOPICS = (
    topics.DOCUMENTS,
    topics.LANGUAGE_CHECKS,
    topics.ROUTING,
    topics.NOTIFICATIONS,  # webhook attempts, for the front ends' delivery logs
)
GROUPS = {CONSUMER_NAME: SUBSCRIBED_TOPICS}
"""Each consumer group of the consumer process and the topics it reads."""
R = StatusChangeReason


def build_consumer(
    intake: Intake,
    db: Database,
    dead_letters: DeadLetterPublisher,
    *,
    webhook_log: RetentionSettings | None = None,
    webhook_repository: WebhookRepositoryFactory = WebhookRepository,
    webhook_log_pruner: LogPruner | None = None,
    **options: Any,
) -> EventConsumer:
    """The consumer; `webhook_repository` and `webhook_log_pruner` (default: the real ones, the
    pruner built from `db` and `webhook_log`) are there for a unit test to replace."""
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)
    pruner = webhook_log_pruner or webhooks.delivery_log_pruner(db, webhook_log)

    @consumer.handles(DocumentStored)
    async def document_stored(event: CloudEvent[DocumentStored], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_document(
            uow,
            d.case_id,
            d.document_id,
            kind=str(d.kind),
            media_type=str(d.media_type),
            size_bytes=d.size_bytes,
            sha256=d.sha256,
            translation_of=d.translation_of,
            stored=True,
        )

    @consumer.handles(DocumentRejected)
    async def document_rejected(event: CloudEvent[DocumentRejected], uow: UnitOfWork) -> None:
        await intake.on_upload_rejected(
            uow, event.data.case_id, str(event.data.reason), event.data.detail
        )

    @consumer.handles(DocumentLanguageAccepted)
    async def accepted(event: CloudEvent[DocumentLanguageAccepted], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_document(
            uow,
            d.case_id,
            d.document_id,
            check="accepted",
            language=d.main_language,
            check_detail=None,
            acceptable_languages=None,
            unreadable_reason=None,
        )

    @consumer.handles(DocumentTranslationRequired)
    async def translation_required(
        event: CloudEvent[DocumentTranslationRequired], uow: UnitOfWork
    ) -> None:
        d = event.data
        await intake.on_document(
            uow,
            d.case_id,
            d.document_id,
            check="translation_required",
            language=d.detected_language,
            check_detail=f"written in {d.detected_language}; needs a translation into "
            f"{' or '.join(d.acceptable_languages)}",
            acceptable_languages=list(d.acceptable_languages),
            unreadable_reason=None,
        )

    @consumer.handles(DocumentUnreadable)
    async def unreadable(event: CloudEvent[DocumentUnreadable], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_document(
            uow,
            d.case_id,
            d.document_id,
            check="unreadable",
            check_detail=d.detail[:500],
            acceptable_languages=None,
            unreadable_reason=str(d.reason),
        )

    @consumer.handles(ReferralRequested)
    async def requested(event: CloudEvent[ReferralRequested], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_REQUESTED,
            {
                "center": d.center_code,
                "country": d.center_country,
                "attempt": d.attempt,
                "due": d.answer_due_at.isoformat(),
            },
        )

    @consumer.handles(ReferralAccepted)
    async def accepted_by_center(event: CloudEvent[ReferralAccepted], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_ACCEPTED,
            {"center": d.center_code, "date": d.expected_opinion_at.date().isoformat()},
        )
        await intake.share_policy(uow, d.case_id, d.referral_id)

    @consumer.handles(ReferralDeclined)
    async def declined(event: CloudEvent[ReferralDeclined], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_DECLINED,
            {"center": d.center_code, "reason": str(d.reason)},
        )

    @consumer.handles(ReferralExpired)
    async def expired(event: CloudEvent[ReferralExpired], uow: UnitOfWork) -> None:
        d = event.data
        if d.reason == ExpiryReason.INFORMATION_NOT_PROVIDED:
            await intake.on_information_expired(uow, d.case_id, d.request_id, d.center_code)
            return
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_EXPIRED,
            {"center": d.center_code},
        )

    @consumer.handles(CentersProposed)
    async def proposed(event: CloudEvent[CentersProposed], uow: UnitOfWork) -> None:
        await intake.on_centers_proposed(
            uow, event.data.case_id, event.data.model_dump(mode="json")
        )

    @consumer.handles(ReferralInfoRequested)
    async def info(event: CloudEvent[ReferralInfoRequested], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_info_requested(
            uow,
            d.case_id,
            # An event from before the information loop has no request id: one per event.
            request_id=d.request_id or uuid5(NAMESPACE_URL, f"urn:uuid:{event.id}"),
            referral_id=d.referral_id,
            center_code=d.center_code,
            message=d.message,
            items=list(d.items),
            due_at=d.due_at,
            resumes_as=d.resumes_as,
        )

    @consumer.handles(ReferralInfoReminder)
    async def reminder(event: CloudEvent[ReferralInfoReminder], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_loop_fact(
            uow,
            d.case_id,
            "info_reminder",
            {"center": d.center_code, "due": d.due_at.isoformat()},
            "answer_before_due",
        )

    @consumer.handles(ReferralResumed)
    async def resumed(event: CloudEvent[ReferralResumed], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_loop_fact(
            uow,
            d.case_id,
            "referral_resumed",
            {
                "center": d.center_code,
                "due": d.answer_due_at.isoformat() if d.answer_due_at else None,
                "date": d.expected_opinion_at.date().isoformat() if d.expected_opinion_at else None,
            },
        )

    @consumer.handles(ReferralShipmentReceived)
    async def shipment(event: CloudEvent[ReferralShipmentReceived], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_shipment_received(
            uow, d.case_id, d.request_id, d.shipment_id, d.received_at, d.center_code
        )

    @consumer.handles(ReferralOpinionDelivered)
    async def opinion(event: CloudEvent[ReferralOpinionDelivered], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.OPINION_DELIVERED,
            {"center": d.center_code},
            outcome=d.outcome.model_dump(mode="json") if d.outcome else None,
            opinion_referral_id=d.referral_id,
            opinion_center_code=d.center_code,
        )

    @consumer.handles(ReferralFollowUpAnswered)
    async def follow_up(event: CloudEvent[ReferralFollowUpAnswered], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_follow_up_answered(
            uow, d.case_id, d.question_id, d.answer, d.answered_at, list(d.document_ids)
        )

    @consumer.handles(ReferralMeetingOffered)
    async def meeting_offered(event: CloudEvent[ReferralMeetingOffered], uow: UnitOfWork) -> None:
        await meetings.on_offered(uow, event.data, repository=intake.repository)

    @consumer.handles(ReferralMeetingBooked)
    async def meeting_booked(event: CloudEvent[ReferralMeetingBooked], uow: UnitOfWork) -> None:
        await meetings.on_booked(uow, event.data, repository=intake.repository)

    @consumer.handles(ReferralMeetingCancelled)
    async def meeting_cancelled(
        event: CloudEvent[ReferralMeetingCancelled], uow: UnitOfWork
    ) -> None:
        await meetings.on_cancelled(uow, event.data, repository=intake.repository)

    @consumer.handles(ReferralMeetingEnded)
    async def meeting_ended(event: CloudEvent[ReferralMeetingEnded], uow: UnitOfWork) -> None:
        await meetings.on_ended(uow, event.data, repository=intake.repository)

    @consumer.handles(CaseUnroutable)
    async def unroutable(event: CloudEvent[CaseUnroutable], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.NO_ELIGIBLE_CENTER,
            {"reason": str(d.reason), "tried": list(d.centers_tried)},
        )

    @consumer.handles(WebhookAttempted)
    async def webhook_attempted(event: CloudEvent[WebhookAttempted], uow: UnitOfWork) -> None:
        await webhooks.record_attempt(uow, event.data, repository=webhook_repository)
        # The log grows only here, so it is pruned here (every `interval_seconds` at most).
        await pruner.prune_if_due()

    return consumer
