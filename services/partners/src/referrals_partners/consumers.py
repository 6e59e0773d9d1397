"""Partners listens to intake (a case is ready, answered a center's request, chose a center or a
meeting time, or was withdrawn) and
records (which documents exist, so an offer can list them and an opinion can be checked).

One consumer, group `partners.routing`, over the cases and documents topics.
"""

from __future__ import annotations

from typing import Any

from referrals_common.contracts import (
    CaseCenterChosen,
    CaseFollowUpAsked,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CaseMeetingCancelled,
    CaseMeetingSlotChosen,
    CasePolicyShared,
    CaseReadyForReferral,
    CaseWithdrawn,
    CloudEvent,
    DocumentStored,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_partners.meetings import Meetings
from referrals_partners.service import Partners

CONSUMER_NAME = "partners.routing"
SUBSCRIBED_TOPICS = (topics.CASES, topics.DOCUMENTS)
GROUPS = {CONSUMER_NAME: SUBSCRIBED_TOPICS}
"""Each consumer group of the consumer process and the topics it reads."""


def build_consumer(
    partners: Partners,
    db: Database,
    dead_letters: DeadLetterPublisher,
    meetings: Meetings | None = None,
    **options: Any,
) -> EventConsumer:
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)
    meetings = meetings or Meetings(partners)

    @consumer.handles(CaseReadyForReferral)
    async def ready(event: CloudEvent[CaseReadyForReferral], uow: UnitOfWork) -> None:
        await partners.on_case_ready(uow, event.data)

    @consumer.handles(CaseWithdrawn)
    async def withdrawn(event: CloudEvent[CaseWithdrawn], uow: UnitOfWork) -> None:
        await partners.on_case_withdrawn(uow, event.data.case_id)
        await meetings.on_case_withdrawn(uow, event.data.case_id)

    @consumer.handles(CaseInformationProvided)
    async def answered(event: CloudEvent[CaseInformationProvided], uow: UnitOfWork) -> None:
        await partners.on_information_provided(uow, event.data)

    @consumer.handles(CaseCenterChosen)
    async def chosen(event: CloudEvent[CaseCenterChosen], uow: UnitOfWork) -> None:
        await partners.on_center_chosen(uow, event.data.case_id, event.data.center_code)

    @consumer.handles(CaseFollowUpAsked)
    async def follow_up(event: CloudEvent[CaseFollowUpAsked], uow: UnitOfWork) -> None:
        await partners.on_follow_up_asked(uow, event.data)

    @consumer.handles(CaseFurtherOpinionRequested)
    async def further(event: CloudEvent[CaseFurtherOpinionRequested], uow: UnitOfWork) -> None:
        await partners.on_further_opinion(uow, event.data)

    @consumer.handles(CaseMeetingSlotChosen)
    async def slot_chosen(event: CloudEvent[CaseMeetingSlotChosen], uow: UnitOfWork) -> None:
        await meetings.on_slot_chosen(uow, event.data)

    @consumer.handles(CaseMeetingCancelled)
    async def meeting_cancelled(event: CloudEvent[CaseMeetingCancelled], uow: UnitOfWork) -> None:
        await meetings.on_patient_cancelled(uow, event.data)

    @consumer.handles(CasePolicyShared)
    async def policy(event: CloudEvent[CasePolicyShared], uow: UnitOfWork) -> None:
        await partners.on_policy_shared(uow, event.data)

    @consumer.handles(DocumentStored)
    async def stored(event: CloudEvent[DocumentStored], uow: UnitOfWork) -> None:
        await partners.on_document_stored(uow, event.data)

    return consumer
