"""PostgreSQL's work in a phase, counted: transactions and rows of the platform's databases.

CPU-seconds per case move with the machine's hour (the same code has read 0.041 and 0.067 CPU-s
per staged case an hour apart); what the platform asks PostgreSQL does not. From
`pg_stat_database`, summed over every database but `postgres` and the templates (the bench reads
these counters from `postgres`, so its own questions are not counted):

* `transactions`: commits and rollbacks: an explicit transaction, or one statement in
  autocommit (each is a round trip or more to the server);
* `rows_written`: rows inserted, updated and deleted;
* `rows_fetched`: rows read through an index or a scan and returned by it.

A backend sends its counters to the statistics at the end of a transaction at most once a second,
and one that went idle within `FLUSH_S` seconds: a phase's counters are read `FLUSH_S` after its
last work and before its first (the earlier work's counters in by then). Nothing idle is
subtracted: an idle platform's scheduler and sender ask a few questions a second, a percent or
two of a phase's.
"""

from __future__ import annotations

from typing import Final

import asyncpg

FLUSH_S: Final = 11.0
"""Seconds until every backend has reported its counters (PostgreSQL: an idle backend within
10 s)."""

COUNTERS: Final = """
select coalesce(sum(xact_commit + xact_rollback), 0)::bigint as transactions,
       coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0)::bigint as rows_written,
       coalesce(sum(tup_fetched), 0)::bigint as rows_fetched
from pg_stat_database
where datname is not null and datname not in ('postgres', 'template0', 'template1')
"""


async def counters(dsn: str) -> dict[str, int]:
    """The platform databases' counters now (from the `postgres` database of `dsn`'s server)."""
    conn = await asyncpg.connect(dsn, database="postgres")
    try:
        row = await conn.fetchrow(COUNTERS)
    finally:
        await conn.close()
    assert row is not None
    return {name: int(row[name]) for name in ("transactions", "rows_written", "rows_fetched")}


def per_case(before: dict[str, int], after: dict[str, int], cases: int) -> dict[str, float]:
    """Each counter's growth from `before` to `after`, per case (empty without cases)."""
    if not cases:
        return {}
    return {name: round((after[name] - before[name]) / cases, 1) for name in before}
