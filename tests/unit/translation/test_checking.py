"""The killable per-document time limit: long documents are sampled, slow ones are stopped, a
crashing or misbehaving reader ends as an outcome, never as an exception, and a stopped reader
leaves no process behind. Not marked `unit`: it runs worker processes and Tesseract."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import psutil
import pytest

from referrals_common.contracts.translation import ExtractionMethod, UnreadableReason
from referrals_translation.checking import DocumentChecker, check_document, check_file
from referrals_translation.extraction import PDF, TEXT
from referrals_translation.outcome import Limits, Outcome
from tests.fixtures.translation.make_documents import long_scanned_pdf, long_text_pdf

from . import targets
from .conftest import FIXTURES

SLOW = Limits(timeout_s=3, max_pages=30, max_ocr_pages=30, ocr_enough_letters=10**9)
"""Limits under which a 30-page scan takes far longer than its 3 s."""


def running_ocr(interval: float = 0.4) -> list[psutil.Process]:
    """Processes of this test that are running OCR now: those with Tesseract's library loaded
    that keep a core busy (idle checking workers may have it loaded too, and use no CPU)."""
    candidates = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("libtesseract" in m.path for m in process.memory_maps()):
                candidates.append((process, sum(process.cpu_times()[:2])))
        except psutil.Error:
            continue
    time.sleep(interval)
    busy = []
    for process, before in candidates:
        try:
            # Busy: any real CPU in the interval (an idle worker takes none; on a loaded
            # machine a busy one gets only its share of a core, a tenth or less).
            if sum(process.cpu_times()[:2]) - before > interval / 20:
                busy.append(process)
        except psutil.Error:
            continue
    return busy


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def slow_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slow") / "scan-30-pages.pdf"
    long_scanned_pdf(path, 30)
    return path


def test_a_500_page_text_pdf_is_sampled_well_within_the_limit(
    checker: DocumentChecker, tmp_path: Path
) -> None:
    path = tmp_path / "500-pages.pdf"
    long_text_pdf(path, 500)
    started = time.monotonic()
    outcome = checker.check(path, PDF, Limits(timeout_s=20))
    assert time.monotonic() - started < 10
    assert (outcome.kind, outcome.main_language) == ("text", "en"), outcome
    assert outcome.method is ExtractionMethod.TEXT_LAYER
    assert 1 <= outcome.pages <= Limits().max_pages


def test_a_500_page_scan_is_sampled_within_the_limit(
    checker: DocumentChecker, tmp_path: Path
) -> None:
    path = tmp_path / "500-scanned-pages.pdf"
    long_scanned_pdf(path, 500)
    started = time.monotonic()
    outcome = checker.check(path, PDF, Limits(timeout_s=60))
    assert time.monotonic() - started < 60
    assert (outcome.kind, outcome.main_language) == ("text", "uk"), outcome
    assert outcome.method is ExtractionMethod.OCR
    assert 1 <= outcome.pages <= Limits().max_ocr_pages


def test_a_slow_document_is_stopped_at_the_limit_and_leaves_nothing_running(
    checker: DocumentChecker, slow_scan: Path
) -> None:
    started = time.monotonic()
    outcome = checker.check(slow_scan, PDF, SLOW)
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 8
    assert outcome.kind == "unreadable"
    assert outcome.reason is UnreadableReason.CORRUPT
    assert outcome.detail == "Reading the document took longer than 3 s."
    time.sleep(0.3)
    assert running_ocr() == []
    # The killed worker was replaced: the next document is read as usual.
    after = checker.check(FIXTURES / "history_ru_utf16.txt", TEXT)
    assert (after.kind, after.main_language) == ("text", "ru")


def test_a_crash_in_the_reader_becomes_an_outcome(tmp_path: Path) -> None:
    path = tmp_path / "crash.zip"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    with DocumentChecker(workers=1, target=targets.crash_on_zip) as crashing:
        outcome = crashing.check(path, "application/zip")
        assert outcome.kind == "unreadable"
        assert outcome.reason is UnreadableReason.CORRUPT
        assert outcome.detail == "The reader crashed while reading the document (SIGSEGV)."
        after = crashing.check(FIXTURES / "referral_uk_cp1251.txt", TEXT)
        assert (after.kind, after.main_language) == ("text", "uk")


def test_ocr_left_behind_by_a_crash_ends_on_its_own(slow_scan: Path) -> None:
    with DocumentChecker(workers=1, target=targets.crash_during_ocr) as crashing:
        outcome = crashing.check(slow_scan, PDF, dataclasses.replace(SLOW, timeout_s=60))
    assert outcome.detail == "The reader crashed while reading the document (SIGSEGV)."
    deadline = time.monotonic() + 15  # OCR runs in the worker: it ends with it
    while running_ocr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_ocr() == []


def test_an_exception_in_the_reader_becomes_an_outcome() -> None:
    with DocumentChecker(workers=1, target=targets.raise_error) as failing:
        outcome = failing.check(FIXTURES / "referral_uk_cp1251.txt", TEXT)
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.CORRUPT)
    assert outcome.detail == "The document could not be read (RuntimeError)."


def test_the_time_limit_kills_the_programs_the_reader_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    with DocumentChecker(workers=1, target=targets.start_a_child_and_hang) as hanging:
        outcome = hanging.check(pid_file, TEXT, Limits(timeout_s=1.5))
    assert outcome.detail == "Reading the document took longer than 1.5 s."
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child)


def test_memory_is_capped() -> None:
    with DocumentChecker(workers=1, target=targets.allocate) as hungry:
        outcome = hungry.check("4096", TEXT, Limits(max_memory_mb=2048))
        assert outcome.detail == "The document could not be read (MemoryError)."
        fine = hungry.check("64", TEXT, Limits(max_memory_mb=2048))
        assert fine.detail == f"allocated {64 * 2**20} bytes"


def test_a_worker_gives_back_what_a_document_freed() -> None:
    # 200 MiB taken and freed around blocks still in use: without malloc_trim after the job the
    # worker keeps it (measured: +210 MiB resident before the next document; with it, under 32).
    with DocumentChecker(workers=1, target=targets.fragment_heap) as pool:
        before = int(pool.check("0", TEXT).detail)
        during = int(pool.check("200", TEXT).detail)
        after = int(pool.check("0", TEXT).detail)
    assert during - before > 150 * 1024
    assert after - before < 32 * 1024


def test_a_worker_keeps_what_a_text_sized_document_freed() -> None:
    # A text PDF's few MB are not given back after each document (the collection, malloc_trim
    # and taking them again cost 1.1 CPU-ms a document): only growth beyond GIVE_BACK_ABOVE is.
    with DocumentChecker(workers=1, target=targets.fragment_heap) as pool:
        before = int(pool.check("0", TEXT).detail)
        pool.check("16", TEXT)
        after = int(pool.check("0", TEXT).detail)
    assert after - before > 8 * 1024


def test_a_worker_collects_only_what_documents_make() -> None:
    # What the worker imported once (here pytest, as the consumer's modules in the service) is
    # frozen: without it a collection after each document walked them all (pytest: ~2,400; the
    # consumer: ~50,000, ~23 ms).
    with DocumentChecker(workers=1, target=targets.objects_tracked) as pool:
        tracked = [int(pool.check("-", TEXT).detail) for _ in range(2)]
    assert max(tracked) < 500


def test_workers_are_recycled_after_a_number_of_documents() -> None:
    with DocumentChecker(workers=1, target=targets.whoami, max_jobs_per_worker=2) as pool:
        pids = [pool.check("-", TEXT).detail for _ in range(3)]
    assert pids[0] == pids[1] != pids[2]


async def test_check_document_from_asyncio(checker: DocumentChecker) -> None:
    files = ["referral_uk_cp1251.txt", "history_ru_utf16.txt", "ct_slice.dcm"]
    types = [TEXT, TEXT, "application/dicom"]
    outcomes = await asyncio.gather(
        *(
            check_document(FIXTURES / f, t, checker=checker)
            for f, t in zip(files, types, strict=True)
        )
    )
    assert [(o.kind, o.main_language) for o in outcomes] == [
        ("text", "uk"),
        ("text", "ru"),
        ("imaging", None),
    ]


async def test_cancelling_a_check_stops_its_worker(
    checker: DocumentChecker, slow_scan: Path
) -> None:
    task = asyncio.create_task(
        checker.check_async(
            slow_scan,
            PDF,
            dataclasses.replace(SLOW, timeout_s=60),
        )
    )
    # Its worker reaches OCR within a second or two on an idle machine; a loaded one takes longer.
    started = time.monotonic() + 30
    while not await asyncio.to_thread(running_ocr) and time.monotonic() < started:
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(running_ocr), "the slow scan should be in OCR by now"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 3
    while await asyncio.to_thread(running_ocr) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(running_ocr) == []


def test_check_file_runs_in_a_default_worker() -> None:
    outcome = check_file(FIXTURES / "mri_uk_with_en_summary.txt", TEXT)
    assert isinstance(outcome, Outcome)
    assert (outcome.kind, outcome.main_language) == ("text", "uk")
    assert outcome.seconds > 0
