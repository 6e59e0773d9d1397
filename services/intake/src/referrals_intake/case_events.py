"""A case's timeline as a live stream: `GET /v1/cases/{id}/events` (Server-Sent Events).

How a stream learns of a new entry without polling: every row inserted into `case_timeline`
fires `pg_notify('intake_case_events', case_id)` (a trigger, migration 0011), and PostgreSQL
delivers a notification only when the inserting transaction commits. Each API process keeps one
connection LISTENing on that channel while it serves at least one stream (`CaseEventHub`), and
wakes the streams of that case; a woken stream reads the entries after the last one it sent, in
a short transaction of its own, so a notification is only a wake-up call and the database stays
the one source of what happened. A stream holds no database connection while it waits.

If the listening connection is lost (PostgreSQL restarting), every stream is woken to read
again and the hub listens anew on the next wait; a stream whose read fails ends, and its client
reconnects with `Last-Event-ID`, losing nothing.

Limits: at most `max_streams` streams per process and `max_per_case` per case (a patient's
phone and laptop, a reconnect racing its predecessor), refused with a problem before the stream
starts; a stream ends when the case token that opened it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "intake_case_events"
"""The PostgreSQL notification channel the timeline trigger notifies (payload: the case id)."""


class TooManyStreams(Exception):
    """No room for another stream: `scope` is `process` or `case`."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


@dataclass(eq=False)
class Subscription:
    """One stream's place in the hub: woken when its case's timeline grows."""

    case_id: UUID
    _hub: CaseEventHub
    _woken: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) for news of the case; whether there was any."""
        await self._hub.listen()
        try:
            async with asyncio.timeout(timeout):
                await self._woken.wait()
        except TimeoutError:
            return False
        self._woken.clear()
        return True

    def wake(self) -> None:
        self._woken.set()

    async def close(self) -> None:
        await self._hub.release(self)


class CaseEventHub:
    """The process's streams by case, and the one LISTEN connection that wakes them."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        *,
        max_streams: int,
        max_per_case: int,
    ) -> None:
        self._connect = connect
        self.max_streams = max_streams
        self.max_per_case = max_per_case
        self._by_case: dict[UUID, set[Subscription]] = {}
        self._count = 0
        self._connection: Any | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def for_dsn(cls, dsn: str, *, max_streams: int, max_per_case: int) -> CaseEventHub:
        return cls(lambda: asyncpg.connect(dsn), max_streams=max_streams, max_per_case=max_per_case)

    @property
    def streams(self) -> int:
        """Streams open in this process."""
        return self._count

    def reserve(self, case_id: UUID) -> Subscription:
        """A place for one more stream of `case_id`, or TooManyStreams."""
        if self._count >= self.max_streams:
            raise TooManyStreams("process")
        of_case = self._by_case.setdefault(case_id, set())
        if len(of_case) >= self.max_per_case:
            raise TooManyStreams("case")
        subscription = Subscription(case_id, self)
        of_case.add(subscription)
        self._count += 1
        return subscription

    async def release(self, subscription: Subscription) -> None:
        of_case = self._by_case.get(subscription.case_id)
        if of_case is None or subscription not in of_case:
            return
        of_case.discard(subscription)
        if not of_case:
            del self._by_case[subscription.case_id]
        self._count -= 1
        if self._count == 0:
            # Nobody listens: give the connection back rather than hold it idle.
            await self.close()

    async def listen(self) -> None:
        """Make sure the LISTEN connection is up (raises if the database is unreachable)."""
        if self._connection is not None and not self._connection.is_closed():
            return
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed():
                return
            connection = await self._connect()
            connection.add_termination_listener(self._lost)
            await connection.add_listener(CHANNEL, self._notified)
            self._connection = connection

    async def close(self) -> None:
        async with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and not connection.is_closed():
                with contextlib.suppress(Exception):
                    await connection.close(timeout=5)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            case_id = UUID(payload)
        except ValueError:
            log.warning("ignoring a notification with payload %r", payload[:80])
            return
        for subscription in self._by_case.get(case_id, ()):
            subscription.wake()

    def _lost(self, _connection: Any) -> None:
        # Notifications may have been missed: every stream reads again.
        log.warning("the case event listener lost its connection; streams read again")
        self._connection = None
        for of_case in self._by_case.values():
            for subscription in of_case:
                subscription.wake()


Read = Callable[[UUID, int], Awaitable[list[Any]]]
"""Reads a case's timeline entries after the given entry id, oldest first."""


async def case_events(
    subscription: Subscription,
    read_after: Read,
    *,
    last_id: int,
    expires_at: datetime,
    render: Callable[[Any], Any],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AsyncIterator[Any]:
    """The stream's events: the entries after `last_id`, then each new one as it is committed,
    until `expires_at` (the case token's expiry) or the client leaves."""
    try:
        while True:
            for entry in await read_after(subscription.case_id, last_id):
                last_id = entry.id
                yield render(entry)
            remaining = (expires_at - clock()).total_seconds()
            if remaining <= 0:
                return
            await subscription.wait(remaining)
    finally:
        await subscription.close()
