"""Starting, watching and stopping the stack's processes without leaving orphans behind."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import psutil


class StartupError(RuntimeError):
    """A part of the stack did not become ready; the message names the part and its log."""

    def __init__(self, part: str, reason: str, log: Path | None) -> None:
        where = f"\n  log: {log}" if log else ""
        tail = ""
        if log and log.exists():
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tail = "\n  last lines of the log:\n    " + "\n    ".join(lines) if lines else ""
        super().__init__(f"{part} failed to start: {reason}{where}{tail}")
        self.part = part
        self.log = log


FEW_MALLOC_ARENAS: Final = {"MALLOC_ARENA_MAX": "2"}
"""Environment for a process with several threads (a JVM; translation's readers; the thread pools
of the services forked from the launcher, which inherit it): glibc's malloc keeps up to 8 arenas
a core, one grown by each thread that allocates, and what one arena freed does not serve another
thread. Two are plenty at this platform's load. Measured at the platform's fullest moment under
`bench/pipeline.py`'s load, A/B twice: translation's processes 296-300 → 284-292 MiB PSS, Zipkin
163 → 158, Kafka no change (186-194 either way); on its own under 150,000 spans, Zipkin 174 → 162.
"""

LISTEN_PORTS: Final = range(20_000, 32_000)
"""Where listening ports are picked: below Linux's ephemeral range (32768-60999 by default)."""

_handed_out: set[int] = set()
"""Every port `free_port` returned in this process: it is free only until its server binds it."""


def free_port(preferred: int | None = None) -> int:
    """Return `preferred` if nobody listens on it on loopback, else a free port to listen on.

    Not a port the kernel picks with bind(0): those come from the ephemeral range, which every
    outgoing connection also draws from, so a client connecting (to PostgreSQL, to MinIO...)
    between the pick and the server's own bind could take it, and the server failed with
    "Address already in use". Ports below that range are given only to those who ask for them.

    No port is returned twice in one process. The platform picks its five API ports before it
    starts any process and the consumers' metrics ports while it starts them: a metrics port equal
    to an API port not bound yet made a metrics server answer on the API's address (it answers
    every path, `/health` too, so the API looked ready) while the API failed to bind.
    """
    if preferred is not None and preferred not in _handed_out and port_is_free(preferred):
        _handed_out.add(preferred)
        return preferred
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        if port not in ephemeral and port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32_768, 61_000)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so a stop reaches all its children), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            user=user,
            start_new_session=True,
        )


def wait_until(
    part: str,
    ready: Callable[[], bool],
    *,
    pid: int,
    log: Path,
    timeout: float,
    interval: float = 0.2,
) -> None:
    """Poll `ready` until it is true; fail fast with the log's tail when the process dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise StartupError(part, "the process exited", log)
        try:
            if ready():
                return
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    reason = f"not ready after {timeout:.0f} s"
    if last_error is not None:
        reason += f" (last probe error: {last_error!r})"
    raise StartupError(part, reason, log)


def clock() -> float:
    """Seconds since the machine booted: the clock `started_before` compares with. Unlike
    time.time() it does not move when the wall clock is stepped (NTP, a resumed VM), which
    would make a process look started after a moment taken before it."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux: psutil's wall-clock times, as before
        return time.time()


def _started_at(pid: int) -> float:
    """When `pid` started, on `clock()`'s scale: on Linux its start in clock ticks since boot
    (field 22 of /proc/<pid>/stat), which no wall-clock step changes."""
    try:
        time.clock_gettime(time.CLOCK_BOOTTIME)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (AttributeError, OSError):
        return psutil.Process(pid).create_time()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def started_before(pid: int, moment: float) -> bool:
    """Whether `pid` is alive and was started no later than `moment` (a `clock()`): still the
    process a stack started, not a later one given the same pid after ours died (pids are
    recycled). A `moment` of 0 accepts any live process."""
    if not is_alive(pid):
        return False
    try:
        created = _started_at(pid)
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        return False
    return not moment or created <= moment + 1.0


def is_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_group(pid: int, *, timeout: float = 20.0) -> None:
    """Stop a process started by `spawn` and every process of its session: TERM, then KILL."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root, *root.children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(ChildProcessError):
        # Reap our own child so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
