"""Benchmark: the translation service's document check (text layers, OCR, language identification).

Not a test: it prints figures and writes bench/results/translation.json. In one run, on documents
it generates itself (the fixture generator's wording and renderer):

1. text-layer PDFs of several pages: documents/s and pages/s, in-process and through a checking
   worker (pipe and pickling included), every page read (no sampling);
2. scanned pages (image-only PDFs scanned at 200 dpi, A4 pages of 11 pt text): OCR pages/s on one
   core (Tesseract, language identification) for one-page scans, where orientation and script
   detection runs on every page, and through a multi-page Ukrainian and Russian scan, where it
   runs once; one-page scans with one worker per core at once; and the time to check the
   multi-page scan under the default limits, which stop after 1 500 letters;
3. language identification: sentences/s and accuracy of Lingua (as the service uses it, and its
   bare detector) beside py3langid restricted to the same languages, on the same sentences
   (tests/fixtures/translation/sentences.tsv, 50 characters or more);
4. the checking workers: the first start (the forkserver loads the language models) and the
   replacement of a killed worker.

    uv run --frozen python bench/translation.py [--documents 20] [--pages 10] [--scans 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from referrals_translation import language
from referrals_translation.checking import DocumentChecker
from referrals_translation.extraction import PDF, TEXT
from referrals_translation.outcome import Limits, Outcome
from referrals_translation.pipeline import read_document

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fixture generator lives under tests/

# Checking workers import this module again when they start: what it needs beyond the service
# (fpdf2, the fixture generator and its matplotlib fonts, py3langid) is imported where used.

console = Console()


def documents() -> list[tuple[str, list[str]]]:
    from tests.fixtures.translation import texts

    return [
        texts.DISCHARGE_UK,
        texts.PATHOLOGY_RU,
        texts.PATHOLOGY_EN,
        texts.ARZTBRIEF_DE,
        texts.EPIKRIZ_TR,
        texts.WYPIS_PL,
        texts.EPICRISIS_RU,
        texts.REFERRAL_UK,
    ]


EVERY_PAGE = Limits(max_pages=10_000, enough_letters=10**9, timeout_s=600)
EVERY_SCANNED_PAGE = replace(EVERY_PAGE, max_ocr_pages=10_000, ocr_enough_letters=10**9)


# --- documents -----------------------------------------------------------------------------------


def cyrillic_documents() -> list[tuple[str, list[str]]]:
    from tests.fixtures.translation import texts

    return [texts.DISCHARGE_UK, texts.EPICRISIS_RU, texts.REFERRAL_UK, texts.PATHOLOGY_RU]


def text_pdfs(folder: Path, count: int, pages: int) -> list[Path]:
    """`count` digital PDFs of `pages` pages each, a document's text on every page."""
    from fpdf.enums import XPos, YPos

    from tests.fixtures.translation import make_documents

    paths = []
    docs = documents()
    for index in range(count):
        title, paragraphs = docs[index % len(docs)]
        pdf = make_documents._pdf()
        for _ in range(pages):
            pdf.add_page()
            pdf.set_font("DejaVu", "B", 13)
            pdf.multi_cell(0, 8, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_font("DejaVu", "", 11)
            for paragraph in paragraphs:
                pdf.multi_cell(0, 6, paragraph, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        path = folder / f"text-{index}.pdf"
        pdf.output(str(path))
        paths.append(path)
    return paths


def scanned_pages(folder: Path, count: int) -> list[Path]:
    """`count` single-page scans (image-only PDFs) of different documents and languages."""
    from tests.fixtures.translation import make_documents

    paths = []
    docs = documents()
    for index in range(count):
        page = make_documents.page_image(docs[index % len(docs)])
        path = folder / f"scan-{index}.pdf"
        make_documents.scanned_pdf(path, [make_documents.scanned(page, seed=index)])
        paths.append(path)
    return paths


# --- measurements --------------------------------------------------------------------------------


def timed(paths: list[Path], check: Callable[[Path], Outcome]) -> tuple[float, list[Outcome]]:
    began = time.perf_counter()
    outcomes = [check(path) for path in paths]
    return time.perf_counter() - began, outcomes


def expect_text(outcomes: list[Outcome]) -> int:
    """Pages examined in all outcomes; every outcome must be text."""
    for outcome in outcomes:
        if outcome.kind != "text":
            raise RuntimeError(f"unexpected outcome {outcome}")
    return sum(outcome.pages for outcome in outcomes)


def text_layer(folder: Path, count: int, pages: int) -> dict[str, float]:
    paths = text_pdfs(folder, count, pages)
    read_document(paths[0], PDF, EVERY_PAGE)  # warm-up: imports, models
    seconds, outcomes = timed(paths, lambda p: read_document(p, PDF, EVERY_PAGE))
    total = expect_text(outcomes)
    with DocumentChecker(workers=1) as checker:
        checker.start()
        worker_s, worker_outcomes = timed(paths, lambda p: checker.check(p, PDF, EVERY_PAGE))
    expect_text(worker_outcomes)
    result = {
        "documents": count,
        "pages": total,
        "documents_per_s": round(count / seconds, 1),
        "pages_per_s": round(total / seconds, 1),
        "via_worker_documents_per_s": round(count / worker_s, 1),
        "via_worker_pages_per_s": round(total / worker_s, 1),
    }
    console.print(
        f"text layer: {result['pages_per_s']} pages/s, {result['documents_per_s']} documents/s "
        f"in-process; {result['via_worker_pages_per_s']} pages/s through a worker"
    )
    return result


def ocr(folder: Path, count: int) -> dict[str, float]:
    from tests.fixtures.translation import make_documents

    singles = scanned_pages(folder, count)
    read_document(singles[0], PDF, EVERY_SCANNED_PAGE)  # warm-up
    single_s, outcomes = timed(singles, lambda p: read_document(p, PDF, EVERY_SCANNED_PAGE))
    pages = expect_text(outcomes)
    document = folder / "scan-document.pdf"  # one script throughout, as most scans are
    cyrillic = cyrillic_documents()
    images = [
        make_documents.scanned(make_documents.page_image(cyrillic[i % len(cyrillic)]), seed=i)
        for i in range(count)
    ]
    make_documents.scanned_pdf(document, images)
    whole_s, (whole,) = timed([document], lambda p: read_document(p, PDF, EVERY_SCANNED_PAGE))
    cores = os.cpu_count() or 1
    with DocumentChecker(workers=cores) as checker:
        checker.start()
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=cores) as pool:
            parallel = list(pool.map(lambda p: checker.check(p, PDF, EVERY_SCANNED_PAGE), singles))
        parallel_s = time.perf_counter() - began
        expect_text(parallel)
        check_s, (checked,) = timed([document], lambda p: checker.check(p, PDF))
    page_texts = [documents()[i % len(documents())] for i in range(count)]
    letters = [sum(ch.isalpha() for ch in title + "".join(body)) for title, body in page_texts]
    result = {
        "letters_per_page": round(sum(letters) / len(letters)),
        "single_page_scans": pages,
        "single_page_scans_pages_per_s_one_core": round(pages / single_s, 2),
        "multi_page_scan_pages": whole.pages,
        "multi_page_scan_pages_per_s_one_core": round(whole.pages / whole_s, 2),
        "cores": cores,
        "single_page_scans_pages_per_s_all_cores": round(pages / parallel_s, 2),
        "multi_page_scan_check_with_default_limits_s": round(check_s, 2),
        "multi_page_scan_pages_examined_with_default_limits": checked.pages,
    }
    console.print(
        f"OCR, one core: {result['single_page_scans_pages_per_s_one_core']} pages/s for "
        f"one-page scans (script detection on each), "
        f"{result['multi_page_scan_pages_per_s_one_core']} pages/s through a {whole.pages}-page "
        f"scan (script detection once); {result['single_page_scans_pages_per_s_all_cores']} "
        f"pages/s on {cores} cores. With the default limits the {whole.pages}-page scan is "
        f"checked in {check_s:.2f} s ({checked.pages} pages examined)"
    )
    return result


def sentences() -> list[tuple[str, str]]:
    path = ROOT / "tests" / "fixtures" / "translation" / "sentences.tsv"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            code, sentence = line.split("\t")
            if len(sentence) >= 50:
                rows.append((code, sentence))
    return rows


def rate(
    rows: list[tuple[str, str]], guess: Callable[[str], str | None], rounds: int
) -> tuple[float, float]:
    """Sentences per second and accuracy (abstentions count as errors) of `guess`."""
    correct = sum(guess(sentence) == code for code, sentence in rows)
    began = time.perf_counter()
    for _ in range(rounds):
        for _, sentence in rows:
            guess(sentence)
    seconds = time.perf_counter() - began
    return len(rows) * rounds / seconds, correct / len(rows)


def language_identification(rounds: int) -> dict[str, float]:
    import py3langid.langid as langid

    rows = sentences()
    codes = [language.code(lang) for lang in language.LANGUAGES]
    bare = language.detector()
    identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in codes if code in identifier.labels])

    def lingua_service(sentence: str) -> str | None:
        return language.identify(sentence).main_language

    def lingua_bare(sentence: str) -> str | None:
        found = bare.detect_language_of(sentence)
        return None if found is None else language.code(found)

    def py3langid(sentence: str) -> str:
        return identifier.classify(sentence)[0]

    results: dict[str, float] = {"sentences": len(rows), "languages": len(codes)}
    for name, guess in [
        ("lingua_service", lingua_service),
        ("lingua_bare", lingua_bare),
        ("py3langid", py3langid),
    ]:
        per_s, accuracy = rate(rows, guess, rounds)
        results[f"{name}_sentences_per_s"] = round(per_s)
        results[f"{name}_accuracy"] = round(accuracy, 4)
        console.print(f"{name}: {per_s:,.0f} sentences/s, accuracy {accuracy:.1%}")
    return results


