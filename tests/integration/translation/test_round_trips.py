"""What translation asks PostgreSQL, counted (issue 25, cost per case): the lock of a case it
knows is one statement (the row is there for every event but a case's first), a new case's row
is created and locked. Counted as SQLAlchemy sends them (`before_cursor_execute`)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event

from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_translation.main import MIGRATIONS
from referrals_translation.repository import TranslationRepository

pytestmark = pytest.mark.integration


async def test_a_known_cases_lock_is_one_statement(new_database):
    dsn = await new_database("translation")
    await upgrade_async(dsn, MIGRATIONS)
    db = Database(PostgresSettings(dsn=dsn))
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement.split()[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        case_id = uuid.uuid4()
        async with db.unit_of_work() as uow:
            created = await TranslationRepository(uow.session).locked_case(case_id)
            await uow.commit()
        assert (created.case_id, created.acceptable, created.withdrawn) == (case_id, None, False)
        assert sent == ["SELECT", "INSERT", "SELECT"]  # seen missing: inserted, then locked

        sent.clear()
        async with db.unit_of_work() as uow:
            known = await TranslationRepository(uow.session).locked_case(case_id)
            await uow.commit()
        assert known.case_id == case_id
        assert sent == ["SELECT"]  # SELECT … FOR UPDATE, nothing inserted
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
        await db.dispose()
