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
3. language identification on tests/fixtures/langid/sentences.tsv (real sentences from Debian
   packages' translations): accuracy, undetermined share, Ukrainian-Russian confusions and
   sentences per CPU second of the service (`language.identify`) beside its baselines in the same
   run, py3langid and Lingua (high accuracy, what the service used before) over the same 34
   languages; and how many generated noise texts get a language (none should);
4. memory: PSS and RSS of the checking processes (forkserver and two workers) after checks;
5. the checking workers: the first start (the forkserver loads the language models) and the
   replacement of a killed worker.

The issue's figures (`langid_accuracy`, `langid_undetermined`, `langid_sentences_per_s`,
`translation_rss_mib`) are top-level keys of the results. `translation_rss_mib` is the PSS of the
checking processes (forkserver, two workers, multiprocessing's resource tracker) after checks;
the consumer process itself (Kafka, database, no models) adds about 100 MB, the relay its own.

    uv run --frozen python bench/translation.py [--documents 20] [--pages 10] [--scans 8]
    uv run --frozen python bench/translation.py --only-language  # 3, 4: results/langid.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from _harness.results import ROOT, parser, report
from rich.console import Console

from referrals_translation import language
from referrals_translation.checking import DocumentChecker
from referrals_translation.extraction import PDF, TEXT
from referrals_translation.outcome import Limits, Outcome
from referrals_translation.pipeline import read_document

sys.path.insert(0, str(ROOT))  # the fixture generator lives under tests/

# Checking workers import this module again when they start: what it needs beyond the service
# (fpdf2, the fixture generator and its matplotlib fonts, py3langid) is imported where used, and
# of the harness only its light `results` (the standard library alone).

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


def langid_sentences() -> list[tuple[str, str]]:
    """(language, sentence) of tests/fixtures/langid/sentences.tsv: real sentences from Debian
    packages' translations, at least 100 of each destination's language."""
    path = ROOT / "tests" / "fixtures" / "langid" / "sentences.tsv"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            code, _, sentence = line.split("\t")
            rows.append((code, sentence))
    return rows


def judge(
    rows: list[tuple[str, str]], guess: Callable[[str], str | None]
) -> dict[str, float | int]:
    """Accuracy, undetermined share, Ukrainian-Russian confusions and sentences per CPU second
    (one core: the guesses run in this one thread) of `guess` over `rows`."""
    began_cpu, began = time.process_time(), time.perf_counter()
    found = [guess(sentence) for _, sentence in rows]
    cpu_s, wall_s = time.process_time() - began_cpu, time.perf_counter() - began
    pairs = list(zip((code for code, _ in rows), found, strict=True))
    return {
        "accuracy": round(sum(e == f for e, f in pairs) / len(rows), 4),
        "undetermined": round(sum(f is None for _, f in pairs) / len(rows), 4),
        "uk_ru_confusions": sum({e, f} == {"uk", "ru"} for e, f in pairs),
        "sentences_per_cpu_s": round(len(rows) / cpu_s),
        "sentences_per_s_wall": round(len(rows) / wall_s),
    }


def noise_texts(count: int) -> list[str]:
    """Text that is no language, made as the unit test makes it (random bytes decoded, shuffled
    characters, OCR-like garbage, random letters)."""
    import random

    from tests.unit.translation import test_langid_set as noise

    rng = random.Random("bench-noise")
    makers = [
        noise.random_bytes_decoded,
        noise.shuffled_characters,
        noise.ocr_like_garbage,
        noise.random_letters,
    ]
    return [makers[i % len(makers)](rng) for i in range(count)]


def language_identification() -> dict[str, object]:
    """The service's identification beside py3langid (over the same 34 languages) and Lingua
    (high accuracy, the same languages: what the service used before), on the same sentences."""
    import py3langid.langid as langid
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    rows = langid_sentences()
    codes = ["no" if code == "nb" else code for code in language.LANGUAGES]
    identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    identifier.set_languages(codes)
    lingua = (
        LanguageDetectorBuilder.from_iso_codes_639_1(
            *(getattr(IsoCode639_1, code.upper()) for code in language.LANGUAGES)
        )
        .with_preloaded_language_models()
        .build()
    )
    language.load()

    def service(sentence: str) -> str | None:
        return language.identify(sentence).main_language

    def py3langid(sentence: str) -> str | None:
        found = identifier.classify(sentence)[0]
        return "nb" if found == "no" else found

    def lingua_high(sentence: str) -> str | None:
        found = lingua.detect_language_of(sentence)
        return None if found is None else found.iso_code_639_1.name.lower()

    results: dict[str, object] = {
        "sentences": len(rows),
        "languages_in_set": len({code for code, _ in rows}),
        "candidate_languages": len(language.LANGUAGES),
    }
    for name, guess in [("service", service), ("py3langid", py3langid), ("lingua", lingua_high)]:
        judged = judge(rows, guess)
        results[name] = judged
        console.print(
            f"{name}: {judged['accuracy']:.2%} correct, {judged['undetermined']:.2%} "
            f"undetermined, {judged['uk_ru_confusions']} uk/ru confusions, "
            f"{judged['sentences_per_cpu_s']:,} sentences per CPU second"
        )
    noise = noise_texts(400)
    given = sum(language.identify(text).main_language is not None for text in noise)
    results["noise_texts"] = len(noise)
    results["noise_given_a_language"] = given
    console.print(f"noise: {given} of {len(noise)} texts given a language")
    return results


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def resident_memory(workers: int = 2) -> dict[str, float]:
    """Memory of translation's checking processes as the consumer runs them: the forkserver
    (models loaded once) and `workers` workers after each checked a text PDF and a scan.
    RSS counts the shared model pages in every process; PSS shares them out."""
    import psutil

    from tests.fixtures.translation import make_documents

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    with tempfile.TemporaryDirectory() as tmp, DocumentChecker(workers=workers) as checker:
        checker.start()
        scan = Path(tmp) / "scan.pdf"
        make_documents.scanned_pdf(
            scan, [make_documents.scanned(make_documents.page_image(documents()[0]), seed=1)]
        )
        (text,) = text_pdfs(Path(tmp), 1, 3)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda p: checker.check(p, PDF), [text, scan] * workers))
        pids = [c.pid for c in me.children(recursive=True) if c.pid not in before]
        rss = {pid: _status_kb(pid, "VmRSS") for pid in pids}
        pss = {pid: _pss_kb(pid) for pid in pids}
    result = {
        "processes": len(pids),
        "rss_mib_largest_process": round(max(rss.values()) / 1024),
        "rss_mib_sum": round(sum(rss.values()) / 1024),
        "pss_mib_sum": round(sum(pss.values()) / 1024),
    }
    console.print(
        f"memory of the checking processes ({len(pids)}: forkserver and {workers} workers): "
        f"PSS {result['pss_mib_sum']} MiB in all, RSS {result['rss_mib_sum']} MiB summed, "
        f"{result['rss_mib_largest_process']} MiB the largest"
    )
    return result


