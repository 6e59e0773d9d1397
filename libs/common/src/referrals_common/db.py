"""Database access: an async engine made on demand, and the unit of work use cases run in.

Nothing connects at import time. A service builds one `Database` at start-up (in its bootstrap)
and gives use cases a fresh `UnitOfWork` per request or per event. Repositories add to the unit
of work's session and never commit: the unit of work commits the state change, the outbox rows
and the inbox row together, or none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from referrals_common.messaging.inbox import Inbox
from referrals_common.messaging.outbox import Outbox
from referrals_common.settings import PostgresSettings


class Database:
    """An async SQLAlchemy engine (asyncpg driver) and its session factory for one service."""

    def __init__(self, settings: PostgresSettings, *, echo: bool = False) -> None:
        self.settings = settings
        self.engine: AsyncEngine = create_async_engine(
            settings.async_url(),
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            # No ping before each use: SQLAlchemy's asyncpg ping is three round trips (begin,
            # `;`, rollback) in front of every transaction. A connection that died with the
            # server fails its statement instead; SQLAlchemy sees a disconnect and discards
            # every connection of the pool opened before it, and the caller's infrastructure
            # fault handling (an API's 503, a consumer's redelivery, a loop's retry) tries
            # again on fresh ones.
            pool_pre_ping=False,
            echo=echo,
            # A failed statement's error never carries its parameters (health data) into a log.
            hide_parameters=True,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    async def dispose(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    """One database transaction, with the outbox and inbox bound to it.

    `async with db.unit_of_work() as uow: ...; await uow.commit()`. Leaving the block without
    `commit()` (or with an exception) rolls everything back.

    `uow.after_commit(fn)` runs `fn()` once the transaction is committed, never if it is rolled
    back: how a use case counts what happened (a metric), so a retried or rolled-back
    transaction counts nothing twice.
    """

    session: AsyncSession
    outbox: Outbox
    inbox: Inbox

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._committed = False
        self._after_commit: list[Callable[[], object]] = []

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        await self.session.begin()
        self.outbox = Outbox(self.session)
        self.inbox = Inbox(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                # Detach first: what a read-only unit of work loaded stays readable after the
                # block (a rollback would expire it), and nothing is written.
                self.session.expunge_all()
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True
        done, self._after_commit = self._after_commit, []
        for fn in done:
            fn()

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Run `fn()` (quick, no I/O: a metric's `inc`) after the next successful commit."""
        self._after_commit.append(fn)

    async def rollback(self) -> None:
        self._after_commit.clear()
        await self.session.rollback()
