"""Statements run through asyncpg itself (`referrals_common.native_sql`): what is sent, and when a
connection goes back to the pool, is rolled back or is discarded. A fake asyncpg connection and
pool; the real ones in intake's and records' integration tests."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from referrals_common.native_sql import (
    Autocommit,
    connection_fit_after,
    fetch_native,
    native_connection,
    native_statement,
    native_transaction,
    run_native,
    unit_of_work_native,
)

DIALECT = asyncpg_dialect()
ROWS = Table("rows", MetaData(), Column("id", Integer), Column("body", JSON))
INSERT = insert(ROWS).values(
    id=bindparam("row_id", type_=Integer()), body=bindparam("body", type_=JSON())
)


class FakeConnection:
    """What asyncpg's connection is asked, and whether a transaction is open on it."""

    def __init__(self, *, fail: BaseException | None = None) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.fail = fail
        self.in_transaction = False
        self.closed = False

    async def execute(self, sql: str, *args: Any) -> str:
        self.sent.append((sql, args))
        if sql.startswith("begin"):
            self.in_transaction = True
        elif sql in ("commit", "rollback"):
            self.in_transaction = False
        elif self.fail is not None:
            raise self.fail
        return "OK"

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, int] | None:
        self.sent.append((sql, args))
        return {"id": args[0]} if args[0] else None

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def is_closed(self) -> bool:
        return self.closed


class FakeRaw:
    def __init__(self, connection: FakeConnection) -> None:
        self.driver_connection = connection
        self.is_valid = True
        self.returned = False

    def invalidate(self, exc: BaseException | None = None) -> None:
        self.is_valid = False

    def close(self) -> None:
        self.returned = self.is_valid


class FakeEngine:
    dialect = DIALECT

    def __init__(self, connection: FakeConnection) -> None:
        self.raw = FakeRaw(connection)

    async def raw_connection(self) -> FakeRaw:
        return self.raw


def test_a_statement_is_compiled_once_with_its_values_conversions() -> None:
    sql, binds = native_statement(INSERT, DIALECT)
    assert "$1" in sql and "$2" in sql
    assert [name for name, _, _ in binds] == ["row_id", "body"]
    convert = binds[1][1]
    assert convert is not None and convert({"a": 1}) == '{"a": 1}'
    assert native_statement(INSERT, DIALECT) is native_statement(INSERT, DIALECT)


async def test_a_statements_own_values_are_sent_and_the_callers_are_required() -> None:
    # `coalesce(sum(id), 0)` and `limit 5`: values of the statement's own, bound as parameters.
    statement = (
        select(func.coalesce(func.sum(ROWS.c.id), 0))
        .where(ROWS.c.id > bindparam("above", type_=Integer()))
        .limit(5)
    )
    connection = FakeConnection()
    executor = Autocommit(connection, DIALECT)
    await fetch_native(executor, statement, {"above": 2})
    assert sorted(connection.sent[-1][1]) == [0, 2, 5]
    with pytest.raises(KeyError, match="above"):
        await fetch_native(executor, statement, {})


async def test_values_are_sent_in_the_statements_order_converted() -> None:
    connection = FakeConnection()
    executor = Autocommit(connection, DIALECT)
    assert await run_native(executor, INSERT, {"body": [1], "row_id": 7}, returns=False)
    assert connection.sent[-1][1] == (7, "[1]")
    assert await fetch_native(executor, INSERT, {"body": None, "row_id": 3}) == {"id": 3}
    assert not await run_native(executor, INSERT, {"body": None, "row_id": 0}, returns=True)


async def _insert_in_transaction(
    engine: FakeEngine, *, first: str = "", then_raise: Exception | None = None
) -> None:
    """One insert in a native transaction on a connection of `engine`, then `then_raise`."""
    async with (
        native_connection(engine) as executor,  # type: ignore[arg-type]
        native_transaction(executor, first=first),
    ):
        await run_native(executor, INSERT, {"body": None, "row_id": 1}, returns=False)
        if then_raise is not None:
            raise then_raise


async def test_a_transaction_commits_when_its_block_ends() -> None:
    connection = FakeConnection()
    engine = FakeEngine(connection)
    await _insert_in_transaction(engine, first="select pg_advisory_xact_lock(1, 2)")
    assert [sql for sql, _ in connection.sent][::2] == [
        "begin; select pg_advisory_xact_lock(1, 2)",
        "commit",
    ]
    assert engine.raw.returned


async def test_a_statement_error_is_rolled_back_and_its_connection_kept() -> None:
    connection = FakeConnection(fail=asyncpg.UniqueViolationError("twin"))
    engine = FakeEngine(connection)
    with pytest.raises(asyncpg.UniqueViolationError):
        await _insert_in_transaction(engine)
    assert connection.sent[-1][0] == "rollback"
    assert engine.raw.returned


async def test_the_callers_own_error_is_rolled_back_and_its_connection_kept() -> None:
    connection = FakeConnection()
    engine = FakeEngine(connection)
    with pytest.raises(ValueError, match="the caller's own"):
        await _insert_in_transaction(engine, then_raise=ValueError("the caller's own"))
    assert connection.sent[-1][0] == "rollback"
    assert engine.raw.returned


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), asyncpg.ConnectionDoesNotExistError("gone"), OSError("reset")],
)
async def test_an_interrupted_or_failed_connection_is_discarded(error: BaseException) -> None:
    connection = FakeConnection(fail=error)
    engine = FakeEngine(connection)
    with pytest.raises(type(error)):
        await _insert_in_transaction(engine)
    assert "rollback" not in [sql for sql, _ in connection.sent]
    assert not engine.raw.is_valid and not engine.raw.returned


async def test_a_connection_left_in_a_transaction_is_discarded() -> None:
    connection = FakeConnection()
    engine = FakeEngine(connection)
    async with native_connection(engine) as executor:  # type: ignore[arg-type]
        await executor.connection.execute("begin")
    assert not engine.raw.returned


def test_only_statement_errors_and_the_callers_own_leave_a_connection_fit() -> None:
    assert connection_fit_after(asyncpg.UniqueViolationError("twin"))
    assert connection_fit_after(LookupError("no such case"))
    assert not connection_fit_after(asyncio.CancelledError())
    assert not connection_fit_after(asyncpg.InterfaceError("another operation is in progress"))
    assert not connection_fit_after(TimeoutError())


def test_a_unit_of_works_own_transaction_is_driven_only_with_a_dialect() -> None:
    class Uow:
        native: object = None

    uow = Uow()
    assert unit_of_work_native(uow, DIALECT) is None  # it opened no transaction on asyncpg
    assert unit_of_work_native(object(), DIALECT) is None  # a test's stand-in has no `native`
    uow.native = connection = object()
    assert unit_of_work_native(uow, None) is None  # no dialect: everything through the session
    assert unit_of_work_native(uow, DIALECT) == Autocommit(connection, DIALECT)
