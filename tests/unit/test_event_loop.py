"""Long-running roles run on uvloop unless `REFERRALS_EVENT_LOOP=asyncio` says otherwise."""

from __future__ import annotations

import asyncio

import pytest

from referrals_common.service_cli import ServiceCli, run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_a_long_running_role_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFERRALS_EVENT_LOOP", raising=False)
    assert run(_loop_module()).startswith("uvloop")
    assert ServiceCli.run(_loop_module()).startswith("uvloop")


def test_asyncio_loop_is_kept_when_the_setting_asks_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERRALS_EVENT_LOOP", "asyncio")
    assert run(_loop_module()).startswith("asyncio")
