"""Check documents in worker processes that are killed when a document takes too long.

A hostile or pathological file can make a parser loop, eat memory, or crash in native code
(pdfium, Pillow's decoders, lxml). None of that may stall or kill the consumer, so each document
is read in a **worker process** (`pipeline.read_document`), and the consumer only waits on a pipe:

* when `Limits.timeout_s` passes, the worker's whole process group (the worker, with the
  Tesseract it runs in-process, and anything it started) gets SIGKILL, and the outcome is
  *unreadable* (`corrupt`, "Reading the document took longer than 90 s");
* when the worker dies (a segfault, the kernel's OOM killer), the outcome is *unreadable*
  (`corrupt`, with the signal);
* a worker is replaced after either, and recycled after `max_jobs_per_worker` documents.

`check` never raises because of a document. It raises `CheckerUnavailable` only when no worker
can be started at all (an infrastructure fault to retry, not a verdict on the document).

Workers are forked by a **forkserver** that first imports the parsers and loads the language
identification models (`_worker_preload`: py3langid, CLD2, letter-pair counts, about 160 MB
in all): a new worker starts in about 50 ms and shares them copy-on-write with its siblings
instead of loading its own, which makes killing and replacing a worker cheap.
The forkserver is a fresh interpreter, so it does not inherit the consumer's threads or event
loop. Each worker also caps its address space (`Limits.max_memory_mb`), so a memory bomb
ends as a `MemoryError` (or a crash) in the worker rather than as the host's OOM killer choosing
a victim.

`DocumentChecker` is a small pool (one worker per document checked at the same time) for a
long-lived consumer; `check_document` is its asyncio face, and `check_file` a blocking one-off
using a shared default pool.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

from referrals_common.contracts.translation import UnreadableReason
from referrals_translation import language, ocr
from referrals_translation.outcome import Limits, Outcome

log = logging.getLogger(__name__)

CheckTarget = Callable[[str, str, Limits], Outcome]
"""What a worker runs per document; `pipeline.read_document` unless a test substitutes it.

