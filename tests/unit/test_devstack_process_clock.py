"""A stack knows its processes by when they started, on a clock that wall-clock steps cannot move.

`devstack.process.started_before` once compared psutil's create_time (boot time + ticks, and the
boot time moves when the wall clock is stepped) with a time.time() taken at start: one forward
step of the clock during a CI run made every process of a live stack look like a stranger's.
"""

from __future__ import annotations

import subprocess
import sys
import time

from devstack import process


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_a_process_started_before_the_moment_is_owned_and_a_later_one_is_not() -> None:
    before = process.clock()
    time.sleep(1.2)  # past the one-second allowance for the clock's resolution
    later = _sleeper()
    try:
        assert process.started_before(later.pid, process.clock())
        assert not process.started_before(later.pid, before)
        assert process.started_before(later.pid, 0.0)  # 0: any live process
    finally:
        later.kill()
        later.wait()
    assert not process.started_before(later.pid, process.clock())


def test_the_clock_is_not_the_wall_clock_so_a_step_of_it_changes_nothing() -> None:
    own_start = process._started_at(process.os.getpid())
    now = process.clock()
    assert own_start <= now + 1.0
    if sys.platform.startswith("linux"):
        # Seconds since boot, not since 1970: a wall-clock step moves time.time() alone.
        assert now < time.time() - 10 * 365 * 86400
