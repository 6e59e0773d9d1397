"""The transactional outbox: `uow.outbox.add(event)` inside a use case's unit of work."""

from __future__ import annotations

import zlib

from opentelemetry import propagate
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from referrals_common.contracts.envelope import CloudEvent, EventData
from referrals_common.messaging.schema import OUTBOX_SLOTS, outbox_table

# One statement for every call (its rows bound at execution): built once, not a new construct
# whose cache key SQLAlchemy works out again for every event.
_ADD = insert(outbox_table)


def slot_of(aggregate_id: str) -> int:
    """The relay work slot of an aggregate: stable across processes and restarts."""
    return zlib.crc32(aggregate_id.encode()) % OUTBOX_SLOTS


class Outbox:
    """Events waiting to be published, written in the caller's transaction.

    The current trace context is stored with each row, so the relay's publish and every
    consumer's span continue the trace of the request that caused the event.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, event: CloudEvent[EventData], *, topic: str | None = None) -> None:
        """Queue `event` for publication to `topic` (default: where its contract sends it)."""
        await self.add_all([event], topic=topic)

    async def add_all(
        self, events: list[CloudEvent[EventData]], *, topic: str | None = None
    ) -> None:
        if not events:
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
        await self._session.execute(_ADD, rows[0] if len(rows) == 1 else rows)
