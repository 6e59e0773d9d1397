"""Fewer round trips, the same guarantees, over real PostgreSQL: the consumer's unit of work opens
its transaction with its inbox rows (one round trip for BEGIN and the inbox), and the relay
commits a claim with the next claim's BEGIN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.db import Database
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.settings import PostgresSettings

from .conftest import record_effect, write_withdrawals

pytestmark = pytest.mark.integration


class Statements:
    """Every statement the engine's connections send: SQLAlchemy's, and what goes through asyncpg
    itself (BEGIN, COMMIT, the native statements)."""

    def __init__(self, db: Database) -> None:
        self.sent: list[str] = []
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._sqlalchemy)
        event.listen(engine, "connect", self._connected)

    def _sqlalchemy(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(" ".join(statement.split()).lower())

    def _connected(self, dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda q: self.sent.append(" ".join(q.query.split()).lower())
        )


@pytest.fixture
async def one_connection(messaging_dsn) -> AsyncIterator[Database]:
    """A database with one connection, so each unit of work reuses the last one's."""
    database = Database(PostgresSettings(dsn=messaging_dsn, pool_size=1, max_overflow=0))
    yield database
    await database.dispose()


async def outbox_rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch("select id, topic, payload, headers from outbox order by seq")
    finally:
        await conn.close()


async def inbox_ids(dsn: str) -> set[uuid.UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        return {row["event_id"] for row in await conn.fetch("select event_id from inbox")}
    finally:
        await conn.close()


async def test_an_event_applied_with_a_follow_up_takes_three_statements_begin_with_the_inbox(
    one_connection, messaging_dsn
):
    db = one_connection
    statements = Statements(db)
    follow_up = new_event(CaseWithdrawn(case_id=uuid.uuid4()))

    async def handler(event, uow) -> None:
        await record_effect(event, uow)
        await uow.outbox.add(follow_up, topic="follow-ups")

    consumer = EventConsumer("test.round-trips", db, None)  # type: ignore[arg-type]
    consumer.handles(CaseWithdrawn)(handler)
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    async with db.unit_of_work():  # the connection opened, its first queries made
        pass
    statements.sent.clear()
    await consumer._apply(applied, handler)

    # BEGIN with the inbox row, the effect, the outbox row, COMMIT (was 5: BEGIN on its own).
    await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once
    assert len(statements.sent) == 4, statements.sent
    # (In no particular order: SQLAlchemy tells its statements before they run, asyncpg after.)
    assert sum(sent.startswith("begin; insert into inbox") for sent in statements.sent) == 1
    assert statements.sent.count("commit") == 1
    rows = await outbox_rows(messaging_dsn)
    assert [(row["id"], row["topic"]) for row in rows] == [(follow_up.id, "follow-ups")]
    assert json.loads(rows[0]["payload"])["id"] == str(follow_up.id)
    assert await inbox_ids(messaging_dsn) == {applied.id}


async def test_a_failing_handler_leaves_no_inbox_row_no_outbox_row_and_a_clean_connection(
    one_connection, messaging_dsn
):
    db = one_connection

    async def failing(event, uow) -> None:
        await record_effect(event, uow)
        await uow.outbox.add(new_event(CaseWithdrawn(case_id=event.case_id)), topic="x")
        raise RuntimeError("the handler fails after its writes")

    consumer = EventConsumer("test.round-trips", db, None, attempts=1)  # type: ignore[arg-type]
    consumer.handles(CaseWithdrawn)(failing)
    with pytest.raises(RuntimeError):
        await consumer._apply(new_event(CaseWithdrawn(case_id=uuid.uuid4())), failing)
    assert await inbox_ids(messaging_dsn) == set()
    assert await outbox_rows(messaging_dsn) == []

    # The same (only) connection is back in a transaction of SQLAlchemy's own: what a plain unit
    # of work writes and does not commit is rolled back, as ever.
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            text("insert into case_state values (:id, 'x')"), {"id": uuid.uuid4()}
        )
        in_block = await uow.session.scalar(text("select now() = statement_timestamp()"))
    assert in_block is False  # inside a transaction block, now() is the transaction's start
    conn = await asyncpg.connect(messaging_dsn)
    try:
        assert await conn.fetchval("select count(*) from case_state") == 0
    finally:
        await conn.close()


async def test_a_redelivered_event_is_a_duplicate_and_a_batch_applies_only_its_new_events(
    one_connection, messaging_dsn
):
    db = one_connection
    consumer = EventConsumer("test.round-trips", db, None)  # type: ignore[arg-type]
    consumer.handles(CaseWithdrawn)(record_effect)
    old, new = (new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(2))
    assert await consumer._apply(old, record_effect) == "ok"
    assert await consumer._apply(old, record_effect) == "duplicate"

    async with db.unit_of_work() as uow:
        fresh = await uow.inbox.record_all(
            consumer.name, [(old.id, old.type), (new.id, new.type), (new.id, new.type)]
        )
        await uow.commit()
    assert fresh == {new.id}
    assert await inbox_ids(messaging_dsn) == {old.id, new.id}


