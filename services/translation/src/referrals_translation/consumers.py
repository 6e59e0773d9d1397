"""Translation listens to records (a document was stored) and intake (where the case is going,
or that it was withdrawn).

One consumer, group `translation.language-checks`, over the documents and cases topics. Reading a
document takes seconds, so batches are small (`max_records`): a batch must end well within
Kafka's poll interval.
"""

from __future__ import annotations

from typing import Any

from referrals_common.contracts import (
    CaseSubmitted,
    CaseWithdrawn,
    CloudEvent,
    DocumentStored,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_translation.service import Translation

CONSUMER_NAME = "translation.language-checks"
SUBSCRIBED_TOPICS = (topics.DOCUMENTS, topics.CASES)


def build_consumer(
    translation: Translation, db: Database, dead_letters: DeadLetterPublisher, **options: Any
) -> EventConsumer:
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)

    @consumer.handles(DocumentStored)
    async def stored(event: CloudEvent[DocumentStored], uow: UnitOfWork) -> None:
        await translation.on_document_stored(uow, event.data)

    @consumer.handles(CaseSubmitted)
    async def submitted(event: CloudEvent[CaseSubmitted], uow: UnitOfWork) -> None:
        await translation.on_case_submitted(uow, event.data.case_id, event.data.destination)

    @consumer.handles(CaseWithdrawn)
    async def withdrawn(event: CloudEvent[CaseWithdrawn], uow: UnitOfWork) -> None:
        await translation.on_case_withdrawn(uow, event.data.case_id)

    return consumer
