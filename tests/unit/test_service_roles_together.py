"""`referrals-<service> all`: a service's long-running roles in one process
(`referrals_common.service_cli.run_together`). One stop ends them all; a role that fails or ends
on its own stops the others and the process, so it never serves with a role missing."""

from __future__ import annotations

import asyncio

import pytest

from referrals_common.service_cli import ServiceCli, run_together

pytestmark = pytest.mark.unit


async def _role(stop: asyncio.Event, log: list[str], name: str, *, cleanup: float = 0.0) -> None:
    await stop.wait()
    await asyncio.sleep(cleanup)  # a consumer finishing its batch
    log.append(name)


def test_one_stop_ends_every_role_after_its_own_cleanup() -> None:
    log: list[str] = []

    async def process() -> None:
        stop = asyncio.Event()
        roles = {n: _role(stop, log, n, cleanup=0.01) for n in ("api", "consumer", "relay")}
        asyncio.get_running_loop().call_later(0.05, stop.set)
        await run_together(roles, stop)

    asyncio.run(process())
    assert sorted(log) == ["api", "consumer", "relay"]


def test_a_failing_role_stops_the_others_and_its_error_is_raised() -> None:
    log: list[str] = []

    async def broken() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("the broker is gone")

    async def process() -> None:
        stop = asyncio.Event()
        await run_together({"api": _role(stop, log, "api"), "consumer": broken()}, stop)

    with pytest.raises(ConnectionError, match="broker"):
        asyncio.run(process())
    assert log == ["api"]  # stopped cleanly, not abandoned


def test_a_role_that_ends_unasked_is_an_error() -> None:
    async def quitter() -> None:
        await asyncio.sleep(0.01)

    async def process() -> None:
        stop = asyncio.Event()
        await run_together({"relay": quitter(), "api": _role(stop, [], "api")}, stop)

    with pytest.raises(RuntimeError, match="relay ended without being asked to stop"):
        asyncio.run(process())


def test_a_role_that_does_not_stop_in_time_is_cancelled() -> None:
    cancelled: list[bool] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def process() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, stop.set)
        roles = {"api": _role(stop, [], "api"), "translation": stubborn()}
        async with asyncio.timeout(5):
            await run_together(roles, stop, grace=0.05)

    asyncio.run(process())
    assert cancelled == [True]


def test_all_names_every_role_it_runs_including_the_services_own() -> None:
    cli = ServiceCli(
        "partners", dict, package="referrals_partners", default_port=8004, consumer_help="c"
    )

    async def scheduler(settings: object) -> None:
        return None

    cli.long_running("scheduler", scheduler, "deadlines")
    doc = cli._all.__doc__ or ""
    assert "api, consumer, relay, scheduler" in doc
    assert "scheduler" in cli.own_roles
    without_api = ServiceCli(
        "notifications",
        dict,
        package="referrals_notifications",
        default_port=None,
        consumer_help="c",
    )
    assert "in this one process: consumer, relay " in (without_api._all.__doc__ or "")


def test_all_takes_host_and_port_only_where_there_is_an_api() -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    with_api = ServiceCli(
        "intake", dict, package="referrals_intake", default_port=8001, consumer_help="c"
    )
    without_api = ServiceCli(
        "translation", dict, package="referrals_translation", default_port=None, consumer_help="c"
    )
    assert "--port" in runner.invoke(with_api.app, ["all", "--help"]).output
    refused = runner.invoke(without_api.app, ["all", "--port", "9000"])
    assert refused.exit_code != 0  # an option that would change nothing is refused, not ignored
