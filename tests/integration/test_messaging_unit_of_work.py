"""The consumer's unit of work over real PostgreSQL: it begins with its inbox row on a connection
of the pool driven through asyncpg, and makes an ORM session only if the handler asks for one,
on that connection and in that transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.db import Database
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.settings import PostgresSettings

from .conftest import record_effect

pytestmark = pytest.mark.integration


@pytest.fixture
async def one_connection(messaging_dsn) -> AsyncIterator[Database]:
    """A database with one connection, so each unit of work reuses the last one's."""
    database = Database(PostgresSettings(dsn=messaging_dsn, pool_size=1, max_overflow=0))
    yield database
    await database.dispose()


def sqlalchemy_connections(db: Database) -> list[Any]:
    """Every SQLAlchemy connection object made on `db`'s engine from now on (a session's
    first statement makes one)."""
    made: list[Any] = []
    event.listen(db.engine.sync_engine, "engine_connect", made.append)
    return made


async def rows(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def test_an_event_whose_handler_only_adds_events_makes_no_session(
    one_connection, messaging_dsn
):
    db = one_connection
    follow_up = new_event(CaseWithdrawn(case_id=uuid.uuid4()))

    async def forward(event, uow) -> None:
        await uow.outbox.add(follow_up, topic="follow-ups")

    consumer = EventConsumer("test.uow", db, None)  # type: ignore[arg-type]  # no dead letters
    consumer.handles(CaseWithdrawn)(forward)
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    made = sqlalchemy_connections(db)
    assert await consumer._apply(applied, forward) == "ok"
    assert await consumer._apply(applied, forward) == "duplicate"

    # The inbox row, the outbox row and the commit went through asyncpg: no SQLAlchemy
    # connection (nor session) was made for either delivery (one each before).
    assert made == []
    outbox = await rows(messaging_dsn, "select id from outbox")
    assert [row["id"] for row in outbox] == [follow_up.id]
    inbox = await rows(messaging_dsn, "select event_id from inbox")
    assert [row["event_id"] for row in inbox] == [applied.id]


async def test_a_handlers_session_runs_in_the_inbox_rows_transaction(one_connection, messaging_dsn):
    db = one_connection
    seen: dict[str, Any] = {}

    async def handler(event, uow) -> None:
        await record_effect(event, uow)
        # The inbox row is this transaction's: the session sees it, with the same xid.
        seen["inbox_xid"] = await uow.session.scalar(
            text("select xmin::text from inbox where event_id = :e"), {"e": event.id}
        )
        seen["xid"] = await uow.session.scalar(text("select pg_current_xact_id()::xid::text"))

    consumer = EventConsumer("test.uow", db, None)  # type: ignore[arg-type]  # no dead letters
    consumer.handles(CaseWithdrawn)(handler)
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    assert await consumer._apply(applied, handler) == "ok"
    assert seen["inbox_xid"] is not None and seen["inbox_xid"] == seen["xid"]
    effects = await rows(messaging_dsn, "select event_id from applied_effect")
    assert [row["event_id"] for row in effects] == [applied.id]


async def test_after_the_commit_a_session_write_commits_nothing_by_itself(
    one_connection, messaging_dsn
):
    db = one_connection
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    late = uuid.uuid4()
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record("test.uow", applied.id, applied.type)
        await record_effect(applied, uow)
        await uow.commit()
        # Not committed again: rolled back when the block ends (as in any unit of work),
        # never committed by itself on the inbox's connection.
        await uow.session.execute(text("insert into case_state values (:id, 'x')"), {"id": late})
    assert await rows(messaging_dsn, "select case_id from case_state") == []
    effects = await rows(messaging_dsn, "select event_id from applied_effect")
    assert [row["event_id"] for row in effects] == [applied.id]

    # The connection went back to the pool as it was taken: a plain unit of work's write
    # without a commit is rolled back.
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("insert into case_state values (:id, 'x')"), {"id": late})
    assert await rows(messaging_dsn, "select case_id from case_state") == []


async def test_a_unit_of_work_rolled_back_after_its_inbox_row_leaves_nothing_and_begins_anew(
    one_connection, messaging_dsn
):
    db = one_connection
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record("test.uow", applied.id, applied.type)
        await record_effect(applied, uow)
        await uow.rollback()
        # A write after the rollback is in a transaction of its own, rolled back with the
        # block: nothing commits by itself.
        await uow.session.execute(
            text("insert into case_state values (:id, 'x')"), {"id": uuid.uuid4()}
        )
    assert await rows(messaging_dsn, "select event_id from inbox") == []
    assert await rows(messaging_dsn, "select event_id from applied_effect") == []
    assert await rows(messaging_dsn, "select case_id from case_state") == []
