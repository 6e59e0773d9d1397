"""The inbox: which consumer has applied which event, recorded in the effect's transaction."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from referrals_common.messaging.schema import inbox_table

# One statement for every event (its parameters bound at execution): built and compiled once,
# not a new construct whose cache key SQLAlchemy works out again for every event.
_RECORD = insert(inbox_table).on_conflict_do_nothing().returning(inbox_table.c.event_id)


# Many events at once, in the order given; a key given twice is inserted once.
_RECORD_ALL = text(
    """
    insert into inbox (consumer, event_id, event_type)
    select :consumer, e.event_id, e.event_type
    from unnest(cast(:event_ids as uuid[]), cast(:event_types as text[]))
         with ordinality as e(event_id, event_type, position)
    order by e.position
    on conflict do nothing
    returning event_id
    """
)


class Inbox:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(self, consumer: str, event_id: UUID, event_type: str) -> bool:
        """Record that `consumer` applies `event_id` now; False if it already had.

        A concurrent delivery of the same event to another replica blocks on the primary key
        until this transaction ends, then sees the row: only one of them applies the effect.
        """
        result = await self._session.execute(
            _RECORD, {"consumer": consumer, "event_id": event_id, "event_type": event_type}
        )
        return result.first() is not None

    async def record_all(self, consumer: str, events: list[tuple[UUID, str]]) -> set[UUID]:
        """Record that `consumer` applies these (event id, event type)s now, in one statement;
        the ids it had not applied before (an id given twice counts once)."""
        if not events:
            return set()
        result = await self._session.execute(
            _RECORD_ALL,
            {
                "consumer": consumer,
                "event_ids": [event_id for event_id, _ in events],
                "event_types": [event_type for _, event_type in events],
            },
        )
        return {row[0] for row in result}
