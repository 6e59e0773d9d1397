"""Translation listens to records (a document was stored) and intake (where the case is going,
or that it was withdrawn).

One consumer, group `translation.language-checks`, over the documents and cases topics. Reading a
document takes seconds, so batches are small (`max_records`): a batch must end well within
Kafka's poll interval. Every document of a batch starts being read at once (as many at a time as
the checker has workers), then the events are applied in order, each taking its reading. The
cases topic has a subscriber of its own, in a group of its own with the same inbox (`lanes`): a
case's destination is applied at once, not after the documents ahead of it in a batch.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import propagate

from referrals_common.contracts import (
    CaseSubmitted,
    CaseWithdrawn,
    CloudEvent,
    DocumentStored,
    topics,
)
from referrals_common.contracts.envelope import InvalidEvent, UnknownEventType, parse_event
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_translation.config import TranslationSettings
from referrals_translation.service import Translation

log = logging.getLogger(__name__)

CONSUMER_NAME = "translation.language-checks"
SUBSCRIBED_TOPICS = (topics.DOCUMENTS, topics.CASES)
CASES_GROUP = f"{CONSUMER_NAME}.cases"
GROUPS = {CONSUMER_NAME: (topics.DOCUMENTS,), CASES_GROUP: (topics.CASES,)}
"""Each consumer group of the consumer process and the topics it reads (see `lanes`)."""


def lanes(settings: TranslationSettings) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Documents in small batches with a long poll interval (reading takes seconds); cases in a
    subscriber of their own, so a case's destination never waits behind a backlog of reading."""
    poll_s = max(300.0, settings.check_timeout_seconds * settings.max_records * 2)
    return [
        (
            (topics.DOCUMENTS,),
            {"max_records": settings.max_records, "max_poll_interval_ms": int(poll_s * 1000)},
        ),
        # A group of its own: a rebalance of the documents lane's group waits for its batch.
        ((topics.CASES,), {"group_id": CASES_GROUP}),
    ]


class ReadingAheadConsumer(EventConsumer):
    """The platform's consumer, which also starts reading every document of a batch at once
    (`Translation.read_ahead`) before the events are applied in their partitions' order."""

    def __init__(self, translation: Translation, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.translation = translation

    async def process_batch(self, records: tuple[Any, ...]) -> None:
        documents = []
        for record in records:
            if record.topic != topics.DOCUMENTS:
                # Only records announce documents: the cases lane's events are parsed once, when
                # they are applied, not here as well.
                continue
            try:
                event = parse_event(record.value)
            except (InvalidEvent, UnknownEventType):
                continue  # applying it dead-letters it
            if isinstance(event.data, DocumentStored):
                headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
                documents.append((event.data, propagate.extract(headers)))
        started: list[Any] = []
        if documents:
            try:
                # Read-only, before the batch's events each get their inbox transaction.
                async with self.db.unit_of_work() as uow:
                    started = await self.translation.read_ahead(uow, documents)
            except Exception:  # the database away: each event will read its own document
                log.info("reading ahead failed; documents are read one by one", exc_info=True)
        try:
            await super().process_batch(records)
        finally:
            self.translation.forget(started)


def build_consumer(
    translation: Translation, db: Database, dead_letters: DeadLetterPublisher, **options: Any
) -> EventConsumer:
    consumer = ReadingAheadConsumer(translation, CONSUMER_NAME, db, dead_letters, **options)

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
