"""Benchmark: records' upload type detection (`sniff`) with `filetype` against the hand-written
signature tables it replaced.

Not a test: it prints figures and writes bench/results/inspection.json. In one run, on the same
files, it times `referrals_records.inspection.sniff` as it is (`filetype`'s matchers) and as it
was at `OLD_REVISION` (its own signature tables, read from git), and checks that both decide
every file alike (the media type, or the refusal's reason and sentence).

The files: every document of tests/fixtures/translation (PDF, DOCX, JPEG, PNG, TIFF, DICOM,
plain text, damaged and hostile ones) and the samples of tests/unit/test_upload_inspection.py
(each accepted type, and the formats records refuses by name: programs, archives, other images,
HTML, SVG, scripts, a DICOM polyglot...), and a few crafted headers on which the two disagree.
`sniff` sees the first 64 KiB, as in an upload.

Where `python-magic` (libmagic) or `puremagic` happen to be installed, their bare detection
(`from_buffer`, `magic_string`) is timed on the same heads for comparison; neither is a
dependency of the project.

    uv run --frozen python bench/inspection.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from _harness.results import ROOT, parser, shown, write_results
from _harness.revision import module_at

sys.path.insert(0, str(ROOT))  # the samples live under tests/

OLD_REVISION = "745c5f7489d1052ffc60e4f5a63688bdc7fbd027"
"""The last commit whose `referrals_records/inspection.py` matched its own signature tables."""
INSPECTION_MODULE = "services/records/src/referrals_records/inspection.py"
SKIPPED_FIXTURES = {".py", ".json", ".tsv"}


def samples() -> list[tuple[str, bytes, str]]:
    """(label, head of the file, file name) for every file the benchmark sniffs."""
    from referrals_records.inspection import HEAD_BYTES
    from tests.unit import test_upload_inspection as unit

    found: list[tuple[str, bytes, str]] = []
    for path in sorted((ROOT / "tests" / "fixtures" / "translation").iterdir()):
        if path.suffix not in SKIPPED_FIXTURES and path.is_file():
            found.append((path.name, path.read_bytes()[:HEAD_BYTES], path.name))
    for param in unit.ACCEPTED_SAMPLES:
        make, name, _ = param.values
        found.append((f"sample:{param.id}", make()[:HEAD_BYTES], name))
    refused: list[tuple[str, Callable[[], bytes], str]] = [
        ("zip", lambda: unit.zip_file({"a.pdf": b"%PDF-1.4"}), "records.zip"),
        ("xlsx", unit.xlsx_file, "labs.docx"),
        ("docm", unit.docm_file, "letter.docx"),
        ("elf", unit.elf_file, "scan.pdf"),
        ("pe", unit.pe_file, "scan.pdf"),
        ("html", unit.html_file, "report.txt"),
        ("svg", unit.svg_file, "scan.txt"),
        ("script", lambda: b"#!/bin/sh\nrm -rf ~\n", "notes.txt"),
        ("gif", lambda: unit.image_file("GIF"), "scan.gif"),
        ("bmp", lambda: unit.image_file("BMP"), "scan.bmp"),
        ("webp", lambda: unit.image_file("WEBP"), "scan.webp"),
        ("heic", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a.heic"),
        ("ole2", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "letter.doc"),
        ("random", lambda: random.Random(1).randbytes(4096), "notes.txt"),
        ("bare-dicom", lambda: unit.bare_dicom_data_set(True), "IM00001"),
        ("dicom-pe-preamble", lambda: unit.dicom_file(preamble=unit.pe_file()[:128]), "IM1"),
        ("text-starting-mz", lambda: b"MZ is what the label says.\n", "notes.txt"),
        ("text-starting-bm", lambda: b"BM: bone marrow biopsy, 2024.\n", "notes.txt"),
    ]
    for label, make, name in refused:
        found.append((f"sample:{label}", make()[:HEAD_BYTES], name))
    # Crafted headers on which filetype's matchers and the old tables disagree (see the unit
    # tests' last section): the differences the run reports.
    edges = {
        "canon-raw": (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(200), "IMG_0001.tif"),
        "png-signature-cut-short": (b"\x89PNG" + b"garbage" + bytes(100), "scan.png"),
        "empty-zip": (b"PK\x05\x06" + bytes(18), "records.zip"),
        "ebml-without-doctype": (b"\x1aE\xdf\xa3" + bytes(60), "clip.mkv"),
        "heif-brand-heix": (
            b"\x00\x00\x00\x18ftypheix\x00\x00\x00\x00mif1heix" + bytes(64),
            "a.heic",
        ),
        "elf-of-6-bytes": (b"\x7fELF\x02\x01", "a.bin"),
        "gzip-method-9": (b"\x1f\x8b\x09" + bytes(40), "a.gz"),
        "tiff-of-6-bytes": (b"II*\x00\x08\x00", "a.tif"),
        "note-starting-percent-bang": (b"%! urgent: bring the CT disc\n", "notes.txt"),
    }
    for label, (head, name) in edges.items():
        found.append((f"edge:{label}", head, name))
    return found


def old_inspection(folder: Path) -> ModuleType:
    """`referrals_records.inspection` as it was at `OLD_REVISION` (its own signature tables)."""
    return module_at(OLD_REVISION, INSPECTION_MODULE, "inspection_signatures", folder)


def outcome(module: ModuleType, head: bytes, name: str) -> str:
    """What `sniff` decides: the media type, or the refusal's reason and sentence."""
    try:
        return str(module.sniff(head, name))
    except module.UploadRefused as refused:
        return f"refused {refused.reason.value}: {refused.detail}"


