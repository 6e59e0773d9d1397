"""The launcher that forks the platform's Python processes from its preloaded libraries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack import launcher
from devstack.process import stop_group

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("launcher")
    sock = where / "launcher.sock"
    log = (where / "launcher.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.launcher", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not launcher.ready(sock):
        assert proc.poll() is None, (where / "launcher.log").read_text()
        assert time.monotonic() < deadline, "the launcher never answered"
        time.sleep(0.3)
    yield where, sock, proc
    stop_group(proc.pid, timeout=10)
    log.close()


def _probe(where: Path, sock: Path, name: str, code: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `code` as module `name` (written in `where`) forked from the launcher."""
    (where / f"{name}.py").write_text(code)
    log = where / f"{name}.log"
    pid = launcher.spawn(
        sock,
        [sys.executable, "-m", name, "first", "second"],
        log=log,
        env={**env, "PYTHONPATH": str(where)},
        cwd=where,
    )
    return pid, str(log)


def test_a_forked_process_is_what_spawn_would_start(running) -> None:
    where, sock, proc = running
    # The module is new to the launcher: found on the child's own PYTHONPATH.
    code = (
        "import json, os, sys, time, threading\n"
        "import referrals_common.edge, fastapi\n"
        "print(json.dumps({'argv': sys.argv[1:], 'name': __name__, 'env': dict(os.environ),\n"
        "  'cwd': os.getcwd(), 'sid': os.getsid(0) == os.getpid(), 'stdin': sys.stdin.read(),\n"
        "  'frozen': __import__('gc').get_freeze_count() > 0}), flush=True)\n"
        "sys.exit(3)\n"
    )
    pid, log = _probe(where, sock, "probe_one", code, {"ONLY_THIS": "1"})
    assert psutil.Process(pid).ppid() == proc.pid
    assert launcher.exit_code(sock, pid, timeout=60) == 3
    seen = __import__("json").loads(Path(log).read_text().splitlines()[-1])
    assert seen["argv"] == ["first", "second"]
    assert seen["name"] == "__main__"
    # Exactly the environment it was given: none of the launcher's own variables.
    assert seen["env"].keys() == {"ONLY_THIS", "PYTHONPATH"}
    assert seen["cwd"] == str(where)
    assert seen["sid"] is True  # its own session: a stop of its group reaches its children
    assert seen["stdin"] == ""
    assert seen["frozen"] is True  # the preloaded objects stay out of the collector's reach
    # Reaped by the launcher: no zombie left behind.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_its_title_is_its_own_command_and_a_stop_of_its_group_ends_it(running) -> None:
    where, sock, _ = running
    code = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
    pid, log = _probe(where, sock, "probe_two", code, {})
    deadline = time.monotonic() + 30
    while "up" not in (Path(log).read_text() if Path(log).exists() else ""):
        assert time.monotonic() < deadline, "the forked module never ran"
        time.sleep(0.1)
    title = " ".join(psutil.Process(pid).cmdline())
    assert f"{sys.executable} -m probe_two first second" in title
    os.killpg(pid, signal.SIGTERM)
    assert launcher.exit_code(sock, pid, timeout=30) == -signal.SIGTERM


def test_a_failing_module_exits_1_with_its_traceback_in_its_log(running) -> None:
    where, sock, _ = running
    pid, log = _probe(where, sock, "probe_three", "raise RuntimeError('broken on purpose')\n", {})
    assert launcher.exit_code(sock, pid, timeout=30) == 1
    assert "RuntimeError: broken on purpose" in Path(log).read_text()


def test_only_python_modules_are_run(running) -> None:
    where, sock, _ = running
    for argv in (["/bin/sh", "-c", "true"], [sys.executable, "-c", "print(1)"], [sys.executable]):
        with pytest.raises(launcher.LauncherError, match="only"):
            launcher.spawn(sock, argv, log=where / "refused.log", env={})
    assert not (where / "refused.log").exists() or not (where / "refused.log").read_text()


def test_its_socket_is_its_users_only(running) -> None:
    _, sock, _ = running
    assert sock.stat().st_mode & 0o777 == 0o600


def test_with_its_launcher_gone_a_process_is_started_on_its_own(tmp_path: Path) -> None:
    from devstack import platform as platform_mod

    gone = tmp_path / "launcher.sock"
    with pytest.raises(launcher.LauncherGone):
        launcher.request(gone, {"exit": 0}, timeout=2)
    info = platform_mod.PlatformInfo(root=str(tmp_path), apis={}, launcher=str(gone))
    argv = [sys.executable, "-m", "json.tool", "--help"]
    pid = platform_mod._start(info, argv, tmp_path / "alone.log", {})
    assert psutil.Process(pid).ppid() == os.getpid()  # spawned here, not forked by a launcher
    assert psutil.Process(pid).wait(timeout=60) == 0
    assert "usage" in (tmp_path / "alone.log").read_text()


def _rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def test_idle_it_goes_lean_and_keeps_its_children_and_their_statuses(tmp_path: Path) -> None:
    sock = tmp_path / "launcher.sock"
    log = (tmp_path / "launcher.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.launcher", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "DEVSTACK_LAUNCHER_LEAN_AFTER": "2"},
    )
    try:
        deadline = time.monotonic() + 180
        while not launcher.ready(sock):
            assert proc.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the launcher never answered"
            time.sleep(0.3)
        preloaded = _rss_mib(proc.pid)
        ended, _ = _probe(tmp_path, sock, "ends_at_once", "raise SystemExit(3)\n", {})
        sleeper, sleeper_log = _probe(
            tmp_path, sock, "sleeps", "import time\nprint('up', flush=True)\ntime.sleep(600)\n", {}
        )
        # Idle for its 2 s: the same process, executed again without the libraries.
        while "--lean" not in psutil.Process(proc.pid).cmdline():
            assert time.monotonic() < deadline, "the launcher never went lean"
            time.sleep(0.2)
        assert launcher.ready(sock)
        lean = _rss_mib(proc.pid)
        assert lean < preloaded / 2, (preloaded, lean)
        # What it kept: the status of a child that ended before, and its running children.
        assert launcher.exit_code(sock, ended, timeout=30) == 3
        assert psutil.Process(sleeper).ppid() == proc.pid
        os.killpg(sleeper, signal.SIGTERM)
        assert launcher.exit_code(sock, sleeper, timeout=30) == -signal.SIGTERM
        assert "up" in Path(sleeper_log).read_text()
        # A spawn now imports the libraries again first; the process runs as before.
        code = "import gc, sys\nprint(gc.get_freeze_count() > 0, flush=True)\nsys.exit(4)\n"
        again, again_log = _probe(tmp_path, sock, "after_lean", code, {})
        assert launcher.exit_code(sock, again, timeout=60) == 4
        assert Path(again_log).read_text().strip() == "True"
        assert _rss_mib(proc.pid) > lean  # preloaded again, until it is idle once more
        assert proc.poll() is None
    finally:
        stop_group(proc.pid, timeout=10)
        log.close()
