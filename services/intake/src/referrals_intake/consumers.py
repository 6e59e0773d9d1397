"""Intake listens to documents, language checks and routing, and moves each case accordingly.

One consumer (group `intake.case-lifecycle`) over the three topics: the case row lock in every
handler serialises what happens to one case, whichever topic it came from.
"""

from __future__ import annotations

from typing import Any

from referrals_common.contracts import (
    CaseUnroutable,
    CloudEvent,
    DocumentLanguageAccepted,
    DocumentRejected,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralInfoRequested,
    ReferralOpinionDelivered,
    ReferralRequested,
    StatusChangeReason,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_intake.service import Intake

CONSUMER_NAME = "intake.case-lifecycle"
SUBSCRIBED_TOPICS = (topics.DOCUMENTS, topics.LANGUAGE_CHECKS, topics.ROUTING)
GROUPS = {CONSUMER_NAME: SUBSCRIBED_TOPICS}
"""Each consumer group of the consumer process and the topics it reads."""
R = StatusChangeReason


def build_consumer(
    intake: Intake, db: Database, dead_letters: DeadLetterPublisher, **options: Any
) -> EventConsumer:
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)

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
        )

    @consumer.handles(DocumentUnreadable)
    async def unreadable(event: CloudEvent[DocumentUnreadable], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_document(
            uow, d.case_id, d.document_id, check="unreadable", check_detail=d.detail[:500]
        )

    @consumer.handles(ReferralRequested)
    async def requested(event: CloudEvent[ReferralRequested], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_REQUESTED,
            f"Referred to cancer center {d.center_code} ({d.center_country}), attempt "
            f"{d.attempt}; answer due by {d.answer_due_at:%Y-%m-%d %H:%M} UTC.",
        )

    @consumer.handles(ReferralAccepted)
    async def accepted_by_center(event: CloudEvent[ReferralAccepted], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_ACCEPTED,
            f"Cancer center {d.center_code} accepted the case; opinion expected by "
            f"{d.expected_opinion_at:%Y-%m-%d}.",
        )

    @consumer.handles(ReferralDeclined)
    async def declined(event: CloudEvent[ReferralDeclined], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_DECLINED,
            f"Cancer center {d.center_code} declined ({d.reason}).",
        )

    @consumer.handles(ReferralExpired)
    async def expired(event: CloudEvent[ReferralExpired], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.REFERRAL_EXPIRED,
            f"Cancer center {d.center_code} did not answer in time.",
        )

    @consumer.handles(ReferralInfoRequested)
    async def info(event: CloudEvent[ReferralInfoRequested], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.INFO_REQUESTED,
            f"Cancer center {d.center_code} asks: {d.message}"[:500],
        )

    @consumer.handles(ReferralOpinionDelivered)
    async def opinion(event: CloudEvent[ReferralOpinionDelivered], uow: UnitOfWork) -> None:
        d = event.data
        await intake.on_referral(
            uow,
            d.case_id,
            R.OPINION_DELIVERED,
            f"Cancer center {d.center_code} delivered its written opinion.",
        )

    @consumer.handles(CaseUnroutable)
    async def unroutable(event: CloudEvent[CaseUnroutable], uow: UnitOfWork) -> None:
        d = event.data
        tried = ", ".join(d.centers_tried) or "none"
        await intake.on_referral(
            uow,
            d.case_id,
            R.NO_ELIGIBLE_CENTER,
            f"No cancer center could take the case ({d.reason}; tried: {tried}).",
        )

    return consumer
