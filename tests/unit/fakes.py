"""A fake unit of work for the services' use-case tests (cosmicpython's pattern): a use case runs
against it with an in-memory repository, so its rules are tested without a database, and what it
would have committed is there to read.

    uow = FakeUnitOfWork()
    await use_case(uow, repository=FakeCaseRepository(), ...)
    assert uow.committed is False          # use cases never commit: their caller does
    assert uow.outbox.types() == ["referral.case.submitted"]

`session` is a guard, not a session: a use case that reaches past its repository to the database
fails the test with the statement it tried. The real `referrals_common.db.UnitOfWork` is what
the integration tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from referrals_common.contracts import CloudEvent


class SessionUsed(AssertionError):
    """A use case went around its repository to the database session."""


class GuardSession:
    def __getattr__(self, name: str) -> Any:
        raise SessionUsed(f"the use case used the session directly: session.{name}")


@dataclass
class FakeOutbox:
    """What a use case queued for publication, in order, with the topic it named (None: the
    contract's own)."""

    events: list[tuple[CloudEvent[Any], str | None]] = field(default_factory=list)

    async def add(self, event: CloudEvent[Any], *, topic: str | None = None) -> None:
        self.events.append((event, topic))

    async def add_all(self, events: list[CloudEvent[Any]], *, topic: str | None = None) -> None:
        for event in events:
            await self.add(event, topic=topic)

    def types(self) -> list[str]:
        return [event.type for event, _ in self.events]

    def of_type(self, type_: str) -> list[CloudEvent[Any]]:
        return [event for event, _ in self.events if event.type == type_]


class StatementCountingOutbox(FakeOutbox):
    """The fake outbox, counting the calls a use case made: each is one INSERT statement on the
    real outbox, however many events it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.statements = 0

    async def add(self, event: CloudEvent[Any], *, topic: str | None = None) -> None:
        self.statements += 1
        self.events.append((event, topic))

    async def add_all(self, events: list[CloudEvent[Any]], *, topic: str | None = None) -> None:
        self.statements += 1 if events else 0
        self.events.extend((event, topic) for event in events)


@dataclass
class FakeInbox:
    """The consumer's inbox: an event id recorded once per consumer; again, False."""

    seen: set[tuple[str, UUID]] = field(default_factory=set)

    async def record(self, consumer: str, event_id: UUID, event_type: str) -> bool:
        if (consumer, event_id) in self.seen:
            return False
        self.seen.add((consumer, event_id))
        return True


class FakeUnitOfWork:
    """`referrals_common.db.UnitOfWork`'s surface, in memory."""

    def __init__(self) -> None:
        self.session: Any = GuardSession()
        self.outbox = FakeOutbox()
        self.inbox = FakeInbox()
        self.committed = False
        self.rolled_back = False
        self._after_commit: list[Callable[[], object]] = []

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.committed:
            self.rolled_back = True
            self._after_commit.clear()

    async def commit(self) -> None:
        self.committed = True
        done, self._after_commit = self._after_commit, []
        for fn in done:
            fn()

    async def rollback(self) -> None:
        self.rolled_back = True
        self._after_commit.clear()

    def after_commit(self, fn: Callable[[], object]) -> None:
        self._after_commit.append(fn)