async def test_a_consumer_name_not_safe_to_write_in_goes_as_a_bound_parameter(
    one_connection, messaging_dsn
):
    db = one_connection
    statements = Statements(db)
    name = "it's; drop table inbox; --"
    applied = new_event(CaseWithdrawn(case_id=uuid.uuid4()))
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record(name, applied.id, applied.type) is True
        await uow.commit()
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record(name, applied.id, applied.type) is False
    await asyncio.sleep(0)
    assert not any(name in sent for sent in statements.sent)
    assert await inbox_ids(messaging_dsn) == {applied.id}


async def test_a_relay_claim_is_two_round_trips_stamped_at_the_claim_and_idle_without_a_snapshot(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("relay-trips", partitions=1)
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap)
    await relay.start()
    conn = await asyncpg.connect(messaging_dsn)
    try:
        assert relay._conn is not None
        sent: list[str] = []
        relay._conn.add_query_logger(lambda q: sent.append(" ".join(q.query.split()).lower()))
        await asyncio.sleep(1.0)  # the relay waits between claims: its stamps must not say so
        written = await write_withdrawals(db, [uuid.uuid4()], 3, topic)
        assert await relay.publish_batch() == len(written)
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once

        # The claim, then COMMIT with the next claim's BEGIN (was BEGIN, claim, COMMIT).
        assert len(sent) == 2, sent
        assert sent[1] == "commit; begin"
        rows = await conn.fetch("select created_at, sent_at from outbox")
        assert all(row["sent_at"] >= row["created_at"] for row in rows)
        # Waiting in its open transaction, the relay holds no snapshot (nothing for vacuum to
        # keep) and no transaction id.
        idle = await conn.fetchrow(
            "select state, backend_xid, backend_xmin from pg_stat_activity where pid = $1",
            relay._conn.get_server_pid(),
        )
        assert dict(idle) == {
            "state": "idle in transaction",
            "backend_xid": None,
            "backend_xmin": None,
        }
    finally:
        await conn.close()
        await relay.stop()


async def test_a_relay_whose_publish_fails_leaves_its_rows_unsent_for_the_next_claim(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    topic = await new_topic("relay-fails", partitions=1)
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap)
    await relay.start()
    conn = await asyncpg.connect(messaging_dsn)
    try:
        written = await write_withdrawals(db, [uuid.uuid4()], 2, topic)
        send = relay._send

        async def refused(row: Any) -> Any:
            raise ConnectionError("Kafka is away")

        relay._send = refused  # type: ignore[method-assign]
        with pytest.raises(ConnectionError):
            await relay.publish_batch()
        assert await conn.fetchval("select count(*) from outbox where sent_at is null") == 2
        relay._send = send  # type: ignore[method-assign]
        assert await relay.publish_batch() == len(written)
        assert await conn.fetchval("select count(*) from outbox where sent_at is null") == 0
    finally:
        await conn.close()
        await relay.stop()


async def test_a_relay_whose_idle_transaction_the_server_ends_reconnects_and_publishes(
    db, messaging_dsn, kafka_bootstrap, new_topic
):
    # Between claims the relay's connection is idle in a transaction; a server that ends such
    # sessions (`idle_in_transaction_session_timeout`) only makes it reconnect.
    topic = await new_topic("relay-idle-ended", partitions=1)
    relay = OutboxRelay(messaging_dsn, kafka_bootstrap)
    await relay.start()
    assert relay._conn is not None
    first = relay._conn
    await first.execute("set idle_in_transaction_session_timeout = 300")
    running = asyncio.create_task(relay.run())
    conn = await asyncpg.connect(messaging_dsn)
    try:
        await asyncio.sleep(1.5)  # the server has ended the idle transaction's session by now
        assert (
            first.is_closed()
            or await conn.fetchval(
                "select count(*) from pg_stat_activity where pid = $1", first.get_server_pid()
            )
            == 0
        )
        written = await write_withdrawals(db, [uuid.uuid4()], 3, topic)
        for _ in range(100):
            if await conn.fetchval("select count(*) from outbox where sent_at is null") == 0:
                break
            await asyncio.sleep(0.1)
        assert await conn.fetchval("select count(*) from outbox where sent_at is null") == 0
        assert await conn.fetchval("select count(*) from outbox") >= len(written)
        assert relay._conn is not first
    finally:
        await conn.close()
        await relay.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_batch_whose_handlers_use_no_session_makes_none(one_connection, messaging_dsn):
    """Applied together, each handler sees the database as the previous one left it: a session
    the handlers made is flushed between them, but handlers that went through asyncpg alone (or
    wrote nothing) get no session made for them."""
    from aiokafka import ConsumerRecord

    db = one_connection
    sessions: list[bool] = []

    async def looks(event: Any, uow: Any) -> None:
        sessions.append(uow.has_session)

    consumer = EventConsumer("test.no-session", db, None)  # type: ignore[arg-type]
    consumer.handles(CaseWithdrawn)(looks)
    events = [new_event(CaseWithdrawn(case_id=uuid.uuid4())) for _ in range(3)]
    records = [
        (ConsumerRecord("t", 0, i, 0, 0, b"k", e.to_json(), None, 0, 0, ()), None)
        for i, e in enumerate(events)
    ]
    assert await consumer._apply_together(records)
    assert sessions == [False, False, False]
    assert await inbox_ids(messaging_dsn) >= {e.id for e in events}
