"""The trace viewer stays up under a flood of spans, and `devstack status` tells the truth.

Anything that can reach Zipkin's span intake (every service process, the demo's front end, the
sample center) can send it spans without end. Zipkin, as devstack starts it
(`devstack.platform.start_zipkin`, the real jar), keeps at most `ZIPKIN_MAX_SPANS` in memory and
drops the oldest traces beyond; its heap holds that many; and should the heap run out all the
same, the JVM exits instead of lingering with its pid while failing every request. `status`
counts a process as up only when it answers its health probe.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from rich.console import Console
from typer.testing import CliRunner

from devstack import cli
from devstack import platform as platform_mod
from devstack.process import free_port, is_alive, spawn, stop_group, wait_until
from devstack.stack import StackInfo

pytestmark = pytest.mark.security

BATCH = 1_000  # spans per POST, all of one service name (`flood-<batch>`)
SPANS_PER_TRACE = 10


def _start(tmp_path: Path, **options: object) -> tuple[int, str]:
    jar = platform_mod.ensure_zipkin(Console(stderr=True))
    running, url = platform_mod.start_zipkin(jar, tmp_path, free_port(), **options)  # type: ignore[arg-type]
    wait_until(
        "zipkin",
        lambda: platform_mod.zipkin_healthy(url),
        pid=running.pid,
        log=running.log,
        timeout=120,
        interval=0.2,
    )
    return running.pid, url


@pytest.fixture
def zipkin(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """Zipkin as the platform starts it (its bounds included), on a free port."""
    pid, url = _start(tmp_path)
    try:
        yield pid, url
    finally:
        if is_alive(pid):
            os.kill(pid, signal.SIGCONT)  # a test may have stopped it
        stop_group(pid, timeout=10)


def _batch(number: int, start_us: int) -> bytes:
    """`BATCH` spans of a service's size (the tags an HTTP server span of the platform has),
    in traces of `SPANS_PER_TRACE`, each batch under its own service name."""
    spans = []
    for k in range(BATCH):
        trace = f"{number + 1:016x}{k // SPANS_PER_TRACE + 1:016x}"
        root = k - k % SPANS_PER_TRACE
        span = {
            "traceId": trace,
            "id": f"{k + 1:016x}",
            "name": "post /v1/cases/{case_id}/documents",
            "kind": "SERVER",
            "timestamp": start_us + (number * BATCH + k) * 10,
            "duration": 1234,
            "localEndpoint": {"serviceName": f"flood-{number:04d}", "ipv4": "127.0.0.1"},
            "tags": {
                "http.method": "POST",
                "http.route": "/v1/cases/{case_id}/documents",
                "http.status_code": "201",
                "http.url": f"http://127.0.0.1:8002/v1/cases/{secrets.token_hex(16)}/documents",
                "referrals.case_id": secrets.token_hex(16),
                "messaging.system": "kafka",
                "net.peer.name": "127.0.0.1",
                "otel.library.name": "opentelemetry.instrumentation.fastapi",
                "service.version": "0.1.0",
            },
        }
        if k != root:
            span["parentId"] = f"{root + 1:016x}"
        spans.append(span)
    return json.dumps(spans).encode()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 - a loopback http URL
        f"{url}/api/v2/spans", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
        return json.load(response)


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _heap_mib(heap: str) -> int:
    return int(heap.removesuffix("m"))


def test_a_flood_of_spans_leaves_zipkin_healthy_bounded_and_answering(
    zipkin: tuple[int, str],
) -> None:
    pid, url = zipkin
    batches = 3 * platform_mod.ZIPKIN_MAX_SPANS // BATCH  # three times what it keeps
    start_us = int((time.time() - 600) * 1e6)
    began = time.monotonic()
    peak = 0.0
    refused = []
    for number in range(batches):
        status = _post(url, _batch(number, start_us))
        if status != 202:
            refused.append((number, status))
        if number % 20 == 0:
            peak = max(peak, _rss_mib(pid))
    flood_seconds = time.monotonic() - began
    peak = max(peak, _rss_mib(pid))
    print(
        f"\n{batches * BATCH} spans in {flood_seconds:.1f} s; Zipkin's peak RSS {peak:.0f} MiB "
        f"(heap -Xmx{platform_mod.ZIPKIN_HEAP}, bound {platform_mod.ZIPKIN_MAX_SPANS} spans)"
    )
    assert refused == [], f"span intake failed under the flood: {refused[:5]}"
    assert is_alive(pid)
    assert platform_mod.zipkin_healthy(url)
    # Its server's threads stay few: Armeria's default pool made a thread per request until it
    # had 200 (~19 MiB of stacks); 100 small posts more would have made 100.
    small = [json.dumps(json.loads(_batch(batches, start_us))[:10]).encode()] * 100
    assert {_post(url, body) for body in small} == {202}
    threads = psutil.Process(pid).num_threads()
    print(f"Zipkin's threads after {batches + len(small)} posts: {threads}")
    assert threads <= platform_mod.ZIPKIN_BLOCKING_THREADS + 30, threads
    # Two malloc arenas for the JVM's threads (devstack.process.FEW_MALLOC_ARENAS).
    assert psutil.Process(pid).environ().get("MALLOC_ARENA_MAX") == "2"

    # It still answers queries: the service index, and every trace it kept.
    services = _get(f"{url}/api/v2/services")
    assert isinstance(services, list) and f"flood-{batches - 1:04d}" in services
    end_ms = int(time.time() * 1000)
    kept: dict[str, int] = {}
    for service in services:
        traces = _get(
            f"{url}/api/v2/traces?serviceName={service}&limit=1000&endTs={end_ms}&lookback=86400000"
        )
        assert isinstance(traces, list)
        kept[service] = sum(len(trace) for trace in traces)
    stored = sum(kept.values())
    print(f"spans kept: {stored}; RSS after the queries {_rss_mib(pid):.0f} MiB")
    # Bounded: no more than the bound is kept; the oldest went first, the newest are all there.
    assert platform_mod.ZIPKIN_MAX_SPANS // 2 <= stored <= platform_mod.ZIPKIN_MAX_SPANS
    assert kept.get("flood-0000", 0) == 0
    assert kept[f"flood-{batches - 1:04d}"] == BATCH
    # The process's memory stays within its heap plus the JVM's own (code, threads, buffers).
    assert peak < _heap_mib(platform_mod.ZIPKIN_HEAP) + 400, peak
    assert platform_mod.zipkin_healthy(url)


def test_zipkin_out_of_heap_exits_instead_of_lingering(tmp_path: Path) -> None:
    """A bound that does not fit its heap (as 500,000 spans in 384 MiB did): the intake fails
    once the heap is full, and the JVM exits then, rather than keep its pid and port."""
    pid, url = _start(tmp_path, max_spans=5_000_000, heap="128m")
    try:
        start_us = int((time.time() - 600) * 1e6)
        statuses = []
        for number in range(400):
            try:
                statuses.append(_post(url, _batch(number, start_us)))
            except OSError:  # the server went away mid-request
                statuses.append(0)
            if statuses[-1] != 202:
                break
        assert statuses[-1] != 202, "128 MiB took 400,000 spans: the test needs a smaller heap"
        deadline = time.monotonic() + 30
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not is_alive(pid), "Zipkin out of heap is still running"
        assert "OutOfMemoryError" in (tmp_path / "zipkin.log").read_text(errors="replace")
    finally:
        stop_group(pid, timeout=10)


# ---- devstack status ------------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    """A server that answers `/health` as a Zipkin whose storage failed does (503, DOWN)."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "DOWN", "zipkin": {"status": "DOWN"}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _write_state(root: Path, pid: int, trace_viewer: str) -> None:
    StackInfo(
        root=str(root),
        kafka_bootstrap="127.0.0.1:1",
        s3_endpoint="127.0.0.1:1",
        s3_console="127.0.0.1:1",
        s3_access_key="admin",
        s3_secret_key="admin-secret",
        postgres_dsn="postgresql://postgres:x@127.0.0.1:1/postgres",
        started_at=time.time(),
    ).save()
    platform_mod.PlatformInfo(
        root=str(root),
        apis={},
        trace_viewer=trace_viewer,
        pids={"zipkin": pid},
        logs={"zipkin": str(root / "zipkin.log")},
        started_at=time.time(),
    ).save()


