"""A consumer reads each record's JSON once: the declared type's read gives the envelope's object,
which the full parse validates without reading the value again."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from referrals_common.contracts import CaseWithdrawn, envelope, new_event
from referrals_common.messaging.consumer import EventConsumer


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.inbox = self

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def record(self, consumer: str, event_id: uuid.UUID, event_type: str) -> bool:
        return True

    async def record_all(self, consumer: str, events: list[tuple[uuid.UUID, str]]) -> set[Any]:
        return {event_id for event_id, _ in events}

    async def commit(self) -> None:
        return None


class FakeDatabase:
    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork()


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[str] = []

    async def publish(self, record: Any, body: bytes, *, consumer: str, error: Exception) -> None:
        self.letters.append(type(error).__name__)


def record(value: bytes, offset: int, partition: int = 0) -> Any:
    return ConsumerRecord(
        "referrals.cases.v1", partition, offset, 0, 0, b"k", value, None, 0, 0, ()
    )


@pytest.fixture
def no_second_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object, **__: object) -> None:
        raise AssertionError("the record's JSON read a second time")

    monkeypatch.setattr(envelope.json, "loads", refused)


@pytest.mark.usefixtures("no_second_read")
async def test_an_applied_event_is_read_once_alone_and_in_a_partitions_batch() -> None:
    applied: list[uuid.UUID] = []
    dead = DeadLetters()
    events = EventConsumer("test.parse", FakeDatabase(), dead)  # type: ignore[arg-type]  # fakes

    @events.handles(CaseWithdrawn)
    async def withdrawn(event: Any, uow: Any) -> None:
        applied.append(event.id)

    alone = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    together = [new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(2)]
    await events.process_batch((record(alone.to_json(), 0),))
    await events.process_batch(tuple(record(e.to_json(), 1 + i) for i, e in enumerate(together)))
    assert applied == [alone.id, *(e.id for e in together)]
    assert dead.letters == []


async def test_an_invalid_envelope_read_once_still_goes_to_the_dead_letters() -> None:
    dead = DeadLetters()
    events = EventConsumer("test.parse", FakeDatabase(), dead)  # type: ignore[arg-type]  # fakes

    @events.handles(CaseWithdrawn)
    async def withdrawn(event: Any, uow: Any) -> None:
        raise AssertionError("an invalid event applied")

    event = new_event(CaseWithdrawn(case_id=uuid.uuid4())).model_dump(mode="json")
    del event["subject"]
    await events.process_batch((record(json.dumps(event).encode(), 0),))
    assert dead.letters == ["InvalidEvent"]
