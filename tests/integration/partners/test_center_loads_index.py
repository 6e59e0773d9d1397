"""The centers' loads are read through an index on `referrals.offered_at`, not by scanning every
referral ever made: routing a ready case counts each center's referrals of the last
`LOAD_WINDOW`, and the referrals table only grows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql

from referrals_common.migrations import upgrade_async
from referrals_common.native_sql import _arguments, native_statement
from referrals_partners.main import MIGRATIONS
from referrals_partners.models import Referral
from referrals_partners.repository import _CENTER_VERSION_ROWS
from referrals_partners.service import LOAD_WINDOW

DIALECT = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]


def _plain(dsn: str) -> str:
    return dsn.replace("postgresql+asyncpg://", "postgresql://")


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def test_the_migrations_index_referrals_by_when_they_were_offered(new_database):
    dsn = await new_database("partners")
    await upgrade_async(dsn, MIGRATIONS)
    conn = await asyncpg.connect(_plain(dsn))
    try:
        definition = await conn.fetchval(
            "select indexdef from pg_indexes where tablename = 'referrals'"
            " and indexname = 'referrals_offered_at'"
        )
    finally:
        await conn.close()
    assert definition is not None and definition.endswith("(offered_at)")
    # The model declares it too (a database made from the models has it).
    assert "referrals_offered_at" in {i.name for i in Referral.__table__.indexes}  # type: ignore[attr-defined]


async def test_the_centers_loads_read_a_range_of_the_index_not_every_referral(new_database):
    """A year of referrals and a few of the last days: the planner reads the loads through
    `referrals_offered_at` (on the old schema it could only scan the whole table)."""
    dsn = await new_database("partners")
    await upgrade_async(dsn, MIGRATIONS)
    conn = await asyncpg.connect(_plain(dsn))
    try:
        await conn.execute(
            """
            insert into referrals (id, case_id, center_code, attempt, status, offered_at,
                                   answer_due_at, decision, offer)
            select gen_random_uuid(), gen_random_uuid(), 'center-' || (n % 40), 1,
                   (array['offered', 'accepted', 'declined', 'completed'])[1 + n % 4],
                   now() - make_interval(days => 8 + n % 365),
                   now() - make_interval(days => 5 + n % 365), '{}', '{}'
            from generate_series(1, 30000) as n
            """
        )
        await conn.execute(
            """
            insert into referrals (id, case_id, center_code, attempt, status, offered_at,
                                   answer_due_at, decision, offer)
            select gen_random_uuid(), gen_random_uuid(), 'center-' || n, 1, 'offered',
                   now() - make_interval(hours => n), now() + interval '2 days', '{}', '{}'
            from generate_series(1, 20) as n
            """
        )
        await conn.execute("analyze referrals")
        sql, binds = native_statement(_CENTER_VERSION_ROWS, DIALECT)
        since = datetime.now(UTC) - LOAD_WINDOW
        arguments = _arguments((sql, binds), {"since": since})
        plan = json.loads(await conn.fetchval(f"explain (format json) {sql}", *arguments))
    finally:
        await conn.close()
    nodes = _nodes(plan[0]["Plan"])
    # Referrals are reached through the index (an index or bitmap scan of it), never read whole.
    assert not any(
        n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "referrals" for n in nodes
    ), plan
    assert any(n.get("Index Name") == "referrals_offered_at" for n in nodes), plan