def language_summary(identification: dict[str, object], memory: dict[str, float]) -> dict:
    """The issue's figures (langid_*, translation_rss_mib) beside the details they come from."""
    service = identification["service"]
    assert isinstance(service, dict)
    return {
        "langid_accuracy": service["accuracy"],
        "langid_undetermined": service["undetermined"],
        "langid_sentences_per_s": service["sentences_per_cpu_s"],
        "langid_uk_ru_confusions": service["uk_ru_confusions"],
        "translation_rss_mib": memory["pss_mib_sum"],
        "language_identification": identification,
        "memory": memory,
        "language_targets": {
            "langid_accuracy>=0.995": service["accuracy"] >= 0.995,
            "langid_undetermined<=0.005": service["undetermined"] <= 0.005,
            "langid_uk_ru_confusions==0": service["uk_ru_confusions"] == 0,
            "langid_sentences_per_s>=2000": service["sentences_per_cpu_s"] >= 2000,
            "translation_rss_mib<=600": memory["pss_mib_sum"] <= 600,
        },
    }


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


def measure(args: argparse.Namespace) -> dict[str, object]:
    if args.only_language:
        return language_summary(language_identification(), resident_memory())
    pool = workers()
    with tempfile.TemporaryDirectory(prefix="bench-translation-") as tmp:
        folder = Path(tmp)
        text = text_layer(folder, args.documents, args.pages)
        scans = ocr(folder, args.scans)
    return {
        "text_layer": text,
        "ocr": scans,
        **language_summary(language_identification(), resident_memory()),
        "workers": pool,
        "targets": {
            "text_layer_pages_per_s>=50": text["pages_per_s"] >= 50,
            "ocr_pages_per_s_per_core>=1": scans["multi_page_scan_pages_per_s_one_core"] >= 1,
            "ocr_single_page_scans_pages_per_s_per_core>=1": (
                scans["single_page_scans_pages_per_s_one_core"] >= 1
            ),
        },
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--documents", type=int, default=20, help="text PDFs")
    cli.add_argument("--pages", type=int, default=10, help="pages per text PDF")
    cli.add_argument("--scans", type=int, default=8, help="scanned pages")
    cli.add_argument(
        "--only-language",
        action="store_true",
        help="language identification and memory only (bench/results/langid.json)",
    )
    args = cli.parse_args()
    report("langid.json" if args.only_language else "translation.json", measure(args))


if __name__ == "__main__":
    main()
