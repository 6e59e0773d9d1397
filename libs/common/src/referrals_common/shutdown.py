"""One stop signal per process: every long-running role ends when SIGTERM or SIGINT arrives.

    stop = shutdown.requested()   # inside the running event loop
    await stop.wait()

A role used to install its own signal handlers, which is right for a process that runs one role
and wrong for one that runs several (`referrals-<service> all`): an event loop keeps one
handler per signal, so the last role to start would be the only one told to stop. Here the
handlers are installed once per loop, the first time a role asks, and every role of the
process waits on the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import weakref

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
    weakref.WeakKeyDictionary()
)


def requested() -> asyncio.Event:
    """The running loop's stop event, set by SIGTERM or SIGINT (or by `request()`).

    Outside the main thread (a test running a role in a thread of its own) no handler can be
    installed: the event is then set only by `request()`."""
    loop = asyncio.get_running_loop()
    event = _events.get(loop)
    if event is None:
        event = asyncio.Event()
        _events[loop] = event
        for sig in SIGNALS:
            # ValueError/RuntimeError: not the main thread; NotImplementedError: Windows.
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, event.set)
    return event


def request() -> None:
    """Ask every role of this loop to stop, as SIGTERM would."""
    requested().set()
