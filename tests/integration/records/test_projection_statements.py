"""What records' consumer asks PostgreSQL per event of its projections, counted (issue 25, cost
per case): a case's status and an offered referral are one statement each, through asyncpg itself
in the transaction the inbox opened (SQLAlchemy's events do not see them), and no ORM session is
made for them. Their rules hold on that path as on the session's (tests/integration/records/
test_documents.py): withdrawal is final, a referral first heard of after it is born closed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from referrals_common.contracts import CaseStatus
from referrals_common.db import Database, UnitOfWork
from tests.integration.statements_sent import queries_sent

from .test_documents import rows

pytestmark = pytest.mark.integration

CONSUMER = "records.projections"


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
    native = [query.lower() for query in sent.native]
    assert [query.split()[0] for query in native] == ["begin;", "insert", "commit"] * 2
    assert native[0].startswith("begin; insert into inbox")
    assert "insert into case_states" in native[1]
    assert "insert into center_referrals" in native[4]
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
