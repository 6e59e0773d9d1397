"""A consumer's handler is tried `attempts` times with exponential backoff, and only once when
it succeeds at once (the usual case, without tenacity's machinery)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.messaging import consumer as consumer_module
from referrals_common.messaging.consumer import EventConsumer, PoisonEvent


class FakeUnitOfWork:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.inbox = self

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def record(self, consumer: str, event_id: uuid.UUID, event_type: str) -> bool:
        return event_id not in self.db.applied

    async def commit(self) -> None:
        self.db.commits += 1


class FakeDatabase:
    def __init__(self) -> None:
        self.applied: set[uuid.UUID] = set()
        self.commits = 0

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(consumer_module.asyncio, "sleep", sleep)
    monkeypatch.setattr(consumer_module.random, "uniform", lambda a, b: 0.0)
    return waited


def failing(times: int, exc: Exception) -> tuple[Any, list[int]]:
    calls: list[int] = []

    async def handler(event: Any, uow: Any) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise exc

    return handler, calls


async def test_a_handler_that_succeeds_at_once_runs_once_without_waiting(
    waits: list[float],
) -> None:
    db = FakeDatabase()
    events = EventConsumer("test.retries", db, None)  # type: ignore[arg-type]  # fakes
    handler, calls = failing(0, RuntimeError())
    assert await events._apply(new_event(CaseWithdrawn(case_id=uuid.uuid4())), handler) == "ok"
    assert (calls, waits, db.commits, events.stats["applied"]) == ([1], [], 1, 1)


async def test_a_failing_handler_is_retried_with_exponential_backoff(waits: list[float]) -> None:
    db = FakeDatabase()
    events = EventConsumer("test.retries", db, None, backoff_initial=0.1, backoff_max=0.3)  # type: ignore[arg-type]  # fakes
    handler, calls = failing(3, RuntimeError("not yet"))
    event = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    assert await events._apply(event, handler) == "retried"
    assert len(calls) == 4
    assert waits == pytest.approx([0.1, 0.2, 0.3])  # 0.4 capped at backoff_max
    assert events.stats["applied"] == 1


async def test_the_last_attempts_error_is_raised(waits: list[float]) -> None:
    events = EventConsumer("test.retries", FakeDatabase(), None, attempts=3)  # type: ignore[arg-type]  # fakes
    handler, calls = failing(10, RuntimeError("never"))
    with pytest.raises(RuntimeError, match="never"):
        await events._apply(new_event(CaseWithdrawn(case_id=uuid.uuid4())), handler)
    assert len(calls) == 3
    assert len(waits) == 2


async def test_a_poison_event_is_not_retried(waits: list[float]) -> None:
    events = EventConsumer("test.retries", FakeDatabase(), None)  # type: ignore[arg-type]  # fakes
    handler, calls = failing(10, PoisonEvent("never applicable"))
    with pytest.raises(PoisonEvent):
        await events._apply(new_event(CaseWithdrawn(case_id=uuid.uuid4())), handler)
    assert (len(calls), waits) == (1, [])


async def test_an_event_already_in_the_inbox_is_a_duplicate(waits: list[float]) -> None:
    db = FakeDatabase()
    event = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    db.applied.add(event.id)
    events = EventConsumer("test.retries", db, None)  # type: ignore[arg-type]  # fakes
    handler, calls = failing(0, RuntimeError())
    assert await events._apply(event, handler) == "duplicate"
    assert (calls, db.commits, events.stats["duplicates"]) == ([], 0, 1)
