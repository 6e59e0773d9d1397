"""What the benchmarks share: percentiles, waiting for a server to be healthy, and the
CPU-seconds of a process tree. (Imported by the scripts beside it: `uv run python bench/x.py`
puts this folder first on the path.)"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import psutil


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, by nearest rank; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    """Until `base`/health answers 200; the server's log tail if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy:\n{log.read_text()[-3000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a process and its children so far."""
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total
