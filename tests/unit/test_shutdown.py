"""`referrals_common.shutdown`: one stop event per event loop, set by SIGTERM or SIGINT, that
every long-running role of a process waits on (`referrals-<service> all` runs several)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from referrals_common import shutdown

pytestmark = pytest.mark.unit


def test_every_role_of_a_loop_gets_the_same_event_and_a_new_loop_a_new_one() -> None:
    async def two_roles() -> tuple[asyncio.Event, asyncio.Event]:
        return shutdown.requested(), shutdown.requested()

    first, second = asyncio.run(two_roles())
    assert first is second
    again, _ = asyncio.run(two_roles())
    assert again is not first
    assert not again.is_set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_one_signal_stops_every_role_waiting(sig: signal.Signals) -> None:
    stopped: list[str] = []

    async def role(name: str) -> None:
        await shutdown.requested().wait()
        stopped.append(name)

    async def process() -> None:
        roles = [asyncio.create_task(role(name)) for name in ("api", "consumer", "relay")]
        await asyncio.sleep(0)  # each role has asked for the event
        os.kill(os.getpid(), sig)
        async with asyncio.timeout(5):
            await asyncio.gather(*roles)

    asyncio.run(process())
    assert sorted(stopped) == ["api", "consumer", "relay"]


def test_request_stops_the_roles_without_a_signal_and_outside_the_main_thread() -> None:
    outcome: list[bool] = []

    async def process() -> None:
        waiting = asyncio.create_task(shutdown.requested().wait())
        await asyncio.sleep(0)
        assert not waiting.done()
        shutdown.request()
        async with asyncio.timeout(5):
            await waiting
        outcome.append(True)

    thread = threading.Thread(target=asyncio.run, args=(process(),))
    thread.start()
    thread.join(10)
    assert outcome == [True]
