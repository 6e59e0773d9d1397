"""The case event hub without a database: a fake LISTEN connection wakes the streams of the
notified case only; the caps; a lost connection wakes every stream; a stream ends at the
token's expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from referrals_intake.case_events import CHANNEL, CaseEventHub, TooManyStreams, case_events

pytestmark = pytest.mark.unit


class FakeConnection:
    def __init__(self) -> None:
        self.listeners: dict[str, object] = {}
        self.on_lost = None
        self.closed = False

    def add_termination_listener(self, callback) -> None:
        self.on_lost = callback

    async def add_listener(self, channel, callback) -> None:
        self.listeners[channel] = callback

    def is_closed(self) -> bool:
        return self.closed

    async def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def notify(self, payload: str) -> None:
        self.listeners[CHANNEL](self, 1, CHANNEL, payload)  # type: ignore[operator]


@pytest.fixture
def connections() -> list[FakeConnection]:
    return []


@pytest.fixture
def hub(connections) -> CaseEventHub:
    async def connect() -> FakeConnection:
        connections.append(FakeConnection())
        return connections[-1]

    return CaseEventHub(connect, max_streams=3, max_per_case=2)


async def test_a_notification_wakes_only_the_streams_of_its_case(hub, connections) -> None:
    mine, other = uuid4(), uuid4()
    a, b = hub.reserve(mine), hub.reserve(other)
    await hub.listen()

    connections[0].notify(str(mine))

    assert await a.wait(0.5) is True
    assert await b.wait(0.05) is False
    assert len(connections) == 1  # one connection for the process, not one per stream


async def test_the_caps_refuse_before_a_stream_starts(hub) -> None:
    case = uuid4()
    hub.reserve(case)
    hub.reserve(case)
    with pytest.raises(TooManyStreams) as per_case:
        hub.reserve(case)
    hub.reserve(uuid4())
    with pytest.raises(TooManyStreams) as per_process:
        hub.reserve(uuid4())

    assert (per_case.value.scope, per_process.value.scope) == ("case", "process")


async def test_the_last_stream_leaving_closes_the_connection(hub, connections) -> None:
    first, second = hub.reserve(uuid4()), hub.reserve(uuid4())
    await hub.listen()
    await first.close()
    assert not connections[0].closed
    await second.close()

    assert connections[0].closed and hub.streams == 0


async def test_a_lost_connection_wakes_every_stream_and_is_made_again(hub, connections) -> None:
    a, b = hub.reserve(uuid4()), hub.reserve(uuid4())
    await hub.listen()

    connections[0].closed = True
    connections[0].on_lost(connections[0])  # type: ignore[misc]

    assert await a.wait(0.5) and await b.wait(0.5)
    assert len(connections) == 2


async def test_a_stream_sends_what_is_new_and_ends_when_the_token_expires(hub) -> None:
    case = uuid4()
    subscription = hub.reserve(case)
    entries = [SimpleNamespace(id=7), SimpleNamespace(id=9)]
    reads: list[int] = []

    async def read_after(case_id, last_id):
        reads.append(last_id)
        return [e for e in entries if e.id > last_id]

    stream = case_events(
        subscription,
        read_after,
        last_id=7,
        expires_at=datetime.now(UTC) + timedelta(seconds=0.3),
        render=lambda e: e.id,
    )
    async with asyncio.timeout(5):
        sent = [event async for event in stream]

    assert sent == [9]  # after Last-Event-ID 7
    assert reads[0] == 7 and reads[-1] == 9
    assert hub.streams == 0