def per_file_us(
    detect: Callable[[bytes, str], object], files: list[tuple[str, bytes, str]], rounds: int
) -> list[float]:
    """Each file's best time over `rounds` calls of `detect`, in microseconds."""
    best = [float("inf")] * len(files)
    for _ in range(rounds):
        for index, (_, head, name) in enumerate(files):
            began = time.perf_counter_ns()
            with contextlib.suppress(Exception):  # a refusal is an outcome like any other here
                detect(head, name)
            best[index] = min(best[index], (time.perf_counter_ns() - began) / 1000)
    return best


def optional_detectors() -> dict[str, Callable[[bytes, str], object]]:
    """Bare detection of the other libraries considered, where installed."""
    found: dict[str, Callable[[bytes, str], object]] = {}
    try:
        import magic

        cookie = magic.Magic(mime=True)
        found["python-magic (libmagic)"] = lambda head, _: cookie.from_buffer(head)
    except ImportError:
        pass
    try:
        import puremagic

        found["puremagic"] = lambda head, _: puremagic.magic_string(head)
    except ImportError:
        pass
    return found


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console

    from referrals_records import inspection

    console = Console(width=120)
    files = samples()
    with tempfile.TemporaryDirectory() as tmp:
        old = old_inspection(Path(tmp))
    differences = [
        (label, before, after)
        for label, head, name in files
        if (before := outcome(old, head, name)) != (after := outcome(inspection, head, name))
    ]
    timings: dict[str, list[float]] = {}
    # Alternating halves keep a slow spell of the machine from landing on one side only.
    for _ in range(2):
        for label, module in (("signatures", old), ("filetype", inspection)):
            best = per_file_us(module.sniff, files, args.rounds // 2)
            timings[label] = [
                min(a, b) for a, b in zip(timings.get(label, best), best, strict=True)
            ]
    for label, detect in optional_detectors().items():
        timings[label] = per_file_us(detect, files, max(1, args.rounds // 10))
    summary = {
        label: {
            "mean_us_per_file": round(statistics.mean(values), 1),
            "median_us_per_file": round(statistics.median(values), 1),
            "max_us_per_file": round(max(values), 1),
        }
        for label, values in timings.items()
    }
    result: dict[str, Any] = {
        "old_revision": OLD_REVISION,
        "files": len(files),
        "rounds": args.rounds,
        "same_decision": len(files) - len(differences),
        "differences": [{"file": a, "before": b, "after": c} for a, b, c in differences],
        "sniff": summary,
        "ratio_filetype_over_signatures_mean": round(
            summary["filetype"]["mean_us_per_file"] / summary["signatures"]["mean_us_per_file"], 2
        ),
    }
    console.print(
        f"{len(files)} files; the same decision (type, or refusal and its sentence) for "
        f"{result['same_decision']}"
    )
    for label, before, after in differences:
        # Every type refusal ends with the same list of accepted types: left out here.
        was, now = (text.split(" Accepted types:")[0] for text in (before, after))
        console.print(f"  {label}:\n    was {was}\n    now {now}")
    for label, figures in summary.items():
        console.print(
            f"{label:>26}: {figures['mean_us_per_file']} µs/file on average, median "
            f"{figures['median_us_per_file']}, at most {figures['max_us_per_file']}"
        )
    console.print(
        f"filetype / signatures (mean µs per file): {result['ratio_filetype_over_signatures_mean']}"
    )
    out = write_results("inspection.json", result, ensure_ascii=False)
    console.print(f"written to {shown(out)}")
    return result


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=200)
    measure(cli.parse_args())


if __name__ == "__main__":
    main()
