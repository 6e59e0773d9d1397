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

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

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

    The ORM session (`uow.session`) is made when first used. A consumer's unit of work begins
    with its inbox row (`open_with`) on a connection of the pool driven through asyncpg, and
    its handler's session then runs on that connection, in that transaction: no SQLAlchemy
    session, connection or transaction is made for an event whose handler never asks for one,
    and none of them sends anything of its own (BEGIN, COMMIT) when it does.
    """

    outbox: Outbox
    inbox: Inbox

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self._committed = False
        self._after_commit: list[Callable[[], object]] = []
        # The pool connection `open_with` took (SQLAlchemy's proxy of it), given back when the
        # block ends; None: the session's own, if it has one.
        self._raw: PoolProxiedConnection | None = None
        # The asyncpg connection of a transaction this unit of work opened itself (`open_with`),
        # which it commits and rolls back itself; None: SQLAlchemy's own transaction.
        self.native: Any = None

    async def __aenter__(self) -> Self:
        # Nothing is sent and no connection taken before the first statement: SQLAlchemy's
        # BEGIN (autobegin) or ours (`open_with`).
        self.outbox = Outbox(self)
        self.inbox = Inbox(self)
        return self

    @property
    def session(self) -> AsyncSession:
        """The unit of work's ORM session, made on first use. After `open_with` it runs on that
        transaction's connection in SQLAlchemy's autocommit mode (it sends no BEGIN or COMMIT;
        the transaction is the unit of work's to end)."""
        if self._session is None:
            if self._raw is None:
                self._session = self._sessions()
            else:
                engine: AsyncEngine = self._sessions.kw["bind"]
                # The adapter's autocommit: its statements start no transaction of asyncpg's
                # (one is open already). Reset before the connection goes back to the pool.
                self._raw.dbapi_connection.autocommit = True  # type: ignore[union-attr]
                connection = AsyncConnection(
                    engine, Connection(engine.sync_engine, connection=self._raw)
                )
                self._session = self._sessions(bind=connection)
        return self._session

    @property
    def has_session(self) -> bool:
        """Whether the unit of work made its ORM session yet (`session` makes it on first use):
        without one, nothing is pending that a read through `native` would not see."""
        return self._session is not None

    async def open_with(self, statement: str) -> str | None:
        """Begin the transaction with `statement` (SQL with its values written in, no parameters)
        in one round trip, `BEGIN; statement` as one simple query, and return its status
        (`INSERT 0 1`); None, and nothing done, once the unit of work has sent anything or made
        its session.

        The connection is taken from the engine's pool as asyncpg's own (no SQLAlchemy session,
        connection or transaction object); `commit` and leaving the block end the transaction,
        and the session, if the handler asks for one, runs in it (`session`)."""
        if self.native is not None or self._session is not None:
            return None
        engine: AsyncEngine = self._sessions.kw["bind"]
        self._raw = await engine.raw_connection()
        driver = self._raw.driver_connection
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
        session = self._session
        try:
            if not self._committed:
                # Detach first: what a read-only unit of work loaded stays readable after the
                # block (a rollback would expire it), and nothing is written.
                if session is not None:
                    session.expunge_all()
                await self._rollback_native()
                if session is not None:
                    await session.rollback()
        finally:
            try:
                if session is not None:
                    await session.close()
            finally:
                await self._release()

    async def _rollback_native(self) -> None:
        native, self.native = self.native, None
        if native is None:
            return
        try:
            await native.execute("rollback")
        except BaseException:
            # The connection's state is unknown (a transaction may be open on it): never back
            # to the pool.
            await self._invalidate()
            raise
        self._native_ended()

    def _native_ended(self) -> None:
        """The transaction `open_with` began has ended: the session's statements, if any come
        after, begin a transaction of SQLAlchemy's again (ended when the session ends), as on
        any connection, instead of each committing by itself."""
        if self._raw is not None and self._session is not None and self._raw.is_valid:
            self._raw.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    async def _invalidate(self) -> None:
        if self._raw is not None:
            await greenlet_spawn(self._raw.invalidate)
        elif self._session is not None:
            await self._session.invalidate()

    async def _release(self) -> None:
        """Give `open_with`'s connection back to the pool: as it was taken (not in SQLAlchemy's
        autocommit mode), or discarded if a transaction may still be open on it."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            if raw.is_valid:
                driver = raw.driver_connection
                if driver is None or driver.is_closed() or driver.is_in_transaction():
                    # The pool knows nothing of a transaction opened through asyncpg: its
                    # reset on return would leave it open for the connection's next user.
                    await greenlet_spawn(raw.invalidate)
                else:
                    raw.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        finally:
            await greenlet_spawn(raw.close)

    async def commit(self) -> None:
        if self.native is not None:
            # What the session still holds goes in first, then the one COMMIT; SQLAlchemy's
            # own commit then sends nothing (autocommit mode).
            if self._session is not None:
                await self._session.flush()
            await self.native.execute("commit")
            self.native = None
            self._native_ended()
        if self._session is not None:
            await self._session.commit()
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
        if self._session is not None:
            await self._session.rollback()
