"""The center console's part of the web application's database: staff accounts, each center's
sealed key, staff codes, the console's record of actions, the staff session realm, and the
staff CLI (`referrals-web staff …`) on real PostgreSQL, then a whole console visit with them
(the platform's APIs faked, as in the unit tests)."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
from typer.testing import CliRunner

from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_web.bootstrap import build_runtime
from referrals_web.cli import app as cli
from referrals_web.config import WebSettings
from referrals_web.main import MIGRATIONS, create_app
from referrals_web.models import staff_login_codes, utcnow
from referrals_web.repository import (
    ConsoleAction,
    LoginCode,
    PostgresCenterKeyStore,
    PostgresConsoleAudit,
    PostgresLoginCodeStore,
    PostgresSessionStore,
    PostgresStaffDirectory,
)
from referrals_web.sessions import STAFF, Sessions
from referrals_web.staff import CenterKeys, add_staff, disable_staff
from tests.unit.web.conftest import RecordingMailer, sign_in_staff
from tests.unit.web.fake_platform import (
    API_KEY,
    CENTER,
    CENTER_KEY,
    INTAKE,
    PARTNERS,
    RECORDS,
    FakePlatform,
)

pytestmark = pytest.mark.integration

SECRET = "a-test-secret-value-for-the-console"


@pytest.fixture
async def dsn(new_database) -> str:  # type: ignore[no-untyped-def]
    made = await new_database("web")
    await upgrade_async(made, MIGRATIONS)
    return made  # type: ignore[no-any-return]


@pytest.fixture
async def db(dsn: str):  # type: ignore[no-untyped-def]
    database = Database(PostgresSettings(dsn=dsn))
    yield database
    await database.dispose()


async def test_a_staff_member_and_the_centers_sealed_key_round_trip(db: Database) -> None:
    directory = PostgresStaffDirectory(db)
    keys = CenterKeys(PostgresCenterKeyStore(db), SECRET)

    member, new = await add_staff(
        directory, keys, email="Dr.Weber@Center.example", name="Dr. Anna Weber",
        center_code=CENTER, key=CENTER_KEY,
    )  # fmt: skip
    again, new_again = await add_staff(
        directory, keys, email="dr.weber@center.example", name="Dr. A. Weber",
        center_code=CENTER, key=None,
    )  # fmt: skip

    assert (new, new_again) == (True, False) and again.id == member.id
    assert (await directory.by_email("DR.WEBER@center.example")).name == "Dr. A. Weber"  # type: ignore[union-attr]
    sealed = await PostgresCenterKeyStore(db).get(CENTER)
    assert sealed is not None and CENTER_KEY.encode() not in sealed
    assert await keys.get(CENTER) == CENTER_KEY
    assert await CenterKeys(PostgresCenterKeyStore(db), "another-secret").get(CENTER) is None
    await disable_staff(directory, "dr.weber@center.example")
    [listed] = await directory.all()
    assert not listed.active


async def test_staff_codes_and_actions_are_kept_apart_from_patients(db: Database) -> None:
    codes = PostgresLoginCodeStore(db, staff_login_codes)
    staff_id, referral_id = uuid4(), uuid4()
    await codes.put(LoginCode(staff_id, "h" * 64, utcnow() + timedelta(minutes=10), 0))
    assert await codes.count_attempt(staff_id) == 1
    assert await PostgresLoginCodeStore(db).get(staff_id) is None  # not a patient's code
    audit = PostgresConsoleAudit(db)
    for action in ("download", "accept"):
        await audit.record(ConsoleAction(utcnow(), staff_id, CENTER, referral_id, action, "ok"))

    assert [a.action for a in await audit.of_referral(referral_id)] == ["download", "accept"]


async def test_a_staff_session_is_never_loaded_as_a_patients(db: Database) -> None:
    store = PostgresSessionStore(db)
    patients = Sessions(store, SECRET, idle=timedelta(minutes=60))
    staff = Sessions(store, SECRET, idle=timedelta(minutes=60), realm=STAFF, default_locale="en")
    session = staff.new()
    session.staff_id = uuid4()
    await staff.save(session)

    loaded = await staff.load(session.key)
    assert loaded is not None and loaded.staff_id == session.staff_id and loaded.locale == "en"
    assert await patients.load(session.key) is None
    patient = patients.new()
    await patients.save(patient)
    assert await staff.load(patient.key) is None


def test_the_staff_cli_takes_the_key_from_the_environment_or_stdin_only(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFERRALS_WEB_POSTGRES__DSN", dsn)
    monkeypatch.setenv("REFERRALS_WEB_SESSION_SECRET", SECRET)
    monkeypatch.delenv("REFERRALS_WEB_CENTER_KEY", raising=False)
    runner = CliRunner()
    add = ["staff", "add", "--email", "dr.weber@center.example", "--center", CENTER]

    refused = runner.invoke(cli, [*add, "--name", "Dr. Anna Weber"], input="")
    assert refused.exit_code == 2 and "no API key is kept" in refused.output
    assert "--key" not in runner.invoke(cli, ["staff", "add", "--help"]).output

    piped = runner.invoke(cli, [*add, "--name", "Dr. Anna Weber"], input=CENTER_KEY + "\n")
    assert piped.exit_code == 0, piped.output
    assert "added dr.weber@center.example" in piped.output and CENTER_KEY not in piped.output

    monkeypatch.setenv("REFERRALS_WEB_CENTER_KEY", CENTER_KEY)
    second = runner.invoke(
        cli,
        ["staff", "add", "--email", "dr.lang@center.example", "--center", CENTER, "--name", "L"],
    )
    assert second.exit_code == 0, second.output
    listed = runner.invoke(cli, ["staff", "list"])
    assert listed.exit_code == 0
    assert "dr.lang@center.example" in listed.output and "key kept" in listed.output
    assert CENTER_KEY not in listed.output
    off = runner.invoke(cli, ["staff", "disable", "--email", "dr.lang@center.example"])
    assert off.exit_code == 0 and "disabled" in off.output


async def test_a_console_visit_with_sessions_and_accounts_in_postgres(dsn: str) -> None:
    fake = FakePlatform()
    referral_id = fake.add_referral()
    settings = WebSettings(
        intake_url=INTAKE,
        records_url=RECORDS,
        partners_url=PARTNERS,
        front_end_api_key=API_KEY,
        session_secret=SECRET,
        postgres={"dsn": dsn},
    )
    mailer = RecordingMailer()
    runtime = build_runtime(settings, transport=fake.transport, mailer=mailer)
    app = create_app(runtime=runtime)
    from tests.unit.web.conftest import Browser

    try:
        await add_staff(
            runtime.staff, runtime.center_keys, email="dr.weber@center-a.example",
            name="Dr. Anna Weber", center_code=CENTER, key=CENTER_KEY,
        )  # fmt: skip
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://web.test"
        ) as client:
            browser = Browser(client)
            await sign_in_staff(browser, mailer)
            page = await browser.get(f"/center/referrals/{referral_id}")
            accepted = await browser.post(
                f"/center/referrals/{referral_id}/accept",
                {"opinion_day": "1", "opinion_month": "1", "opinion_year": "2099"},
            )
        actions = await runtime.console_audit.of_referral(referral_id)
    finally:
        await runtime.close()

    assert page.status_code == 200 and "pathology-report-1.pdf" in page.text
    assert accepted.status_code == 303
    assert [a.action for a in actions] == ["accept"]
