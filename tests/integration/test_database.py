"""The services' connection pool on real PostgreSQL: no connection churn under bursts, and one
failed unit of work (never more) after the server ended every connection."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from referrals_common.db import Database
from referrals_common.faults import is_infrastructure_fault
from referrals_common.settings import PostgresSettings


async def backend_pid(db: Database, hold: float = 0.0) -> int:
    """The server process of the connection one unit of work ran on."""
    async with db.unit_of_work() as uow:
        pid = (await uow.session.execute(text("select pg_backend_pid()"))).scalar_one()
        if hold:
            await uow.session.execute(text("select pg_sleep(:s)"), {"s": hold})
        return int(pid)


async def burst(db: Database, n: int) -> set[int]:
    return set(await asyncio.gather(*(backend_pid(db, hold=0.05) for _ in range(n))))


async def test_bursts_reuse_the_same_connections(messaging_dsn):
    """A burst wider than the pool waits for connections instead of opening and closing extra
    ones: each new connection costs the server a login (SCRAM) and the process its statement
    cache, so the second and third bursts must run on the first burst's connections."""
    db = Database(PostgresSettings(dsn=messaging_dsn, pool_size=6))
    try:
        first = await burst(db, 15)
        assert len(first) == 6
        for _ in range(2):
            assert await burst(db, 15) == first
    finally:
        await db.dispose()


async def end_every_connection(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


async def test_after_the_server_ended_every_connection_one_unit_of_work_fails(db, messaging_dsn):
    """Connections are not pinged before use (three round trips a transaction); a server
    restart costs one failed unit of work, an infrastructure fault its caller retries, and the
    rest of the pool is discarded with it, so what follows runs on new connections."""
    before = await burst(db, 5)
    assert len(before) == 5
    assert await end_every_connection(messaging_dsn) == 5

    with pytest.raises(DBAPIError) as failed:
        await backend_pid(db)
    assert is_infrastructure_fault(failed.value), repr(failed.value)

    after = await burst(db, 5)
    assert len(after) == 5
    assert not after & before