def workers() -> dict[str, float]:
    """Start-up of a pool in a fresh forkserver, and replacing a worker killed at its limit."""
    from tests.fixtures.translation import make_documents

    with tempfile.TemporaryDirectory() as tmp:
        slow = Path(tmp) / "slow.pdf"
        make_documents.long_scanned_pdf(slow, 10)
        small = ROOT / "tests" / "fixtures" / "translation" / "referral_uk_cp1251.txt"
        with DocumentChecker(workers=1) as checker:
            began = time.perf_counter()
            checker.start()
            first = time.perf_counter() - began
            checker.check(slow, PDF, replace(EVERY_SCANNED_PAGE, timeout_s=1))  # killed
            began = time.perf_counter()
            checker.check(small, TEXT)  # a new worker is forked first
            after_kill = time.perf_counter() - began
            began = time.perf_counter()
            checker.check(small, TEXT)
            warm = time.perf_counter() - began
    result = {
        "pool_start_s": round(first, 2),
        "check_after_a_kill_ms": round(after_kill * 1000, 1),
        "check_on_a_warm_worker_ms": round(warm * 1000, 1),
    }
    console.print(
        f"workers: pool start {result['pool_start_s']} s (models loaded once); a check right "
        f"after a kill {result['check_after_a_kill_ms']} ms, on a warm worker "
        f"{result['check_on_a_warm_worker_ms']} ms"
    )
    return result


def main(args: argparse.Namespace) -> dict[str, object]:
    pool = workers()
    with tempfile.TemporaryDirectory(prefix="bench-translation-") as tmp:
        folder = Path(tmp)
        text = text_layer(folder, args.documents, args.pages)
        scans = ocr(folder, args.scans)
    return {
        "text_layer": text,
        "ocr": scans,
        "language_identification": language_identification(args.rounds),
        "workers": pool,
        "targets": {
            "text_layer_pages_per_s>=50": text["pages_per_s"] >= 50,
            "ocr_pages_per_s_per_core>=1": scans["multi_page_scan_pages_per_s_one_core"] >= 1,
            "ocr_single_page_scans_pages_per_s_per_core>=1": (
                scans["single_page_scans_pages_per_s_one_core"] >= 1
            ),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20, help="text PDFs")
    parser.add_argument("--pages", type=int, default=10, help="pages per text PDF")
    parser.add_argument("--scans", type=int, default=8, help="scanned pages")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the sentences")
    results = main(parser.parse_args())
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "translation.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(data=results)
