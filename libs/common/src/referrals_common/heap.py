"""What a long-running service process holds for its whole life is kept out of the garbage
collector's reach once the process has started.

A service process builds most of its objects while it starts: its own modules, the FastAPI app
and its routes, SQLAlchemy's mappers, pydantic's validators, the OpenTelemetry providers, the
Kafka clients. They live as long as the process, but CPython's cyclic collector walks every one
of them on each full (oldest generation) collection, and such a collection comes whenever the
objects that survived younger ones reach a quarter of those already old. Measured on a consumer
carrying 200 events a second (`bench/messaging.py --hop-only`), a full collection took 76 to
146 ms, during which no event moved: the slowest hundredth of the hop was those pauses.

`settle_soon()` therefore schedules, a few seconds after start (`SETTLE_AFTER_S`, when the app
has started and the consumers have joined their groups), one `gc.collect()` then `gc.freeze()`:
what is alive then moves to the permanent generation, which collections skip. Objects made
later (requests, events, sessions) are collected as before, and a frozen object that becomes
garbage is still freed by its reference count; only a reference cycle among frozen objects
would stay (the start-up objects are kept for the process's life anyway). The launcher of
`make up` freezes its preloaded libraries before it forks, and translation's reading workers
theirs; this covers what each process builds after that.

The services' command lines turn it on (`turn_on()`, in `referrals_common.service_cli`: every
role, and uvicorn's API workers through the environment they inherit); a library user or a test
process that builds an app is left alone. `REFERRALS_HEAP_SETTLE_AFTER_S` sets the delay; 0 or
less turns the freeze off (to compare, or to rule it out when chasing a fault).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import Final

log = logging.getLogger(__name__)

SETTLE_AFTER_S: Final = 5.0
"""Seconds after a process's event loop starts before what it holds is frozen: long enough for
the API's start-up and the consumers' first assignment on a small machine."""

_pending: asyncio.TimerHandle | None = None  # the settle scheduled in this process, if any


ENV: Final = "REFERRALS_HEAP_SETTLE_AFTER_S"


def turn_on() -> None:
    """This process and those it starts settle their heaps (`SETTLE_AFTER_S` unless `ENV`
    already says otherwise)."""
    os.environ.setdefault(ENV, f"{SETTLE_AFTER_S:g}")


def settle_after_s() -> float:
    """The delay before the freeze, from `ENV`; 0 (never) where it is unset or not a number."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        log.warning("%s=%r is not a number: the heap is not settled", ENV, raw)
        return 0.0


def settle() -> int:
    """Collect once, then move every object alive to the permanent generation; the number of
    objects frozen in all."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap settled: %d objects out of the garbage collector's reach", frozen)
    return frozen


def settle_soon() -> asyncio.TimerHandle | None:
    """On the running loop, `settle()` once after `settle_after_s()`; nothing if it is not
    turned on or a settle is already pending in this process (the API's lifespan and the
    process's runner both ask, in `all`). The handle, to cancel it, or None."""
    global _pending
    delay = settle_after_s()
    if delay <= 0 or (_pending is not None and not _pending.cancelled()):
        return None

    def fire() -> None:
        global _pending
        _pending = None
        settle()

    _pending = asyncio.get_running_loop().call_later(delay, fire)
    return _pending
