"""The transactional outbox: `uow.outbox.add(event)` inside a use case's unit of work."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from opentelemetry import propagate
from sqlalchemy import Text, bindparam, cast, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.dml import Insert

from referrals_common.contracts.envelope import CloudEvent, EventData
from referrals_common.messaging.schema import OUTBOX_SLOTS, outbox_table

if TYPE_CHECKING:
    from referrals_common.db import UnitOfWork

# One statement for every call (its rows bound at execution): built once, not a new construct
# whose cache key SQLAlchemy works out again for every event.
_ADD = insert(outbox_table)

# The same rows through asyncpg itself, in a transaction the unit of work opened (`native`):
# asyncpg prepares it once per connection; SQLAlchemy's own work per execution (its connection
# object, parameter processing, result) is more CPU than the round trip.
_ADD_ONE_NATIVE = """
insert into outbox (id, aggregate_id, slot, topic, event_type, payload, headers)
values ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)
"""
# Several rows: unnest keeps the order given, so the rows' `seq` is the events' order. (Its
# array parameters cost asyncpg a look-up of their types once per connection.)
_ADD_NATIVE = """
insert into outbox (id, aggregate_id, slot, topic, event_type, payload, headers)
select r.id, r.aggregate_id, r.slot, r.topic, r.event_type, r.payload::jsonb, r.headers::jsonb
from unnest($1::uuid[], $2::text[], $3::int2[], $4::text[], $5::text[], $6::text[], $7::text[])
     as r(id, aggregate_id, slot, topic, event_type, payload, headers)
"""


def slot_of(aggregate_id: str) -> int:
    """The relay work slot of an aggregate: stable across processes and restarts."""
    return zlib.crc32(aggregate_id.encode()) % OUTBOX_SLOTS


OutboxColumns = tuple[list[UUID], list[str], list[int], list[str], list[str], list[str], list[str]]
"""The outbox's columns of some events, each a list in the events' order: id, aggregate_id,
slot, topic, event_type, payload and headers (the last two as JSON text)."""

OUTBOX_COLUMN_NAMES = ("id", "aggregate_id", "slot", "topic", "event_type", "payload", "headers")
"""The outbox's columns as `outbox_columns` gives them, in its order."""


def outbox_columns(
    events: Sequence[CloudEvent[EventData]], topic: str | None = None
) -> OutboxColumns:
    """The outbox rows of `events` by column (`OutboxColumns`), with the current trace context
    in their headers, as `Outbox.add_all` writes them through asyncpg: for a service's own
    statement that writes them with the changes they announce (in the same transaction)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    keys = [str(event.case_id) for event in events]
    return (
        [event.id for event in events],
        keys,
        [slot_of(key) for key in keys],
        [topic or event.data.publish_topic() for event in events],
        [event.type for event in events],
        [event.model_dump_json() for event in events],
        [json.dumps(headers)] * len(events),
    )


def outbox_insert(count: int) -> Insert:
    """An INSERT of `count` outbox rows whose values are the bound parameters
    `out<i>_<column>` (payload and headers as JSON text, cast by PostgreSQL): for a service's
    own statement that writes events with the changes they announce, as a data-modifying CTE
    of it; `outbox_parameters` gives the values."""
    return insert(outbox_table).values(
        [
            {
                name: cast(bindparam(f"out{i}_{name}", type_=Text()), JSONB)
                if name in ("payload", "headers")
                else bindparam(f"out{i}_{name}", type_=outbox_table.c[name].type)
                for name in OUTBOX_COLUMN_NAMES
            }
            for i in range(count)
        ]
    )


def outbox_parameters(
    events: Sequence[CloudEvent[EventData]], topic: str | None = None
) -> dict[str, Any]:
    """The values of `outbox_insert(len(events))`'s parameters: `events`' rows
    (`outbox_columns`)."""
    columns: tuple[list[Any], ...] = outbox_columns(events, topic)
    return {
        f"out{i}_{name}": value
        for name, column in zip(OUTBOX_COLUMN_NAMES, columns, strict=True)
        for i, value in enumerate(column)
    }


class Outbox:
    """Events waiting to be published, written in the caller's transaction.

    The current trace context is stored with each row, so the relay's publish and every
    consumer's span continue the trace of the request that caused the event.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def add(self, event: CloudEvent[EventData], *, topic: str | None = None) -> None:
        """Queue `event` for publication to `topic` (default: where its contract sends it)."""
        await self.add_all([event], topic=topic)

    async def add_all(
        self, events: list[CloudEvent[EventData]], *, topic: str | None = None
    ) -> None:
        if not events:
            return
        if self._uow.native is not None:
            await self._add_native(events, topic)
            return
        headers: dict[str, str] = {}
        propagate.inject(headers)
        rows = []
        for event in events:
            target = topic or event.data.publish_topic()
            key = str(event.case_id)
            rows.append(
                {
                    "id": event.id,
                    "aggregate_id": key,
                    "slot": slot_of(key),
                    "topic": target,
                    "event_type": event.type,
                    "payload": event.model_dump(mode="json"),
                    "headers": headers,
                }
            )
        # One row (the usual case) as a plain execute: a list, even of one, takes SQLAlchemy's
        # executemany path.
        await self._uow.session.execute(_ADD, rows[0] if len(rows) == 1 else rows)

    async def _add_native(self, events: list[CloudEvent[EventData]], topic: str | None) -> None:
        columns = outbox_columns(events, topic)
        if len(events) == 1:
            await self._uow.native.execute(_ADD_ONE_NATIVE, *(column[0] for column in columns))
        else:
            await self._uow.native.execute(_ADD_NATIVE, *columns)
