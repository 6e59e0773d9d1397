"""CPU-seconds and resident memory of processes and process trees, helper processes of a
benchmark, and waiting for a server to be healthy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil


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


class CpuSeconds:
    """CPU seconds (user + system) spent by named processes in a block (each process alone,
    not its children: a benchmark's own children are measured by their own names)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {}
        for name, proc in self.processes.items():
            times = proc.cpu_times()
            now[name] = times.user + times.system
        return now

    def __enter__(self) -> CpuSeconds:
        self._began = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.spent = {name: end[name] - self._began[name] for name in end}


class PeakRss:
    """Samples the resident memory of a process tree every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pss_bytes(pid: int) -> int:
    """A process's proportional set size: its resident pages, each shared page divided among
    the processes mapping it (/proc/<pid>/smaps_rollup); 0 where it cannot be read. Summed over
    processes it is the memory they use together, which a sum of RSS overstates (PostgreSQL's
    shared buffers counted once per backend, a forked worker's model pages once per worker)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ResourceSampler:
    """Every `interval` s, each watched process tree's CPU seconds (user + system, summed over
    every process ever seen in the tree, so recycled workers still count) and resident memory
    (RSS summed over the tree), the machine's busy CPU, and its load average; every
    `pss_every` samples, each tree's PSS (`pss_bytes`, dearer to read than RSS)."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5, pss_every: int = 4) -> None:
        self.roots = roots
        self.interval = interval
        self.pss_every = pss_every
        self.pss_samples: list[tuple[float, dict[str, int]]] = []
        self.samples: list[tuple[float, dict[str, float], dict[str, int], float]] = []
        self.loadavg: list[tuple[float, tuple[float, float, float]]] = []
        self._cpu: dict[str, dict[int, float]] = defaultdict(dict)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="resources")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _trees(self) -> dict[str, list[psutil.Process]]:
        """Each root's process tree, from one pass over the process table (psutil's
        `children()` would read the whole table once per root)."""
        procs: dict[int, psutil.Process] = {}
        kids: dict[int, list[int]] = defaultdict(list)
        for proc in psutil.process_iter(["ppid"]):
            procs[proc.pid] = proc
            kids[proc.info["ppid"]].append(proc.pid)
        trees = {}
        for name, pid in list(self.roots.items()):
            found, todo = [], [pid]
            while todo:
                current = todo.pop()
                if current in procs:
                    found.append(procs[current])
                # The driver started the platform, and the launcher forked its service
                # processes: their children are counted as themselves.
                if name not in ("bench-driver", "launcher"):
                    todo += kids.get(current, [])
            trees[name] = found
        return trees

    def _run(self) -> None:
        last_load = 0.0
        rounds = 0
        while not self._stop.is_set():
            now = time.time()
            cpu: dict[str, float] = {}
            rss: dict[str, int] = {}
            trees = self._trees()
            if rounds % self.pss_every == 0:
                pss = {name: sum(pss_bytes(p.pid) for p in tree) for name, tree in trees.items()}
                self.pss_samples.append((now, pss))
            rounds += 1
            for name, tree in trees.items():
                total_rss = 0
                for proc in tree:
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            total_rss += proc.memory_info().rss
                        self._cpu[name][proc.pid] = times.user + times.system
                    except psutil.Error:
                        continue
                cpu[name] = sum(self._cpu[name].values())
                rss[name] = total_rss
            machine = psutil.cpu_times()
            busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
            self.samples.append((now, cpu, rss, busy + getattr(machine, "steal", 0.0)))
            if now - last_load >= 5:
                self.loadavg.append((now, os.getloadavg()))
                last_load = now
            self._stop.wait(max(0.0, self.interval - (time.time() - now)))

    def window(self, start: float, end: float, *, enclosing: bool = False) -> dict[str, Any]:
        """CPU seconds and peak RSS per tree between two wall times, and the machine's share.

        By default between the first and the last sample inside the times. With `enclosing`,
        between the last sample at or before `start` and the first at or after `end` (where
        there is one), so that all the work done between the two times is counted: a phase of
        a few seconds would otherwise lose up to a sampling interval of its busiest start and
        of its end (its seconds are then the enclosing samples', for subtracting idle)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if enclosing:
            before = [s for s in self.samples if s[0] <= start][-1:]
            after = [s for s in self.samples if s[0] >= end][:1]
            inside = before + [s for s in inside if s not in before + after] + after
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        seconds = last[0] - first[0]
        per = {}
        for name in list(self.roots):
            cpu_s = last[1].get(name, 0.0) - first[1].get(name, 0.0)
            per[name] = {
                "cpu_s": round(cpu_s, 2),
                "cores": round(cpu_s / seconds, 3),
                "peak_rss_MiB": round(max(s[2].get(name, 0) for s in inside) / 2**20, 1),
            }
        pss = [sample for t, sample in self.pss_samples if start <= t <= end]
        for name in per:
            per[name]["peak_pss_MiB"] = round(
                max((s.get(name, 0) for s in pss), default=0) / 2**20, 1
            )
        platform = [n for n in self.roots if not n.startswith("bench-")]
        machine = last[3] - first[3]
        ours = sum(v["cpu_s"] for v in per.values())
        loads = [load[0] for t, load in self.loadavg if start <= t <= end]
        return {
            "seconds": round(seconds, 1),
            # The platform's memory at its fullest moment: the largest sum of its processes'
            # PSS in one sample (not a sum of peaks reached at different times).
            "platform_peak_pss_MiB": round(
                max((sum(s.get(n, 0) for n in platform) for s in pss), default=0) / 2**20, 1
            ),
            "processes": per,
            "machine_busy_cpu_s": round(machine, 1),
            "machine_busy_cores": round(machine / seconds, 2),
            "measured_processes_cpu_s": round(ours, 1),
            "other_load_cpu_s": round(max(0.0, machine - ours), 1),
            "loadavg_1min_max": max(loads) if loads else None,
        }

    def cores_series(self, step: float = 1.0) -> tuple[list[float], dict[str, list[float]]]:
        """Cores used per tree over time (one point per `step` s), for the plot."""
        times: list[float] = []
        series: dict[str, list[float]] = defaultdict(list)
        previous = None
        for sample in self.samples:
            if previous is not None and sample[0] - previous[0] < step:
                continue
            if previous is not None:
                dt = sample[0] - previous[0]
                times.append(sample[0])
                for name in list(self.roots):
                    if name in sample[1] and name in previous[1]:
                        used = (sample[1][name] - previous[1][name]) / dt
                    else:
                        used = 0.0
                    series[name].append(max(0.0, used))
                series["machine"].append(max(0.0, (sample[3] - previous[3]) / dt))
            previous = sample
        return times, dict(series)


class Helper:
    """One helper process of a benchmark (`script` run again with a `--role` in `argv`) and the
    JSON lines it prints, read as they come; its first line must be `"ready"`."""

    def __init__(self, name: str, script: str, argv: list[str], on_line: Any = None) -> None:
        self.name = name
        self.script = script
        self.argv = argv
        self.on_line = on_line
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            self.script,
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if json.loads(line or b'""') != "ready":
            raise RuntimeError(f"{self.name} did not start")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if self.on_line is not None:
                self.on_line(json.loads(line))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
