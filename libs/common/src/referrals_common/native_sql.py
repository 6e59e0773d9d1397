"""A service's hottest statements run through asyncpg itself, on a connection of its engine's
pool: SQLAlchemy compiles each statement once (`native_statement`) and its asyncpg dialect
converts the values, and nothing else of SQLAlchemy runs per execution (its connection object,
events, compiled-cache look-up, parameter processing and result proxy: more CPU than asyncpg's
round trip).

* `Autocommit`: a pool connection on which each statement commits by itself.
* `native_connection(engine)`: such a connection for the time of a `with` block; one failing
  for another reason than a statement is discarded, not given back to the pool.
* `run_native`, `fetch_native`, `fetch_all_native`: a statement with its values by name, on
  such a connection.
* `native_transaction(executor)`: a transaction on it, committed when its block ends, rolled
  back when a statement of the block failed.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

NativeStatement = tuple[str, tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]]
"""A statement's SQL text for asyncpg, and per parameter in order its name, the dialect's
conversion of its value (None: the value as it is) and the value the statement itself gives it
(a literal's, `coalesce(…, 0)`'s 0; `REQUIRED`: the caller's to give)."""

REQUIRED: Any = object()
"""A parameter whose value only the caller gives (`NativeStatement`)."""


@dataclass(frozen=True)
class Autocommit:
    """A connection of the pool driven through asyncpg itself, on which each statement commits
    by itself unless its caller opened a transaction on it: for a write that is one statement,
    atomic on its own. `dialect` is the engine's, whose compiled statements and value
    conversions it runs (`native_statement`)."""

    connection: Any  # asyncpg.Connection: the pool's driver connection
    dialect: Dialect


# A few module-level statements; bounded all the same, should a caller build one per call.
@functools.lru_cache(maxsize=32)
def native_statement(statement: ClauseElement, dialect: Dialect) -> NativeStatement:
    """`statement` compiled once for `dialect` (asyncpg's: `$n` parameters with their casts), and
    for each parameter in order its name and the dialect's conversion of its value (JSON to its
    text, …): what SQLAlchemy sends for the statement, without its per-execution work."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    assert compiled.positiontup is not None  # asyncpg's paramstyle is positional
    binds = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        binds.append((name, convert, REQUIRED if bind.required else bind.effective_value))
    return compiled.string, tuple(binds)


def _arguments(compiled: NativeStatement, values: Mapping[str, Any]) -> list[Any]:
    arguments = []
    for name, convert, own in compiled[1]:
        # A parameter the caller gives and does not: KeyError, as SQLAlchemy raises its own.
        value = values[name] if own is REQUIRED or name in values else own
        arguments.append(value if convert is None else convert(value))
    return arguments


async def run_native(
    executor: Autocommit, statement: ClauseElement, values: Mapping[str, Any], *, returns: bool
) -> bool:
    """Run `statement` with `values` (by parameter name) on `executor`'s connection. With
    `returns`: whether it returned a row; without: True once it ran."""
    if returns:
        return await fetch_native(executor, statement, values) is not None
    compiled = native_statement(statement, executor.dialect)
    await executor.connection.execute(compiled[0], *_arguments(compiled, values))
    return True


async def fetch_native(
    executor: Autocommit, statement: ClauseElement, values: Mapping[str, Any]
) -> asyncpg.Record | None:
    """`statement`'s first row with `values` (by parameter name) on `executor`'s connection,
    its columns as asyncpg gives them (a UUID as `uuid.UUID`, …); None when it returned none."""
    compiled = native_statement(statement, executor.dialect)
    return cast(
        asyncpg.Record | None,
        await executor.connection.fetchrow(compiled[0], *_arguments(compiled, values)),
    )


async def fetch_all_native(
    executor: Autocommit, statement: ClauseElement, values: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """Every row of `statement` with `values` (by parameter name) on `executor`'s connection,
    in its order, their columns as `fetch_native` gives them."""
    compiled = native_statement(statement, executor.dialect)
    return cast(
        list[asyncpg.Record],
        await executor.connection.fetch(compiled[0], *_arguments(compiled, values)),
    )


def unit_of_work_native(uow: object, dialect: Dialect | None) -> Autocommit | None:
    """The transaction a unit of work runs on asyncpg itself (`UnitOfWork.native`: the one a
    consumer's inbox row began), driven with `dialect` (the engine's), or None: it opened none,
    no dialect was given (everything through the session), or `uow` is a test's stand-in."""
    connection = getattr(uow, "native", None)
    if connection is None or dialect is None:
        return None
    return Autocommit(connection, dialect)


@asynccontextmanager
async def native_connection(engine: AsyncEngine) -> AsyncIterator[Autocommit]:
    """A connection of `engine`'s pool for the `with` block, on which each statement commits by
    itself (PostgreSQL's autocommit: no transaction is opened on it unless the block opens one,
    `native_transaction`), with no ORM session or SQLAlchemy connection around it. It goes back
    to the pool afterwards, unless it may not be fit for another use: the block was interrupted
    (a cancelled request, perhaps mid-statement), the connection failed (lost, closed, a
    protocol error), or a transaction is still open on it. Then it is closed, and the pool opens
    another. A statement's error (a unique key violated, …) or the caller's own leaves it fit."""
    raw = await engine.raw_connection()
    connection: Any = raw.driver_connection  # asyncpg.Connection
    try:
        yield Autocommit(connection, engine.dialect)
    except BaseException as exc:
        if not connection_fit_after(exc):
            await greenlet_spawn(raw.invalidate, exc)
        raise
    finally:
        if raw.is_valid and (connection.is_closed() or connection.is_in_transaction()):
            # SQLAlchemy's pool knows nothing of a transaction opened through asyncpg: its
            # reset on return would leave it open for the connection's next user.
            await greenlet_spawn(raw.invalidate)
        # SQLAlchemy's pool returns a connection from inside its greenlet bridge.
        await greenlet_spawn(raw.close)


@asynccontextmanager
async def native_transaction(executor: Autocommit, *, first: str = "") -> AsyncIterator[None]:
    """A transaction on `executor`'s connection for the `with` block: committed when the block
    ends, rolled back when it raised (a statement's error, the caller's own). An interrupted
    block (a cancelled task) or a failed connection leaves it to `native_connection`, which
    then discards the connection, the transaction with it.

    `first`: a statement without parameters (SQL text of the caller's own, never made of input)
    sent with the BEGIN in the same round trip, such as an advisory lock of the transaction."""
    await executor.connection.execute(f"begin; {first}" if first else "begin")
    try:
        yield
    except BaseException as exc:
        if connection_fit_after(exc):
            await executor.connection.execute("rollback")
        raise
    await executor.connection.execute("commit")


_CONNECTION_FAILED = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def connection_fit_after(exc: BaseException) -> bool:
    """Whether a connection whose use raised `exc` is still fit for use: a statement's error
    (PostgreSQL refused it) or an error of the caller's own, not an interruption (cancelled,
    perhaps mid-statement) or a failure of the connection itself."""
    return isinstance(exc, Exception) and not isinstance(exc, _CONNECTION_FAILED)
