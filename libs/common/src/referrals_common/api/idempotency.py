"""`Idempotency-Key` on the APIs' non-idempotent writes, the same in every service.

A write sent with a key claims it, in the write's own transaction, by inserting a row of the
service's key table (primary key: who, which operation, the key; a `request_hash` column): the
first request with a key does the work; the same request again (a retry after a lost answer)
finds the row and answers what the first one did, changing nothing; a different request with
the same key is refused with 422 `validation-failed` (`errors[0].code` `key_reused`). A refused
write rolls its claim back with everything else, so the key is free for the retry. A concurrent
twin waits on the row's insert until the first request commits, then replays it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, TypeVar

from sqlalchemy import Result, Table, inspect, literal_column
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import SQLModel

from referrals_common.api.problems import FieldError, Unprocessable

Record = TypeVar("Record", bound=SQLModel)


def request_fingerprint(*parts: Any) -> str:
    """What makes two requests the same request (the operation, its path ids, its body)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def key_reused() -> Unprocessable:
    """422: the key was already used for a different request."""
    return Unprocessable(
        "This Idempotency-Key was already used for a different request; use a new key.",
        errors=[
            FieldError(
                pointer="#/header/Idempotency-Key",
                location="header",
                message="reused with a different request",
                code="key_reused",
            )
        ],
    )


@functools.cache
def _claim_statement(table: Table) -> ReturningInsert[Any]:
    """The claim of a key in `table`, its values given at execution: built once per table, a
    Core statement on the table (not the ORM's insert of the model, which sorts the values
    through the mapper on every call)."""
    return insert(table).on_conflict_do_nothing().returning(literal_column("1"))


async def claim_or_replay(session: AsyncSession, record: Record) -> Record | None:
    """Claim `record`'s key (None: this request is the first, do the work), or return the record
    of the first request with that key when it was the same request (`request_hash`); raise 422
    `key_reused` when it was not."""
    table = type(record)
    values = record.model_dump()
    inserted: Result[Any] = await session.execute(
        _claim_statement(table.__table__),  # type: ignore[attr-defined]  # every SQLModel table has it
        values,
    )
    if inserted.first() is not None:
        return None
    return await first_request(session, table, values)


async def first_request(
    session: AsyncSession, table: type[Record], values: dict[str, Any]
) -> Record:
    """The record of the first request with the key of `values` (a row of `table`, the key's
    table, whose claim found the key claimed already), when it was the same request
    (`request_hash`); 422 `key_reused` when it was not. For a service that claims a key inside
    a statement of its own (the claim's insert `ON CONFLICT DO NOTHING` inserted nothing)."""
    identity = tuple(values[c.key] for c in inspect(table).primary_key)
    first = await session.get(table, identity)
    assert first is not None  # the claim waited for the first request's commit
    if first.request_hash != values["request_hash"]:  # type: ignore[attr-defined]  # every key table has it
        raise key_reused()
    return first
