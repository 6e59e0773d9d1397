"""The ops screen's part of the web application's database on real PostgreSQL (migration 0003):
operators are staff rows with the role `ops`, made and disabled with `referrals-web ops …`, never
mixed up with a center's staff; what an operator did is kept in `ops_actions`, newest first; an
ops session is never loaded in another realm."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_web.cli import app as cli
from referrals_web.main import MIGRATIONS
from referrals_web.models import utcnow
from referrals_web.repository import (
    OpsAction,
    PostgresCenterKeyStore,
    PostgresOpsAudit,
    PostgresSessionStore,
    PostgresStaffDirectory,
)
from referrals_web.sessions import OPS, STAFF, Sessions
from referrals_web.staff import OPS_ROLE, CenterKeys, StaffError, add_operator, add_staff
from tests.unit.web.fake_platform import CENTER, CENTER_KEY

pytestmark = pytest.mark.integration

SECRET = "a-test-secret-value-for-the-ops-screen"


@pytest.fixture
async def dsn(new_database) -> str:  # type: ignore[no-untyped-def]
    made = await new_database("web")
    await upgrade_async(made, MIGRATIONS)
    return made  # type: ignore[no-any-return]


async def test_operators_and_their_actions_round_trip(dsn: str) -> None:
    db = Database(PostgresSettings(dsn=dsn))
    try:
        directory = PostgresStaffDirectory(db)
        operator, new = await add_operator(directory, email="Olha@Ops.Example", name="Olha")
        assert new and (await directory.get(operator.id)) == operator
        assert operator.role == OPS_ROLE and operator.email == "olha@ops.example"
        keys = CenterKeys(PostgresCenterKeyStore(db), SECRET)
        with pytest.raises(StaffError):  # an operator's address is not a center's account
            await add_staff(
                directory,
                keys,
                email="olha@ops.example",
                name="O",
                center_code=CENTER,
                key=CENTER_KEY,
            )
        doctor, _ = await add_staff(
            directory,
            keys,
            email="dr@center.example",
            name="Dr",
            center_code=CENTER,
            key=CENTER_KEY,
        )
        assert doctor.role == "center"
        with pytest.raises(StaffError):
            await add_operator(directory, email="dr@center.example", name="Dr")

        audit = PostgresOpsAudit(db)
        now = utcnow()
        for n, action in enumerate(("sign_in", "view_timeline", "replay_dead_letter")):
            await audit.record(
                OpsAction(now + timedelta(seconds=n), operator.id, action, f"target-{n}", "ok")
            )
        assert [a.action for a in await audit.recent(2)] == ["replay_dead_letter", "view_timeline"]

        store = PostgresSessionStore(db)
        ops_sessions = Sessions(store, SECRET, idle=timedelta(minutes=5), realm=OPS)
        session = ops_sessions.new()
        session.staff_id = operator.id
        await ops_sessions.save(session)
        assert (await ops_sessions.load(session.key)).staff_id == operator.id  # type: ignore[union-attr]
        console = Sessions(store, SECRET, idle=timedelta(minutes=5), realm=STAFF)
        assert await console.load(session.key) is None
        assert ops_sessions.cookie_name == "referrals_ops"
    finally:
        await db.dispose()


def test_the_ops_cli_adds_lists_and_disables_operators(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFERRALS_WEB_POSTGRES__DSN", dsn)
    monkeypatch.setenv("REFERRALS_WEB_SESSION_SECRET", SECRET)
    runner = CliRunner()
    added = runner.invoke(cli, ["ops", "add", "--email", "olha@ops.example", "--name", "Olha"])
    assert added.exit_code == 0 and "added operator olha@ops.example" in added.output
    again = runner.invoke(cli, ["ops", "add", "--email", "olha@ops.example", "--name", "Olha O."])
    assert again.exit_code == 0 and "updated operator" in again.output
    listed = runner.invoke(cli, ["ops", "list"])
    assert "olha@ops.example\tOlha O.\tactive" in listed.output
    assert "no staff accounts" in runner.invoke(cli, ["staff", "list"]).output
    nobody = runner.invoke(cli, ["ops", "disable", "--email", f"{uuid4().hex}@ops.example"])
    assert nobody.exit_code == 2
    off = runner.invoke(cli, ["ops", "disable", "--email", "olha@ops.example"])
    assert off.exit_code == 0 and "disabled operator" in off.output
    assert "\tdisabled" in runner.invoke(cli, ["ops", "list"]).output
