"""bench/pipeline.py's count of PostgreSQL's work per case (`_pipeline.database_work`), read from
a real server's statistics: what the platform's databases committed and wrote grows by what was
done in them."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def database_work():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        from _pipeline import database_work

        yield database_work
    finally:
        sys.path.remove(str(BENCH))


async def test_transactions_and_rows_done_in_a_database_are_counted(
    database_work, postgres_admin_dsn, new_database
) -> None:  # type: ignore[no-untyped-def]
    dsn = await new_database("work")
    before = await database_work.counters(postgres_admin_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create table t (id int primary key, v text)")
        for i in range(5):  # five statements in autocommit: five transactions
            await conn.execute("insert into t values ($1, 'x')", i)
        async with conn.transaction():  # one transaction of five rows
            await conn.execute("update t set v = 'y'")
    finally:
        await conn.close()  # a backend's counters are reported when it ends
    after = await database_work.counters(postgres_admin_dsn)
    # Other tests' databases count too (a shared server): at least what was done here.
    assert after["transactions"] - before["transactions"] >= 7
    assert after["rows_written"] - before["rows_written"] >= 10
    per_case = database_work.per_case(before, after, 2)
    assert per_case["transactions"] == round(
        (after["transactions"] - before["transactions"]) / 2, 1
    )
    assert database_work.per_case(before, after, 0) == {}
