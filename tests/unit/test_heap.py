"""A service process freezes what it holds once started (`referrals_common.heap`): turned on by
the services' command lines only, once per loop, a few seconds in."""

from __future__ import annotations

import asyncio
import gc

import pytest
from fastapi import APIRouter

from referrals_common import heap, service_cli
from referrals_common.service_app import create_service_app

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def thawed():
    """Each test starts and ends with nothing frozen in this (test) process."""
    gc.unfreeze()
    yield
    gc.unfreeze()


async def _frozen_after(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return gc.get_freeze_count()


def test_a_process_the_command_line_did_not_start_is_left_alone(monkeypatch):
    monkeypatch.delenv(heap.ENV, raising=False)

    async def main() -> tuple[asyncio.TimerHandle | None, int]:
        return heap.settle_soon(), await _frozen_after(0.05)

    handle, frozen = asyncio.run(main())
    assert handle is None
    assert frozen == 0
    assert heap.settle_after_s() == 0.0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_zero_or_nonsense_turns_it_off(monkeypatch, value):
    monkeypatch.setenv(heap.ENV, value)
    assert heap.settle_after_s() <= 0

    async def main() -> asyncio.TimerHandle | None:
        return heap.settle_soon()

    assert asyncio.run(main()) is None


def test_a_role_run_by_the_service_command_line_is_frozen_once_started(monkeypatch):
    """`service_cli.run` is what every long-running role (and `all`) runs through: a few
    seconds in, what the process holds is out of the collector's reach."""
    monkeypatch.setenv(heap.ENV, "0.05")
    before = gc.get_freeze_count()
    frozen = service_cli.run(_frozen_after(0.3))
    assert before == 0
    assert frozen > 1000  # the interpreter's modules at least
    assert gc.get_count()[2] < 1000  # the oldest generation was emptied into the frozen one


def test_turn_on_sets_the_default_delay_for_this_process_and_its_children(monkeypatch):
    monkeypatch.delenv(heap.ENV, raising=False)
    heap.turn_on()
    assert heap.settle_after_s() == heap.SETTLE_AFTER_S
    monkeypatch.setenv(heap.ENV, "2.5")
    heap.turn_on()  # what an operator set stays
    assert heap.settle_after_s() == 2.5


def test_a_settle_is_scheduled_once_per_process(monkeypatch):
    """In `all`, the runner and the API's lifespan both ask: one freeze is scheduled."""
    monkeypatch.setenv(heap.ENV, "0.05")

    async def main() -> tuple[bool, bool, int]:
        first, second = heap.settle_soon(), heap.settle_soon()
        return first is not None, second is None, await _frozen_after(0.2)

    first, second_refused, frozen = asyncio.run(main())
    assert first and second_refused
    assert frozen > 1000


def test_an_api_worker_settles_from_its_lifespan(monkeypatch):
    """The `api` command turns it on for uvicorn's workers: the app's lifespan schedules it."""
    monkeypatch.setenv(heap.ENV, "0.05")

    class Runtime:
        pass

    app = create_service_app(
        title="t", description="t", router=APIRouter(), build_runtime=Runtime, runtime=Runtime()
    )

    async def serve_a_while() -> int:
        async with app.router.lifespan_context(app):
            return await _frozen_after(0.3)

    assert asyncio.run(serve_a_while()) > 1000


def test_a_lifespan_that_ends_first_cancels_it(monkeypatch):
    monkeypatch.setenv(heap.ENV, "0.2")

    class Runtime:
        pass

    app = create_service_app(
        title="t", description="t", router=APIRouter(), build_runtime=Runtime, runtime=Runtime()
    )

    async def brief() -> int:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.01)
        return await _frozen_after(0.4)

    assert asyncio.run(brief()) == 0
