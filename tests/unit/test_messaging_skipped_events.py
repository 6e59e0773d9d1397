"""A consumer skips the events of types it does not handle on their declared type alone: no full
parse, no transaction; what it cannot skip so (not JSON, no type, a type no contract defines,
binary mode) still goes to the dead-letter topic."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from referrals_common.contracts import CaseStatusChanged, CaseWithdrawn, new_event
from referrals_common.messaging import consumer as consumer_module
from referrals_common.messaging.consumer import EventConsumer, declared_type


class NoDatabase:
    """A skipped event opens no unit of work."""

    def unit_of_work(self) -> Any:
        raise AssertionError("a transaction for an event this consumer does not handle")


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[bytes, str]] = []

    async def publish(self, record: Any, body: bytes, *, consumer: str, error: Exception) -> None:
        self.letters.append((body, type(error).__name__))


def record(value: bytes, offset: int = 0, partition: int = 0, headers: Any = ()) -> Any:
    return ConsumerRecord(
        "referrals.cases.v1", partition, offset, 0, 0, b"k", value, None, 0, 0, tuple(headers)
    )


def withdrawal() -> bytes:
    return new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()


def status_consumer(dead: DeadLetters | None = None) -> EventConsumer:
    """A consumer of the cases topic that handles only `CaseStatusChanged`."""
    events = EventConsumer("test.skips", NoDatabase(), dead)  # type: ignore[arg-type]  # fakes

    @events.handles(CaseStatusChanged)
    async def never(event: Any, uow: Any) -> None:
        raise AssertionError("not this consumer's event")

    return events


@pytest.fixture
def no_full_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> None:
        raise AssertionError("the full parse of a skipped event")

    monkeypatch.setattr(consumer_module, "parse_record", refused)


@pytest.mark.parametrize("size", [1, 3], ids=["alone", "a partition's batch"])
async def test_an_event_of_a_type_the_consumer_does_not_handle_is_skipped_unparsed(
    no_full_parse: None, size: int
) -> None:
    events = status_consumer()
    await events.process_batch(tuple(record(withdrawal(), offset) for offset in range(size)))
    assert events.stats == {"applied": 0, "duplicates": 0, "skipped": size, "dead_lettered": 0}
    assert events.in_flight == {}


async def test_an_invalid_event_of_a_type_the_consumer_does_not_handle_is_skipped(
    no_full_parse: None,
) -> None:
    """Its content is for the consumers that handle its type, which dead-letter it."""
    broken = json.loads(withdrawal())
    broken["data"]["case_id"] = "not-a-uuid"
    events = status_consumer()
    await events.process_batch((record(json.dumps(broken).encode()),))
    assert events.stats["skipped"] == 1


async def test_what_cannot_be_skipped_on_its_type_is_still_dead_lettered() -> None:
    unknown = json.loads(withdrawal())
    unknown["type"] = "referrals.case.teleported.v9"
    untyped = json.loads(withdrawal())
    del untyped["type"]
    binary = record(withdrawal(), 3, headers=[("ce_specversion", b"1.0")])
    values = [b"{not json", json.dumps(unknown).encode(), json.dumps(untyped).encode()]
    dead = DeadLetters()
    events = status_consumer(dead)
    await events.process_batch((*(record(v, offset) for offset, v in enumerate(values)), binary))
    assert [error for _, error in dead.letters] == [
        "InvalidEvent",
        "UnknownEventType",
        "UnknownEventType",
        "InvalidEvent",
    ]
    assert events.stats["skipped"] == 0


def test_the_declared_type_is_read_from_the_envelope_only() -> None:
    assert declared_type(record(withdrawal())) == CaseWithdrawn.event_type
    assert declared_type(record(b'{"data": {"type": "x"}}')) is None
    assert declared_type(record(b"[1, 2]")) is None
    assert declared_type(record(b'{"type": 7}')) is None
    assert declared_type(record(withdrawal(), headers=[("ce_specversion", b"1.0")])) is None
