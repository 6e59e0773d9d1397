"""A stack (Kafka, MinIO, PostgreSQL) or the whole platform started for one benchmark run, in a
temporary directory removed afterwards, and the services' processes started on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from _harness.processes import wait_healthy
from devstack import stack as stack_mod
from devstack.process import free_port, spawn, stop_group

SETTLE_S = 1.0
"""A service process under measurement freezes what it built while starting this many seconds
after its start (`referrals_common.heap`; 5 s when deployed), and `api` waits for that before
it hands the process over: its one full collection (50-150 ms) is start-up, not part of what a
short measurement should time."""

QUIET = {
    "REFERRALS_TELEMETRY__LOG_LEVEL": "WARNING",
    "OTEL_TRACES_EXPORTER": "none",
    "REFERRALS_HEAP_SETTLE_AFTER_S": f"{SETTLE_S:g}",
}
"""For a service process under measurement: warnings only, no traces exported, its heap settled
soon after start."""


def start_stack(prefix: str, databases: tuple[str, ...]) -> tuple[Path, stack_mod.StackInfo]:
    """A stack in a new temporary directory (its parts under `stack/`), with `databases`."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    return tmp, stack_mod.start(tmp / "stack", Console(stderr=True), databases=databases)


def remove_stack(tmp: Path, info: stack_mod.StackInfo) -> None:
    """Stop a stack of `start_stack` and remove its directory (the services' logs with it)."""
    stack_mod.stop(info)
    stack_mod.purge(tmp)


@contextlib.contextmanager
def own_stack(prefix: str, databases: tuple[str, ...]) -> Iterator[tuple[Path, Any]]:
    """(temporary directory, StackInfo) of a stack started for the block, then removed."""
    tmp, info = start_stack(prefix, databases)
    try:
        yield tmp, info
    finally:
        remove_stack(tmp, info)


@contextlib.asynccontextmanager
async def own_stack_async(prefix: str, databases: tuple[str, ...]) -> AsyncIterator[Any]:
    """`own_stack` in a coroutine: started and removed in a thread (the stack's start runs an
    event loop of its own)."""
    tmp, info = await asyncio.to_thread(start_stack, prefix, databases)
    try:
        yield tmp, info
    finally:
        await asyncio.to_thread(remove_stack, tmp, info)


def service(
    name: str, role: str, env: dict[str, str], log: Path, *args: str
) -> subprocess.Popen[bytes]:
    """`referrals-<name> <role> <args>` as a process of its own session, output to `log`."""
    return spawn([sys.executable, "-m", f"referrals_{name}.cli", role, *args], log=log, env=env)


def api(
    name: str, env: dict[str, str], folder: Path, *args: str, timeout: float = 240
) -> tuple[subprocess.Popen[bytes], str]:
    """`referrals-<name> api` on a free port, once it answers /health: (process, base URL). Its
    log is `folder`/<name>.log; the process is stopped again if it never becomes healthy."""
    port = free_port()
    log = folder / f"{name}.log"
    proc = service(name, "api", env, log, "--port", str(port), *args)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, log, timeout)
    except BaseException:
        stop_group(proc.pid)
        raise
    # Healthy means its lifespan has started, and with it the timer of its heap's settling.
    settle = env.get("REFERRALS_HEAP_SETTLE_AFTER_S")
    if settle:
        time.sleep(float(settle) + 0.5)
    return proc, base


def create_client(env: dict[str, str], name: str) -> str:
    """A new front end's API key from intake's CLI (`referrals-intake create-client`)."""
    out = subprocess.run(
        [sys.executable, "-m", "referrals_intake.cli", "create-client", name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


@contextlib.asynccontextmanager
async def own_platform(
    attach: bool,
    root: str | None,
    keep: bool,
    prefix: str,
    env: Callable[[Path], dict[str, str]],
    processes: str = "service",
    trace_viewer: bool = False,
) -> AsyncIterator[tuple[Any, Any]]:
    """(StackInfo, PlatformInfo): the running `make up` platform in `root` (`attach`), or a
    stack and every service's processes (no trace viewer) started in a temporary directory,
    with `env(directory)` set first; stopped afterwards and removed unless `keep`. `processes`
    is `devstack.platform.start`'s: one per service, as `make up` runs them, or one per role."""
    from devstack import platform as platform_mod
    from devstack.platform import PlatformInfo

    if attach:
        where = stack_mod.resolve_root(root)
        stack, plat = stack_mod.StackInfo.load(where), PlatformInfo.load(where)
        if stack is None or plat is None or not all(plat.alive().values()):
            raise SystemExit(f"no running platform in {where} (make up)")
        yield stack, plat
        return
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(env(tmp))
    stack = await asyncio.to_thread(stack_mod.start, tmp / "stack", Console(stderr=True))
    try:
        plat = await asyncio.to_thread(
            platform_mod.start,
            stack,
            Console(stderr=True),
            trace_viewer=trace_viewer,
            processes=processes,
        )
    except BaseException:
        await asyncio.to_thread(stack_mod.stop, stack)
        raise
    try:
        yield stack, plat
    finally:
        await asyncio.to_thread(platform_mod.stop, plat)
        await asyncio.to_thread(stack_mod.stop, stack)
        if keep:
            Console().print(f"kept {tmp} (services' logs in {tmp / 'stack' / 'services'})")
        else:
            await asyncio.to_thread(stack_mod.purge, tmp)
