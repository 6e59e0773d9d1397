"""Translation's consumer reads a batch's documents ahead (side by side) before its events are
applied in order; the events of the cases lane announce no document, so reading ahead leaves
them alone (they are parsed once, when applied). No Kafka and no database: the records are
stand-ins and applying the batch is the platform consumer's (tested in libs/common)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from referrals_common.contracts import CaseWithdrawn, DocumentStored, new_event, topics
from referrals_common.messaging.consumer import EventConsumer
from referrals_translation import consumers
from referrals_translation.consumers import ReadingAheadConsumer

pytestmark = pytest.mark.unit

CASE = uuid.UUID("00000000-0000-4000-8000-00000000ca5e")


class FakeUnitOfWorkContext:
    async def __aenter__(self) -> object:
        return object()

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeDatabase:
    def unit_of_work(self) -> FakeUnitOfWorkContext:
        return FakeUnitOfWorkContext()


class RecordingTranslation:
    """What the consumer asked to read ahead, and what it forgot."""

    def __init__(self) -> None:
        self.ahead: list[UUID] = []
        self.forgotten: list[UUID] = []

    async def read_ahead(
        self, uow: object, documents: list[tuple[DocumentStored, Any]]
    ) -> list[UUID]:
        self.ahead.extend(stored.document_id for stored, _ in documents)
        return [stored.document_id for stored, _ in documents]

    def forget(self, document_ids: list[UUID]) -> None:
        self.forgotten.extend(document_ids)


def record(topic: str, event: Any, offset: int = 0) -> SimpleNamespace:
    """An aiokafka record of `event` as the relay publishes it (structured mode)."""
    value = json.dumps(event.model_dump(mode="json")).encode()
    return SimpleNamespace(topic=topic, partition=0, offset=offset, value=value, headers=[])


def document_stored() -> Any:
    document_id = uuid.uuid4()
    return new_event(
        DocumentStored(
            case_id=CASE,
            document_id=document_id,
            kind="pathology_report",
            media_type="application/pdf",
            size_bytes=1024,
            sha256="0" * 64,
            object_key=f"cases/{CASE}/{document_id}",
            stored_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        )
    )


def case_withdrawn() -> Any:
    return new_event(CaseWithdrawn(case_id=CASE))


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The batches handed on to the platform consumer, which would apply them."""
    batches: list[tuple[Any, ...]] = []

    async def apply(self: EventConsumer, records: tuple[Any, ...]) -> None:
        batches.append(records)

    monkeypatch.setattr(EventConsumer, "process_batch", apply)
    return batches


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The record values reading ahead parsed."""
    seen: list[bytes] = []
    parse = consumers.parse_event

    def counting(raw: Any) -> Any:
        seen.append(raw)
        return parse(raw)

    monkeypatch.setattr(consumers, "parse_event", counting)
    return seen


def consumer(translation: RecordingTranslation) -> ReadingAheadConsumer:
    return ReadingAheadConsumer(
        translation,  # type: ignore[arg-type]  # the two methods the consumer calls
        consumers.CONSUMER_NAME,
        FakeDatabase(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no dead letters: nothing is applied here
    )


async def test_a_batch_of_documents_is_read_ahead_then_applied(
    applied: list[tuple[Any, ...]], parsed: list[bytes]
) -> None:
    events = [document_stored(), document_stored()]
    batch = tuple(record(topics.DOCUMENTS, e, offset) for offset, e in enumerate(events))
    translation = RecordingTranslation()
    await consumer(translation).process_batch(batch)
    assert translation.ahead == [e.data.document_id for e in events]
    assert applied == [batch]
    assert translation.forgotten == translation.ahead  # taken or dropped once the batch ends


async def test_the_cases_lanes_events_are_not_parsed_to_read_ahead(
    applied: list[tuple[Any, ...]], parsed: list[bytes]
) -> None:
    batch = (record(topics.CASES, case_withdrawn()),)
    translation = RecordingTranslation()
    await consumer(translation).process_batch(batch)
    assert parsed == []  # parsed once only, when the platform consumer applies it
    assert translation.ahead == []
    assert applied == [batch]
