"""The inbox: which consumer has applied which event, recorded in the effect's transaction."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from referrals_common.messaging.schema import inbox_table

if TYPE_CHECKING:
    from referrals_common.db import UnitOfWork

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

# What may be written into the statement that opens a transaction as it is: a consumer's name
# and an event type (`records.case-projection`, `referral.case.submitted`). Anything else goes
# as a bound parameter, after a BEGIN of its own.
_LITERAL = re.compile(r"[A-Za-z0-9._:/-]{1,200}")


def _opening_insert(consumer: str, events: list[tuple[UUID, str]]) -> str | None:
    """The inbox rows as one INSERT with its values written in (for `UnitOfWork.open_with`), in
    the order given; None if a name is not plainly safe to write in."""
    if not _LITERAL.fullmatch(consumer) or not all(
        isinstance(event_id, UUID) and _LITERAL.fullmatch(t) for event_id, t in events
    ):
        return None
    # str(UUID) is hex and dashes only; the names matched _LITERAL (no quote, no backslash).
    values = ", ".join(f"('{consumer}', '{event_id}', '{t}')" for event_id, t in events)
    insert = "insert into inbox (consumer, event_id, event_type) values "
    return f"{insert}{values} on conflict do nothing"


def _inserted(status: str) -> int:
    """The row count of an INSERT's status (`INSERT 0 3`)."""
    return int(status.rsplit(" ", 1)[-1])


class Inbox:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def record(self, consumer: str, event_id: UUID, event_type: str) -> bool:
        """Record that `consumer` applies `event_id` now; False if it already had.

        A concurrent delivery of the same event to another replica blocks on the primary key
        until this transaction ends, then sees the row: only one of them applies the effect.
        As the unit of work's first statement, it goes with the transaction's BEGIN (one round
        trip for both)."""
        opening = _opening_insert(consumer, [(event_id, event_type)])
        if opening is not None:
            status = await self._uow.open_with(opening)
            if status is not None:
                return _inserted(status) == 1
        result = await self._uow.session.execute(
            _RECORD, {"consumer": consumer, "event_id": event_id, "event_type": event_type}
        )
        return result.first() is not None

    async def record_all(self, consumer: str, events: list[tuple[UUID, str]]) -> set[UUID]:
        """Record that `consumer` applies these (event id, event type)s now, in one statement;
        the ids it had not applied before (an id given twice counts once)."""
        if not events:
            return set()
        distinct = list(dict.fromkeys(events))
        opening = _opening_insert(consumer, distinct)
        if opening is not None:
            status = await self._uow.open_with(opening)
            if status is not None:
                if _inserted(status) == len(distinct):
                    return {event_id for event_id, _ in distinct}
                # Some were applied before (a redelivery): which, the rows this transaction
                # inserted tell (their xmin is its id).
                rows = await self._uow.native.fetch(
                    "select event_id from inbox where consumer = $1 and event_id = any($2::uuid[])"
                    " and xmin = pg_current_xact_id()::xid",
                    consumer,
                    [event_id for event_id, _ in distinct],
                )
                return {row["event_id"] for row in rows}
        result = await self._uow.session.execute(
            _RECORD_ALL,
            {
                "consumer": consumer,
                "event_ids": [event_id for event_id, _ in events],
                "event_types": [event_type for _, event_type in events],
            },
        )
        return {row[0] for row in result}
