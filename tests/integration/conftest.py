"""Fixtures for the messaging integration tests: a migrated database, a relay, a consumer."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from referrals_common.contracts import CaseWithdrawn, CloudEvent, new_event
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_common.telemetry import configure_telemetry
from tests.running import consuming

MIGRATIONS = Path(__file__).parent / "messaging_migrations"


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    configure_telemetry(
        "tests", extra_processor=SimpleSpanProcessor(exporter), instrument_libraries=False
    )
    return exporter


@pytest.fixture
async def messaging_dsn(new_database) -> str:
    dsn = await new_database("messaging")
    await upgrade_async(dsn, MIGRATIONS)
    return dsn


@pytest.fixture
async def db(messaging_dsn) -> AsyncIterator[Database]:
    database = Database(PostgresSettings(dsn=messaging_dsn))
    yield database
    await database.dispose()


async def write_withdrawals(
    db: Database, case_ids: list[uuid.UUID], per_case: int, topic: str
) -> list[CloudEvent[CaseWithdrawn]]:
    """Per case, a state change and `per_case` events, each case in one transaction."""
    written = []
    for case_id in case_ids:
        async with db.unit_of_work() as uow:
            await uow.session.execute(
                text(
                    "insert into case_state values (:id, 'withdrawn') "
                    "on conflict (case_id) do update set status = 'withdrawn'"
                ),
                {"id": case_id},
            )
            events = [new_event(CaseWithdrawn(case_id=case_id)) for _ in range(per_case)]
            await uow.outbox.add_all(events, topic=topic)
            await uow.commit()
        written += events
    return written


async def record_effect(event: CloudEvent[CaseWithdrawn], uow: UnitOfWork) -> None:
    await uow.session.execute(
        text("insert into applied_effect (event_id, case_id, detail) values (:e, :c, :d)"),
        {"e": event.id, "c": event.case_id, "d": event.type},
    )


@contextlib.asynccontextmanager
async def running_consumer(
    db: Database,
    bootstrap: str,
    topic: str,
    *,
    name: str | None = None,
    handler=record_effect,
    **options,
) -> AsyncIterator[EventConsumer]:

    def build(dead_letters: DeadLetterPublisher) -> EventConsumer:
        consumer = EventConsumer(
            name or f"test-{uuid.uuid4().hex[:8]}", db, dead_letters, **options
        )
        consumer.handles(CaseWithdrawn)(handler)
        return consumer

    async with consuming(bootstrap, build, topic) as consumer:
        yield consumer


async def effects(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch("select event_id, case_id, detail from applied_effect order by id")
    finally:
        await conn.close()


async def count_effects(dsn: str, expected: int) -> list[asyncpg.Record] | None:
    """The effects once there are at least `expected` of them (a `wait_for` predicate)."""
    rows = await effects(dsn)
    return rows if len(rows) >= expected else None


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll an async predicate until it returns a truthy value; fail with the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")


async def publish(bootstrap: str, *events: CloudEvent[Any], times: int = 1) -> None:
    """Publish events as their producing service would (its topic, keyed by case id), each
    `times` times in a row, as a redelivery would bring them again."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            for _ in range(times):
                await producer.send_and_wait(
                    event.data.publish_topic(), event.to_json(), key=str(event.case_id).encode()
                )
    finally:
        await producer.stop()
