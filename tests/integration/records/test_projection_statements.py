"""What records' consumer asks PostgreSQL per event of its projections, counted (issue 25, cost
per case): a case's status and an offered referral are one statement each, through asyncpg itself
in the transaction the inbox opened (SQLAlchemy's events do not see them), and no ORM session is
made for them. Their rules hold on that path as on the session's (tests/integration/records/
test_documents.py): withdrawal is final, a referral first heard of after it is born closed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from referrals_common.contracts import CaseStatus
from referrals_common.db import Database, UnitOfWork

from .test_documents import rows

pytestmark = pytest.mark.integration

CONSUMER = "records.projections"


@dataclass
class Sent:
    """What went to PostgreSQL, in order: through SQLAlchemy (`orm`, as its cursor sends it),
    and through asyncpg itself (`native`: BEGIN and COMMIT included)."""

    orm: list[str] = field(default_factory=list)
    native: list[str] = field(default_factory=list)


@asynccontextmanager
async def queries_sent(db: Database) -> AsyncIterator[Sent]:
    """The statements sent on `db`'s connections while the block runs."""
    sent = Sent()
    logged: list[Any] = []

    def log(query: Any) -> None:
        sent.native.append(" ".join(query.query.split()).lower())

    def checked_out(dbapi_connection: Any, *_: Any) -> None:
        connection = dbapi_connection.driver_connection
        if connection not in logged:
            connection.add_query_logger(log)
            logged.append(connection)

    def executed(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.orm.append(" ".join(statement.split()))

    sync_engine = db.engine.sync_engine
    event.listen(sync_engine, "checkout", checked_out)
    event.listen(sync_engine, "before_cursor_execute", executed)
    try:
        yield sent
        await asyncio.sleep(0.05)  # asyncpg calls its loggers soon after, not at once
    finally:
        event.remove(sync_engine, "checkout", checked_out)
        event.remove(sync_engine, "before_cursor_execute", executed)
        for connection in logged:
            connection.remove_query_logger(log)


async def consumed(db: Database, handler: Callable[[UnitOfWork], Awaitable[None]]) -> None:
    """`handler` run as the consumer runs it: the event's inbox row first, then one commit."""
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record(CONSUMER, uuid.uuid4(), "test.event")
        await handler(uow)
        await uow.commit()


async def test_a_status_and_an_offer_are_one_statement_each_in_the_inbox_transaction(
    runtime: Any,
) -> None:
    records, db = runtime.records, runtime.db
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    async with queries_sent(db) as sent:
        await consumed(db, lambda uow: records.on_case_status(uow, case_id, "submitted"))
        await consumed(
            db, lambda uow: records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
        )
    assert sent.orm == []
    assert [query.split()[0] for query in sent.native] == ["begin;", "insert", "commit"] * 2
    assert sent.native[0].startswith("begin; insert into inbox")
    assert "insert into case_states" in sent.native[1]
    assert "insert into center_referrals" in sent.native[4]
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "submitted"
    [referral] = await rows(
        runtime,
        "select center_code, closed_at from center_referrals where referral_id = $1",
        referral_id,
    )
    assert referral["center_code"] == "charite-berlin" and referral["closed_at"] is None


async def test_on_asyncpg_withdrawal_stays_final_and_a_later_offer_is_born_closed(
    runtime: Any,
) -> None:
    records, db = runtime.records, runtime.db
    case_id, late = uuid.uuid4(), uuid.uuid4()
    for status in (CaseStatus.SUBMITTED, CaseStatus.WITHDRAWN, CaseStatus.REFERRED):
        await consumed(db, lambda uow, s=status: records.on_case_status(uow, case_id, s))
    await consumed(db, lambda uow: records.on_referral_offered(uow, late, case_id, "nio-warsaw"))
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "withdrawn"
    [referral] = await rows(
        runtime, "select closed_reason from center_referrals where referral_id = $1", late
    )
    assert referral["closed_reason"] == "withdrawn"
