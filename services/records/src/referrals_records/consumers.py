"""Records listens to intake (is the case still open? which follow-up question waits for the
center?) and partners (which center may read the case, which may upload to it: offered,
accepted, then closed by a decline, an expiry or the delivered opinion; a follow-up answered;
which keys partners issued to centers and revoked).

Group `records.projections` over the cases, routing and center credentials topics.

A case's status comes from `case.status_changed`, which intake emits for every transition,
leaving `draft` included (the contract of `case.submitted`: a `CaseStatusChanged` to
`submitted` follows it). Records does not handle `case.submitted` itself: its status would be
written twice in the same batch, and the consumer skips an unhandled type by its declared type
alone (no parse, span, inbox row or transaction).
"""

from __future__ import annotations

from typing import Any

from referrals_common.contracts import (
    CaseFollowUpAsked,
    CaseFurtherOpinionRequested,
    CaseStatusChanged,
    CaseWithdrawn,
    CenterCredentialIssued,
    CenterCredentialRevoked,
    CloudEvent,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralOpinionDelivered,
    ReferralRequested,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_records.service import Records, on_credential_issued, on_credential_revoked

CONSUMER_NAME = "records.projections"
SUBSCRIBED_TOPICS = (topics.CASES, topics.ROUTING, topics.CREDENTIALS)
GROUPS = {CONSUMER_NAME: SUBSCRIBED_TOPICS}
"""Each consumer group of the consumer process and the topics it reads."""


def build_consumer(
    records: Records,
    db: Database,
    dead_letters: DeadLetterPublisher,
    *,
    pepper: bytes,
    **options: Any,
) -> EventConsumer:
    """Records' consumer; `pepper` hashes the digests of the centers' keys as they are kept."""
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)

    @consumer.handles(CenterCredentialIssued)
    async def key_issued(event: CloudEvent[CenterCredentialIssued], uow: UnitOfWork) -> None:
        d = event.data
        await on_credential_issued(
            uow,
            pepper,
            key_id=d.key_id,
            center_code=d.center_code,
            key_sha256=d.key_sha256,
            issued_at=d.issued_at,
        )

    @consumer.handles(CenterCredentialRevoked)
    async def key_revoked(event: CloudEvent[CenterCredentialRevoked], uow: UnitOfWork) -> None:
        d = event.data
        await on_credential_revoked(
            uow, key_id=d.key_id, center_code=d.center_code, revoked_at=d.revoked_at
        )

    @consumer.handles(CaseStatusChanged)
    async def status_changed(event: CloudEvent[CaseStatusChanged], uow: UnitOfWork) -> None:
        await records.on_case_status(uow, event.data.case_id, event.data.to_status)

    @consumer.handles(CaseFurtherOpinionRequested)
    async def further(event: CloudEvent[CaseFurtherOpinionRequested], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_opinions_shared(uow, d.case_id, d.shared_document_ids)

    @consumer.handles(CaseFollowUpAsked)
    async def follow_up(event: CloudEvent[CaseFollowUpAsked], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_follow_up_asked(uow, d.question_id, d.referral_id, d.case_id, d.asked_at)

    @consumer.handles(ReferralFollowUpAnswered)
    async def follow_up_answered(
        event: CloudEvent[ReferralFollowUpAnswered], uow: UnitOfWork
    ) -> None:
        await records.on_follow_up_answered(uow, event.data.question_id)

    @consumer.handles(CaseWithdrawn)
    async def withdrawn(event: CloudEvent[CaseWithdrawn], uow: UnitOfWork) -> None:
        await records.on_case_withdrawn(uow, event.data.case_id)

    @consumer.handles(ReferralRequested)
    async def offered(event: CloudEvent[ReferralRequested], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_referral_offered(uow, d.referral_id, d.case_id, d.center_code)

    @consumer.handles(ReferralAccepted)
    async def accepted(event: CloudEvent[ReferralAccepted], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_referral_accepted(uow, d.referral_id, d.case_id, d.center_code)

    @consumer.handles(ReferralOpinionDelivered)
    async def completed(event: CloudEvent[ReferralOpinionDelivered], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_referral_closed(uow, d.referral_id, d.case_id, d.center_code, "completed")

    @consumer.handles(ReferralDeclined)
    async def declined(event: CloudEvent[ReferralDeclined], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_referral_closed(uow, d.referral_id, d.case_id, d.center_code, "declined")

    @consumer.handles(ReferralExpired)
    async def expired(event: CloudEvent[ReferralExpired], uow: UnitOfWork) -> None:
        d = event.data
        await records.on_referral_closed(uow, d.referral_id, d.case_id, d.center_code, "expired")

    return consumer
