"""Stand-ins for `pipeline.read_document` that test_checking runs inside checking workers.

They must be importable by name (the worker unpickles them), hence a module of their own.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from referrals_common.contracts.translation import UnreadableReason
from referrals_translation.outcome import Limits, Outcome
from referrals_translation.pipeline import read_document


def crash_on_zip(path: str, media_type: str, limits: Limits) -> Outcome:
    """Segfault on a ZIP (as native code would), read anything else normally."""
    if media_type == "application/zip":
        os.kill(os.getpid(), signal.SIGSEGV)
    return read_document(path, media_type, limits)


def crash_during_ocr(path: str, media_type: str, limits: Limits) -> Outcome:
    """Read the document, and segfault a second into it (while Tesseract runs)."""
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGSEGV)).start()
    return read_document(path, media_type, limits)


def raise_error(path: str, media_type: str, limits: Limits) -> Outcome:
    raise RuntimeError("a bug in the reader")


def start_a_child_and_hang(path: str, media_type: str, limits: Limits) -> Outcome:
    """Start a long-running program (as OCR does), write its pid to `path`, and never return."""
    child = subprocess.Popen(["sleep", "600"])
    Path(path).write_text(str(child.pid))
    time.sleep(600)
    raise AssertionError("unreachable")


def allocate(path: str, media_type: str, limits: Limits) -> Outcome:
    """Allocate `path` MiB (a memory bomb)."""
    block = bytearray(int(path) * 2**20)
    return Outcome.unreadable(UnreadableReason.CORRUPT, f"allocated {len(block)} bytes")


def objects_tracked(path: str, media_type: str, limits: Limits) -> Outcome:
    """An outcome that says how many objects the worker's garbage collector looks at."""
    return Outcome.unreadable(UnreadableReason.CORRUPT, str(len(gc.get_objects())))


def whoami(path: str, media_type: str, limits: Limits) -> Outcome:
    """An outcome that names the worker process answering it."""
    return Outcome.unreadable(UnreadableReason.CORRUPT, f"pid {os.getpid()}")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def read_and_measure(path: str, media_type: str, limits: Limits) -> Outcome:
    """`read_document`, with the worker's resident memory before it and at its peak during it
    (VmHWM, reset just before: /proc/self/clear_refs 5) in kB, as `" rss_kb=B peak_kb=P"` at the
    end of the detail."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    outcome = read_document(path, media_type, limits)
    peak = _status_kb("VmHWM")
    return dataclasses.replace(
        outcome, detail=f"{outcome.detail or ''} rss_kb={before} peak_kb={peak}"
    )


_PINS: list[bytes] = []


def fragment_heap(path: str, media_type: str, limits: Limits) -> Outcome:
    """Take `path` MiB in 1 KiB blocks (glibc's heap, not mmap), keep a small block allocated
    after each 64th (so the heap's top cannot simply shrink), free the rest; answer with the
    worker's resident size in KiB as the document left it (`path` "0": only the answer)."""
    blocks = [bytes(1024) for _ in range(int(path) * 1024)]
    for i in range(0, len(blocks), 64):
        _PINS.append(bytes(600 + i % 7))
    del blocks
    return Outcome.unreadable(UnreadableReason.CORRUPT, str(_status_kb("VmRSS")))
