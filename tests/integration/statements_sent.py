"""What a block of code sent to PostgreSQL on a `Database`'s connections: the tests that count a
handler's round trips (intake, notifications, records, translation) read it from here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from referrals_common.db import Database

INTROSPECTION = (
    "select current_setting('jit')",
    "with recursive typeinfo_tree",
    "select set_config",
)
"""What asyncpg asks once per connection about a type it has not met yet (`uuid[]`, a table's
composite type, …), in lower case."""


def introspection(statement: str) -> bool:
    """Whether `statement` is one of asyncpg's own look-ups (`INTROSPECTION`)."""
    return statement.lower().startswith(INTROSPECTION)


@dataclass
class Sent:
    """What went to PostgreSQL, in order, each statement on one line: through SQLAlchemy (`orm`,
    as its cursor sends it) and through asyncpg itself (`native`: BEGIN and COMMIT included)."""

    orm: list[str] = field(default_factory=list)
    native: list[str] = field(default_factory=list)


@asynccontextmanager
async def queries_sent(db: Database, *, look_ups: bool = True) -> AsyncIterator[Sent]:
    """The statements sent on `db`'s connections while the block runs (`look_ups=False`: without
    asyncpg's own, `INTROSPECTION`)."""
    sent = Sent()
    logged: list[Any] = []

    def log(query: Any) -> None:
        text = " ".join(query.query.split())
        if look_ups or not introspection(text):
            sent.native.append(text)

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
