"""The web application's own database: its migrations, its session, code and case-reference
stores on real PostgreSQL, and a whole visit through the pages with them (the platform's APIs
faked, as in the unit tests)."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import httpx
import pytest

from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_web.bootstrap import build_runtime
from referrals_web.config import WebSettings
from referrals_web.main import MIGRATIONS, create_app
from referrals_web.models import utcnow
from referrals_web.repository import (
    LoginCode,
    PostgresCaseDirectory,
    PostgresLoginCodeStore,
    PostgresSessionStore,
)
from referrals_web.sessions import Sessions
from tests.unit.web.conftest import RecordingMailer, open_case
from tests.unit.web.fake_platform import API_KEY, INTAKE, PARTNERS, RECORDS, FakePlatform

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(new_database):  # type: ignore[no-untyped-def]
    dsn = await new_database("web")
    await upgrade_async(dsn, MIGRATIONS)
    database = Database(PostgresSettings(dsn=dsn))
    yield database
    await database.dispose()


async def test_a_session_survives_a_round_trip_sealed(db: Database) -> None:
    sessions = Sessions(PostgresSessionStore(db), "a-test-secret-value", idle=timedelta(minutes=60))
    session = sessions.new("en")
    case_id = uuid4()
    session.open_case(case_id, "eyJ.token.sig", utcnow() + timedelta(minutes=15))
    session.set("draft", {"email": "olena@example.org"})

    await sessions.save(session)
    again = await sessions.load(session.key)

    assert again is not None
    assert (again.locale, again.case_id, again.case_token) == ("en", case_id, "eyJ.token.sig")
    assert again.data["draft"] == {"email": "olena@example.org"}
    row = await PostgresSessionStore(db).load(session.row_id)
    assert row is not None and b"olena" not in (row.data_sealed or b"")
    await sessions.end(session)
    assert await sessions.load(session.key) is None
    assert await PostgresSessionStore(db).purge_expired(utcnow() + timedelta(days=1)) == 0


async def test_a_login_code_counts_its_attempts(db: Database) -> None:
    codes = PostgresLoginCodeStore(db)
    case_id = uuid4()
    await codes.put(LoginCode(case_id, "h" * 64, utcnow() + timedelta(minutes=10), 0))

    assert await codes.count_attempt(case_id) == 1
    assert await codes.count_attempt(case_id) == 2
    await codes.put(LoginCode(case_id, "g" * 64, utcnow() + timedelta(minutes=10), 0))
    stored = await codes.get(case_id)
    assert stored is not None and (stored.code_hash, stored.attempts) == ("g" * 64, 0)
    await codes.delete(case_id)
    assert await codes.get(case_id) is None


async def test_case_references_are_found_again(db: Database) -> None:
    directory = PostgresCaseDirectory(db)
    case_id = uuid4()
    await directory.remember(case_id, "3F0F-6C7D")
    await directory.remember(case_id, "3F0F-6C7D")

    assert await directory.find("3F0F-6C7D") == [case_id]
    assert await directory.find("0000-0000") == []


async def test_a_visit_opens_a_case_with_sessions_in_postgres(new_database) -> None:  # type: ignore[no-untyped-def]
    dsn = await new_database("web")
    await upgrade_async(dsn, MIGRATIONS)
    fake = FakePlatform()
    settings = WebSettings(
        intake_url=INTAKE,
        records_url=RECORDS,
        partners_url=PARTNERS,
        front_end_api_key=API_KEY,
        postgres={"dsn": dsn},
    )
    runtime = build_runtime(settings, transport=fake.transport, mailer=RecordingMailer())
    app = create_app(runtime=runtime)
    from tests.unit.web.conftest import Browser

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://web.test"
        ) as client:
            browser = Browser(client)
            created = await open_case(browser)
            page = await browser.get("/case")
    finally:
        await runtime.close()

    assert created.status_code == 303
    assert page.status_code == 200 and len(fake.cases) == 1
