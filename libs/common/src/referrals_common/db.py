"""Database access: an async engine made on demand, and the unit of work use cases run in.

Nothing connects at import time. A service builds one `Database` at start-up (in its bootstrap)
and gives use cases a fresh `UnitOfWork` per request or per event. Repositories add to the unit
of work's session and never commit: the unit of work commits the state change, the outbox rows
and the inbox row together, or none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from referrals_common.messaging.inbox import Inbox
from referrals_common.messaging.outbox import Outbox
from referrals_common.settings import PostgresSettings

SIDE_POOL_SIZE = 2
"""Connections of a `Database`'s side pool (`side_unit_of_work`)."""


class Database:
    """An async SQLAlchemy engine (asyncpg driver) and its session factory for one service."""

    def __init__(self, settings: PostgresSettings, *, echo: bool = False) -> None:
        self.settings = settings
        self.echo = echo
        self.engine: AsyncEngine = self._engine(settings.pool_size, settings.max_overflow)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._side: tuple[AsyncEngine, async_sessionmaker[AsyncSession]] | None = None

    def _engine(self, pool_size: int, max_overflow: int) -> AsyncEngine:
        return create_async_engine(
            self.settings.async_url(),
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No ping before each use: SQLAlchemy's asyncpg ping is three round trips (begin,
            # `;`, rollback) in front of every transaction. A connection that died with the
            # server fails its statement instead; SQLAlchemy sees a disconnect and discards
            # every connection of the pool opened before it, and the caller's infrastructure
            # fault handling (an API's 503, a consumer's redelivery, a loop's retry) tries
            # again on fresh ones.
            pool_pre_ping=False,
            echo=self.echo,
            # A failed statement's error never carries its parameters (health data) into a log.
            hide_parameters=True,
        )

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.sessions)

    def side_unit_of_work(self) -> UnitOfWork:
        """A unit of work on connections of its own (at most `SIDE_POOL_SIZE`, opened when first
        needed), for a short write made while its caller may hold a connection of the main
        pool: an access audit row written beside a route's unit of work.

        From the main pool, as many concurrent requests as it has connections could each hold
        one and wait for a second that none of them gives back: every request of the service
        stalled until the pool's timeout (30 s), which eight concurrent center downloads did. A
        side unit of work waits for nothing else while it holds its connection, so waiting for
        one always ends."""
        if self._side is None:
            engine = self._engine(SIDE_POOL_SIZE, 0)
            sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
            self._side = (engine, sessions)
        return UnitOfWork(self._side[1])

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._side is not None:
            await self._side[0].dispose()


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
        # The asyncpg connection of a transaction this unit of work opened itself (`open_with`),
        # which it commits and rolls back itself; None: SQLAlchemy's own transaction.
        self.native: Any = None

    async def __aenter__(self) -> Self:
        # The session begins with its first statement (autobegin), SQLAlchemy's BEGIN or ours
        # (`open_with`): nothing is sent before.
        self.session = self._sessions()
        self.outbox = Outbox(self)
        self.inbox = Inbox(self)
        return self

    async def open_with(self, statement: str) -> str | None:
        """Begin the transaction with `statement` (SQL with its values written in, no parameters)
        in one round trip, `BEGIN; statement` as one simple query, and return its status
        (`INSERT 0 1`); None, and nothing done, once the unit of work has sent anything.

        SQLAlchemy sends BEGIN on its own, a round trip of its own before the first statement.
        Here the connection is put in SQLAlchemy's autocommit mode (it sends no BEGIN or COMMIT)
        inside the transaction opened here, which `commit` and leaving the block end: the
        session's statements still run in it, with the outbox and the inbox."""
        if self.native is not None or self.session.in_transaction():
            return None
        connection = await self.session.connection(
            execution_options={"isolation_level": "AUTOCOMMIT"}
        )
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None  # an open connection's
        self.native = driver
        status: str = await driver.execute(f"begin; {statement}")
        return status

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
                await self._rollback_native()
                await self.session.rollback()
        finally:
            await self.session.close()

    async def _rollback_native(self) -> None:
        native, self.native = self.native, None
        if native is None:
            return
        try:
            await native.execute("rollback")
        except BaseException:
            # The connection's state is unknown (a transaction may be open on it): never back
            # to the pool.
            await self.session.invalidate()
            raise

    async def commit(self) -> None:
        if self.native is not None:
            # What the session still holds goes in first, then the one COMMIT; SQLAlchemy's
            # own commit then sends nothing (autocommit mode) and gives the connection back.
            await self.session.flush()
            await self.native.execute("commit")
            self.native = None
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
        await self._rollback_native()
        await self.session.rollback()