def _status(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli.app, ["status", "--root", str(root)])
    line = next((ln for ln in result.output.splitlines() if ln.split()[1:2] == ["zipkin"]), "")
    return result.exit_code, line


def test_status_says_unhealthy_for_a_live_zipkin_that_stops_answering(
    zipkin: tuple[int, str], tmp_path: Path
) -> None:
    pid, url = zipkin
    root = tmp_path / "state"
    root.mkdir()
    _write_state(root, pid, url)
    code, line = _status(root)
    assert code == 0 and line.split()[0] == "up", line
    os.kill(pid, signal.SIGSTOP)  # alive, its pid and port still there, but answering nothing
    try:
        assert is_alive(pid)
        code, line = _status(root)
        assert code == 1 and line.split()[0] == "unhealthy", line
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(
        "zipkin", lambda: platform_mod.zipkin_healthy(url), pid=pid, log=tmp_path, timeout=30
    )
    code, line = _status(root)
    assert code == 0 and line.split()[0] == "up", line


def test_status_says_unhealthy_for_a_live_process_whose_health_says_down(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeper = spawn(["sleep", "120"], log=tmp_path / "sleep.log")
    try:
        _write_state(tmp_path, sleeper.pid, f"http://127.0.0.1:{server.server_port}")
        code, line = _status(tmp_path)
        assert code == 1 and line.split()[0] == "unhealthy", line
        # and one that does not answer at all: nothing listens on its port any more
        server.shutdown()
        server.server_close()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", server.server_port)) != 0
        code, line = _status(tmp_path)
        assert code == 1 and line.split()[0] == "unhealthy", line
    finally:
        stop_group(sleeper.pid, timeout=5)
    code, line = _status(tmp_path)
    assert code == 1 and line.split()[0] == "down", line
