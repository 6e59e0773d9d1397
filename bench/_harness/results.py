"""Where the benchmarks' results go, their command line, and the machine they ran on."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, described by the first line of its module's docstring."""
    return argparse.ArgumentParser(description=(doc or "").splitlines()[0])


def write_results(name: str, results: dict[str, Any], *, ensure_ascii: bool = True) -> Path:
    """bench/results/`name`: the results as indented JSON; the path written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    text = json.dumps(results, indent=2, ensure_ascii=ensure_ascii) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def report(name: str, results: dict[str, Any], *parts: str) -> Path:
    """bench/results/`name` written (`write_results`), and the results printed as JSON: all
    of them, or only the named `parts`, one after the other."""
    from rich.console import Console

    path = write_results(name, results)
    console = Console()
    for data in [results[part] for part in parts] or [results]:
        console.print_json(data=data)
    return path


def shown(path: Path) -> str:
    """`path` as printed: relative to the repository when inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def loadavg() -> list[float]:
    """The machine's load averages (1, 5, 15 minutes), rounded as the results keep them."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """CPUs, their model, memory, OS and Python of this machine."""
    import psutil

    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_GiB": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