The consumer's process never imports `pipeline` (its parsers, numpy, Pillow, pdfium: some 90 MB):
with no target given, the worker takes `pipeline.read_document` itself, already imported by the
preloaded forkserver it comes from."""

PRELOAD: Final = "referrals_translation._worker_preload"
READY: Final = "ready"
POLL_SLICE_S: Final = 0.2
"""How often a waiting check looks at its cancellation flag."""


class CheckerUnavailable(RuntimeError):
    """No checking worker could be started: retry later, this says nothing about the document."""


@dataclass(frozen=True, slots=True)
class _Failed:
    """A job the worker did not answer: why, for the outcome's detail."""

    why: str
    broken_pipe: bool = False


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.jobs = 0

    @classmethod
    def start(
        cls, context: ForkServerContext, target: CheckTarget | None, timeout_s: float
    ) -> _Worker:
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=_serve, args=(theirs, target), name="referrals-check", daemon=True
        )
        process.start()
        theirs.close()
        worker = cls(process, ours)
        try:
            if worker._answered(timeout_s) and ours.recv() == READY:
                return worker
        except (EOFError, OSError):
            pass
        worker.kill()
        raise CheckerUnavailable(f"a checking worker did not start within {timeout_s:g} s")

    def _answered(self, timeout_s: float) -> bool:
        """Wait until the worker has written to the pipe (True) or exited or the time is up."""
        ready = wait([self.conn, self.process.sentinel], timeout_s)
        return self.conn in ready

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def run(
        self, job: tuple[str, str, Limits], timeout_s: float, cancelled: threading.Event | None
    ) -> Outcome | _Failed:
        deadline = time.monotonic() + timeout_s
        try:
            self.conn.send(job)
        except OSError:
            return _Failed("the worker had exited", broken_pipe=True)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _Failed(f"Reading the document took longer than {timeout_s:g} s.")
            if cancelled is not None and cancelled.is_set():
                return _Failed("The check was cancelled.")
            ready = wait([self.conn, self.process.sentinel], min(remaining, POLL_SLICE_S))
            if self.conn in ready:
                try:
                    answer: Outcome = self.conn.recv()
                except (EOFError, OSError):
                    return _Failed(self._death())
                self.jobs += 1
                return answer
            if ready:  # only the sentinel: the worker exited without answering
                return _Failed(self._death())

    def _death(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            with suppress(ValueError):
                name = signal.Signals(-code).name
                return f"The reader crashed while reading the document ({name})."
        return f"The reader exited while reading the document (status {code})."

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (its process group)."""
        self._kill_group()
        with suppress(OSError, ValueError):
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def _kill_group(self) -> None:
        pid = self.process.pid
        # Only while the worker is not reaped: until then its pid (and so its process group id)
        # cannot belong to anyone else. Once reaped (by the forkserver, as soon as it exits), the
        # pid may be reused by an unrelated group leader (a database server, say).
        if pid is not None and self.process.exitcode is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Ask the worker to exit; kill it when it does not within a few seconds."""
        with suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        self.kill()


def _serve(conn: Connection, target: CheckTarget | None) -> None:
    """The worker: answer jobs until the pipe closes or a None job arrives (`target` None:
    `pipeline.read_document`)."""
    os.setpgrp()  # its own process group, so a kill takes anything it started along
    if target is None:
        from referrals_translation.pipeline import read_document

        target = read_document
    _quiet_libraries()
    language.load()  # already loaded when forked from the preloaded forkserver
    # What the worker imported after the fork (the program's main module, the consumer's
    # libraries: some 50,000 objects) is kept for its life: out of the collector's reach, as the
    # forkserver's preload is. Else every collection walks them all: `_give_back_memory`'s took
    # ~23 ms a document instead of ~0.2, and the automatic ones during a reading too.
    gc.freeze()
    started_at = _resident_bytes()
    conn.send(READY)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        path, media_type, limits = job
        _cap_memory(limits.max_memory_mb)
        try:
            outcome = target(path, media_type, limits)
        except Exception as exc:  # the target promises not to raise; if it does, still answer
            outcome = Outcome.unreadable(
                UnreadableReason.CORRUPT, f"The document could not be read ({type(exc).__name__})."
            )
        try:
            conn.send(outcome)
        except OSError:
            return
        now = _resident_bytes()
        if started_at is None or now is None or now > started_at + GIVE_BACK_ABOVE:
            _give_back_memory()


GIVE_BACK_ABOVE: Final = 32 * 2**20
"""A worker grown by more than this since it started gives memory back after a document: a
scan's pages, an image or a DICOM study (tens to hundreds of MB), not a text PDF, after which it
is within a few MB of its start (40 of the pipeline benchmark's PDFs: +4 MB). Giving back after
every document cost 1.1 CPU-ms a text PDF (of ~16): the collection, `malloc_trim`, and the
kernel's page faults when the next document took the same memory again."""


def _resident_bytes() -> int | None:
    """The worker's resident size (Linux's /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def _give_back_memory() -> None:
    """Return to the system what reading the document took and freed, before the next one.

    A scan's pages decoded by Pillow, pdfium's bitmaps and Tesseract's buffers are freed when the
    document is done, but glibc's allocator keeps the freed heap for the process: a worker that
    read the fixtures' scans, images and DICOM files once stayed at ~240 MB PSS (from ~70).
    `malloc_trim` gives the free pages back (and `gc.collect` first frees what only cycles held)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # not glibc (musl, macOS): nothing to give back this way
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC: Final = _load_libc()


def _quiet_libraries() -> None:
    """Parsers complain about every malformed file; patients' files are often malformed."""
    for name in ("pypdf", "PIL", "pydicom", "charset_normalizer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _cap_memory(megabytes: int | None) -> None:
    """Lower (or lift) the soft limit on the worker's address space."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = hard if megabytes is None else megabytes * 2**20
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # A new worker still imports the program's main module (multiprocessing's rule; preloading
    # "__main__" does not reach the forkserver in Python 3.11): a light entry point keeps worker
    # restarts at about 0.1 s. That time is before a check's clock starts, never inside it.
    context.set_forkserver_preload([PRELOAD])
    return context


class DocumentChecker:
    """A pool of `workers` killable worker processes checking one document each at a time.

    Thread-safe: `check` may be called from several threads (and `check_async` from an event
    loop); a call waits for a free worker. Workers start on first use, or all at once with
    `start`. Close the checker (or use it as a context manager) to stop them.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        limits: Limits | None = None,
        target: CheckTarget | None = None,
        max_jobs_per_worker: int = 200,
        start_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a checker needs at least one worker")
        self.limits = limits or Limits()
        self._target = target
        self._max_jobs = max_jobs_per_worker
        self._start_timeout_s = start_timeout_s
        self._context = _context()
        self._slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        self._closed = False
        for _ in range(workers):
            self._slots.put(None)
        self._size = workers

    def start(self) -> None:
        """Check that Tesseract is installed and start every worker now (a consumer's start-up)."""
        try:
            ocr.ensure_available()
        except ocr.OcrError as exc:
            raise CheckerUnavailable(str(exc)) from exc
        taken = [self._slots.get() for _ in range(self._size)]
        try:
            taken = [worker or self._new_worker() for worker in taken]
        finally:
            for worker in taken:
                self._slots.put(worker)

    def check(
        self,
        path: str | Path,
        media_type: str,
        limits: Limits | None = None,
        *,
        cancelled: threading.Event | None = None,
    ) -> Outcome:
        """Check one document within `limits` (the checker's by default); blocks until done."""
        if self._closed:
            raise RuntimeError("the checker is closed")
        limits = limits or self.limits
        job = (str(path), media_type, limits)
        worker = self._slots.get()
        started = time.perf_counter()
        try:
            worker = self._ready(worker)
            result = worker.run(job, limits.timeout_s, cancelled)
            if isinstance(result, _Failed) and result.broken_pipe:  # died between documents
                worker = self._replace(worker)
                result = worker.run(job, limits.timeout_s, cancelled)
            if isinstance(result, Outcome):
                return result
            self._discard(worker)
            worker = None
            log.warning("document check failed: %s", result.why)
            return Outcome.unreadable(
                UnreadableReason.CORRUPT, result.why, seconds=time.perf_counter() - started
            )
        finally:
            self._slots.put(worker)

    async def check_async(
        self, path: str | Path, media_type: str, limits: Limits | None = None
    ) -> Outcome:
        """`check` from an event loop; cancelling the task kills the worker's job."""
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(
                self.check, path, media_type, limits, cancelled=cancelled
            )
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def close(self) -> None:
        """Stop every worker; checks still running finish first."""
        self._closed = True
        for _ in range(self._size):
            worker = self._slots.get()
            if worker is not None:
                self._discard(worker, gracefully=True)

    def __enter__(self) -> DocumentChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self, worker: _Worker | None) -> _Worker:
        if worker is None:
            return self._new_worker()
        if not worker.alive or worker.jobs >= self._max_jobs:
            return self._replace(worker, gracefully=worker.alive)
        return worker

    def _replace(self, worker: _Worker, *, gracefully: bool = False) -> _Worker:
        self._discard(worker, gracefully=gracefully)
        return self._new_worker()

    def _new_worker(self) -> _Worker:
        return _Worker.start(self._context, self._target, self._start_timeout_s)

    def _discard(self, worker: _Worker, *, gracefully: bool = False) -> None:
        if gracefully:
            worker.stop()
        else:
            worker.kill()


_default: DocumentChecker | None = None
_default_lock = threading.Lock()


def default_checker() -> DocumentChecker:
    """A process-wide checker with one worker, stopped when the interpreter exits."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DocumentChecker(workers=1)
            atexit.register(_default.close)
        return _default


def check_file(path: str | Path, media_type: str, limits: Limits | None = None) -> Outcome:
    """Check one document in a killable worker (the default checker's); blocks until done."""
    return default_checker().check(path, media_type, limits)


async def check_document(
    path: str | Path,
    media_type: str,
    limits: Limits | None = None,
    *,
    checker: DocumentChecker | None = None,
) -> Outcome:
    """Check one document from asyncio, in `checker` (the default one when not given)."""
    return await (checker or default_checker()).check_async(path, media_type, limits)
