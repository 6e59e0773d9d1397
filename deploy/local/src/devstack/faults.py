"""Infrastructure faults for the chaos tests: restart the broker, take MinIO away, restart
PostgreSQL, each on the same ports, data directory and credentials, so that clients reconnect.

    from devstack import faults

    faults.restart_kafka(stack)                  # SIGKILL the broker, start it again
    faults.restart_kafka(stack, hard=False)      # SIGTERM: a clean (controlled) shutdown
    faults.minio_outage(stack, seconds=20)       # stopped for 20 s, then started again
    faults.restart_postgres(stack)               # fast shutdown (SIGINT), start again

Each function waits until the part answers again, as `stack.start` does (the same probes), then
records the new pid in the `StackInfo` and saves it, so `stack.stop` and `devstack down` stop the
new process. They return how long the part was unreachable, in seconds.

`stop_*` and `start_*` do the two halves separately, for a test that wants to act in between.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
from rich.console import Console

from devstack import install, parts
from devstack.process import clock as process_clock
from devstack.process import port_accepts, spawn
from devstack.stack import Secrets, StackInfo

_quiet = Console(quiet=True)


def _port(address: str) -> int:
    """The port of `host:port`, of `scheme://host:port/...` or of a DSN `…@host:port/db`."""
    host_port = address.rsplit("@", 1)[-1].split("//", 1)[-1].split("/", 1)[0]
    return int(host_port.rsplit(":", 1)[1])


def _kill(info: StackInfo, name: str, sig: signal.Signals, timeout: float) -> None:
    """Send `sig` to the part's process group and wait until all of it is gone (SIGKILL after
    `timeout`); forget its pid."""
    pid = info.pids.get(name)
    if pid is None or not info.owns(pid):
        info.pids.pop(name, None)
        return
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sig == signal.SIGKILL:
            os.killpg(pid, sig)  # a crash takes the whole part down at once
        else:
            os.kill(pid, sig)  # a shutdown request goes to the main process, which ends the rest
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child (it is, in a test session)
    info.pids.pop(name, None)


def _wait_port_free(port: int, what: str, timeout: float = 30.0) -> None:
    """Until nothing listens on `port` any more. (Connections the old process closed may keep
    the port in TIME_WAIT for a minute; the parts bind with SO_REUSEADDR, so that is fine.)"""
    deadline = time.monotonic() + timeout
    while port_accepts(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: something still listens on {port} after {timeout:.0f} s")
        time.sleep(0.1)


def _started(info: StackInfo, running: parts.Running, probe: str, timeout: float) -> None:
    parts.wait_ready(running, probe, timeout)
    info.pids[running.name] = running.pid
    info.logs[running.name] = str(running.log)
    # `StackInfo.owns` accepts processes created before `started_at`: move it past this one.
    info.started_at = process_clock()
    info.save()


# --------------------------------------------------------------------------------------- Kafka


def stop_kafka(info: StackInfo, *, hard: bool = True, timeout: float = 60.0) -> None:
    """SIGKILL the broker (a crash) or, with `hard=False`, SIGTERM it (a controlled shutdown)."""
    _kill(info, "kafka", signal.SIGKILL if hard else signal.SIGTERM, timeout)


def start_kafka(info: StackInfo, *, timeout: float = 120.0) -> None:
    """Start the broker again on its data directory, its client port and its controller port
    (the KRaft quorum keeps its address), and wait until it serves metadata."""
    data = Path(info.root) / "kafka"
    port = _port(info.kafka_bootstrap)
    controller_port = _controller_port(data / "server.properties")
    _wait_port_free(port, "kafka")
    _wait_port_free(controller_port, "kafka (controller)")
    props = parts.kafka_config(data, port, controller_port)
    kafka_home = install.ensure_kafka(_quiet)
    log = data / "kafka.out"
    proc = spawn(parts.kafka_java(kafka_home, data, "kafka.Kafka", str(props)), log=log)
    _started(info, parts.Running("kafka", proc.pid, log), info.kafka_bootstrap, timeout)


def restart_kafka(
    info: StackInfo, *, hard: bool = True, down_for: float = 0.0, timeout: float = 120.0
) -> float:
    """Stop the broker (see `stop_kafka`), leave it down `down_for` seconds, start it again;
    return how long it was away."""
    began = time.monotonic()
    stop_kafka(info, hard=hard)
    time.sleep(down_for)
    start_kafka(info, timeout=timeout)
    return time.monotonic() - began


def _controller_port(props: Path) -> int:
    for line in props.read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return _port(line.split("=", 1)[1].split("@", 1)[1])
    raise RuntimeError(f"{props} names no controller.quorum.voters")


# --------------------------------------------------------------------------------------- MinIO


def stop_minio(info: StackInfo, *, hard: bool = True, timeout: float = 30.0) -> None:
    _kill(info, "minio", signal.SIGKILL if hard else signal.SIGTERM, timeout)


def start_minio(info: StackInfo, *, timeout: float = 120.0) -> None:
    """Start MinIO again on the same drive, ports, root credentials and KMS key (so objects
    encrypted before the outage are readable after it), and wait until it is ready."""
    root = Path(info.root)
    port, console_port = _port(info.s3_endpoint), _port(info.s3_console)
    _wait_port_free(port, "minio")
    _wait_port_free(console_port, "minio (console)")
    running, endpoint, _ = parts.start_minio(
        install.ensure_minio(_quiet),
        root / "minio",
        info.s3_access_key,
        info.s3_secret_key,
        Secrets.load_or_create(root).kms_key(),
        port,
        console_port,
    )
    _started(info, running, endpoint, timeout)


def minio_outage(
    info: StackInfo, *, seconds: float = 20.0, hard: bool = True, timeout: float = 120.0
) -> float:
    """Stop MinIO, keep it away `seconds`, start it again; return how long it was away."""
    began = time.monotonic()
    stop_minio(info, hard=hard)
    time.sleep(seconds)
    start_minio(info, timeout=timeout)
    return time.monotonic() - began


# ---------------------------------------------------------------------------------- PostgreSQL


def stop_postgres(info: StackInfo, *, hard: bool = False, timeout: float = 60.0) -> None:
    """Fast shutdown (SIGINT: sessions are ended, the server checkpoints and exits) or, with
    `hard=True`, SIGKILL every PostgreSQL process (a crash: recovery from the WAL at start)."""
    _kill(info, "postgres", signal.SIGKILL if hard else signal.SIGINT, timeout)


def start_postgres(info: StackInfo, *, timeout: float = 120.0) -> None:
    """Start PostgreSQL again on its data directory, port and superuser password, and wait
    until it answers a query."""
    root = Path(info.root)
    port = _port(info.postgres_dsn)
    _wait_port_free(port, "postgres")
    running, dsn = parts.start_postgres(
        install.postgres_bin_dir(),
        root / "postgres",
        Secrets.load_or_create(root).postgres_password,
        port,
    )
    _started(info, running, dsn, timeout)


def restart_postgres(
    info: StackInfo, *, hard: bool = False, down_for: float = 0.0, timeout: float = 120.0
) -> float:
    """Stop PostgreSQL (see `stop_postgres`), leave it down `down_for` seconds, start it again;
    return how long it was away."""
    began = time.monotonic()
    stop_postgres(info, hard=hard)
    time.sleep(down_for)
    start_postgres(info, timeout=timeout)
    return time.monotonic() - began
