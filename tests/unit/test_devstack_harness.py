"""The harness's own rules, checked without starting anything."""

import socket
from pathlib import Path

import pytest

from devstack.process import StartupError, free_port, port_is_free

pytestmark = pytest.mark.unit


def test_a_skipped_test_fails_the_run_in_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile("import pytest\n\ndef test_x():\n    pytest.skip('no broker')\n")
    result = pytester.runpytest(
        "-p", "devstack", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*skipped tests fail the run in CI*no broker*"])


def test_a_skipped_test_is_only_a_skip_outside_ci(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile("import pytest\n\ndef test_x():\n    pytest.skip('no broker')\n")
    pytester.runpytest(
        "-p", "devstack", "-o", "asyncio_default_fixture_loop_scope=function"
    ).assert_outcomes(skipped=1)


def test_a_preferred_port_in_use_is_replaced_by_a_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = free_port(preferred=taken)
    assert chosen != taken


def test_free_ports_are_not_taken_from_the_ephemeral_range():
    # Outgoing connections draw their local ports from that range: a port picked there could be
    # taken by a client before the server binds it ("Address already in use").
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    low, high = int(ports[0]), int(ports[1])
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high
        assert port_is_free(port)


def test_a_startup_error_shows_the_tail_of_the_log(tmp_path):
    log = tmp_path / "kafka.out"
    log.write_text("\n".join(f"line {i}" for i in range(40)) + "\nFATAL address in use\n")
    err = StartupError("kafka", "the process exited", log)
    assert "kafka failed to start: the process exited" in str(err)
    assert "FATAL address in use" in str(err)
    assert "line 0\n" not in str(err)


def test_no_port_is_handed_out_twice_before_its_server_binds_it():
    # The platform picks its API ports first and its metrics ports while it starts processes: a
    # repeat made a metrics server answer on an API's address (CI saw /v1/ops/centers answered
    # with Prometheus text).
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert free_port(preferred=ports[0]) != ports[0]


def test_the_web_app_gets_its_own_settings_and_none_of_the_services(tmp_path):
    """The patient's web app reads REFERRALS_WEB_* only: the public APIs, the front end's key,
    its own database, the mail sink, htmx; no service's secret reaches its process."""
    from devstack.platform import platform_secrets, web_environment
    from devstack.stack import DATABASES, SERVICES, StackInfo

    assert (*SERVICES, "web") == DATABASES
    stack = StackInfo(
        root=str(tmp_path),
        kafka_bootstrap="127.0.0.1:1",
        s3_endpoint="127.0.0.1:2",
        s3_console="127.0.0.1:3",
        s3_access_key="root",
        s3_secret_key="root-secret",
        postgres_dsn="postgresql://postgres:pw@127.0.0.1:4/postgres",
        smtp="127.0.0.1:2525",
        database_dsns={name: f"postgresql://{name}:pw@127.0.0.1:4/{name}" for name in DATABASES},
    )
    secrets = platform_secrets(tmp_path)
    apis = {
        s: f"http://127.0.0.1:{800 + i}" for i, s in enumerate(("intake", "records", "partners"))
    }
    env = web_environment(
        stack, secrets, apis, "http://127.0.0.1:8010", "rfk_x", tmp_path / "dist", ""
    )
    assert env["REFERRALS_WEB_INTAKE_URL"] == apis["intake"]
    assert env["REFERRALS_WEB_RECORDS_URL"] == apis["records"]
    assert env["REFERRALS_WEB_PARTNERS_URL"] == apis["partners"]
    assert env["REFERRALS_WEB_FRONT_END_API_KEY"] == "rfk_x"
    assert env["REFERRALS_WEB_POSTGRES__DSN"] == stack.database_dsns["web"]
    assert (env["REFERRALS_WEB_SMTP__HOST"], env["REFERRALS_WEB_SMTP__PORT"]) == (
        "127.0.0.1",
        "2525",
    )
    assert env["REFERRALS_WEB_VENDOR_DIR"] == str(tmp_path / "dist")
    assert env["REFERRALS_WEB_SESSION_SECRET"] == secrets["web_session_secret"]
    assert env["REFERRALS_WEB_ENVIRONMENT"] == "development"
    assert env["REFERRALS_WEB_PUBLIC_BASE_URL"] == "http://127.0.0.1:8010"
    foreign = [k for k in env if k.startswith("REFERRALS_") and not k.startswith("REFERRALS_WEB_")]
    assert not foreign
    others = {v for k, v in secrets.items() if k != "web_session_secret"}
    assert not others & set(env.values())


def test_notifications_and_the_web_app_send_texts_to_the_sms_sink_through_the_guard(tmp_path):
    """The stack's SMS sink is both processes' Twilio-compatible provider, the one loopback
    entry of each one's outbound guard; a stack without a sink configures no SMS at all."""
    import json
    import os
    from unittest import mock

    from devstack.parts import SMS_ACCOUNT_SID, SMS_FROM_NUMBER
    from devstack.platform import platform_secrets, web_environment
    from devstack.stack import DATABASES, StackInfo
    from referrals_notifications.config import NotificationsSettings
    from referrals_web.config import WebSettings

    stack = StackInfo(
        root=str(tmp_path),
        kafka_bootstrap="127.0.0.1:1",
        s3_endpoint="127.0.0.1:2",
        s3_console="127.0.0.1:3",
        s3_access_key="root",
        s3_secret_key="root-secret",
        postgres_dsn="postgresql://postgres:pw@127.0.0.1:4/postgres",
        smtp="127.0.0.1:2525",
        sms_url="http://127.0.0.1:11026",
        sms_dir=str(tmp_path / "sms"),
        sms_auth_token="sink-token",
        database_dsns={name: f"postgresql://{name}:pw@127.0.0.1:4/{name}" for name in DATABASES},
    )
    web = web_environment(
        stack,
        platform_secrets(tmp_path),
        {"intake": "", "records": "", "partners": ""},
        "http://127.0.0.1:8010",
        "rfk_x",
        tmp_path / "dist",
        "",
    )
    services = stack.env()
    for prefix, env in (("WEB", web), ("NOTIFICATIONS", services)):
        assert env[f"REFERRALS_{prefix}_SMS__BASE_URL"] == "http://127.0.0.1:11026"
        assert env[f"REFERRALS_{prefix}_SMS__ACCOUNT_SID"] == SMS_ACCOUNT_SID
        assert env[f"REFERRALS_{prefix}_SMS__AUTH_TOKEN"] == "sink-token"
        assert env[f"REFERRALS_{prefix}_SMS__FROM_NUMBER"] == SMS_FROM_NUMBER
        allowed = json.loads(env[f"REFERRALS_{prefix}_OUTBOUND_ALLOWED_TARGETS"])
        assert allowed == ["127.0.0.1:11026"]
    with mock.patch.dict(os.environ, services, clear=True):
        notifications = NotificationsSettings()
    assert notifications.sms is not None
    assert str(notifications.sms.base_url).startswith("http://127.0.0.1:11026")
    assert notifications.outbound_allowed_targets == ["127.0.0.1:11026"]
    with mock.patch.dict(os.environ, web, clear=True):
        web_settings = WebSettings()
    assert web_settings.sms is not None and web_settings.sms.from_number == SMS_FROM_NUMBER
    assert web_settings.outbound_allowed_targets == ["127.0.0.1:11026"]

    stack.sms_url = ""
    assert not [k for k in stack.env() if "_SMS__" in k or "OUTBOUND" in k]
    with mock.patch.dict(os.environ, stack.env(), clear=True):
        assert NotificationsSettings().sms is None  # no sink: SMS off, as before


def test_a_stack_made_before_the_web_app_gets_its_session_secret(tmp_path):
    import json

    from devstack.platform import platform_secrets

    (tmp_path / "platform-secrets.json").write_text(json.dumps({"intake_pepper": "kept"}))
    secrets = platform_secrets(tmp_path)
    assert secrets["intake_pepper"] == "kept"
    assert len(secrets["web_session_secret"]) >= 32
    assert platform_secrets(tmp_path) == secrets
    assert (tmp_path / "platform-secrets.json").stat().st_mode & 0o777 == 0o600


def test_make_test_installs_debians_chromium_when_it_is_missing(monkeypatch):
    """`make test` runs `devstack install`, which installs the browser the browser tests drive
    (Debian's package, as root or through passwordless sudo), and leaves one that is there."""
    from rich.console import Console

    from devstack import install

    commands: list[list[str]] = []
    installed: dict[str, str] = {}
    monkeypatch.setattr(
        install.shutil,
        "which",
        lambda tool: installed.get(tool) or ("/usr/bin/apt-get" if tool == "apt-get" else None),
    )

    def run(console, argv, *, cwd, what, env):
        commands.append(argv)
        if argv[-1] == install.CHROMIUM_PACKAGE:
            installed["chromium"] = "/usr/bin/chromium"

    monkeypatch.setattr(install, "_run_with_progress", run)
    monkeypatch.setattr(install.os, "geteuid", lambda: 1000)
    console = Console(quiet=True)
    assert install.ensure_chromium(console) == Path("/usr/bin/chromium")
    assert commands == [
        ["sudo", "-n", "apt-get", "update", "-q"],
        ["sudo", "-n", "apt-get", "install", "-y", "-q", "chromium"],
    ]
    commands.clear()
    assert install.ensure_chromium(console) == Path("/usr/bin/chromium")
    assert commands == []  # there: nothing installed again
