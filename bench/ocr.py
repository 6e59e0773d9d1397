"""Benchmark: OCR through tesserocr against the ctypes binding to libtesseract it replaced.

Not a test: it prints figures and writes bench/results/ocr.json. In one run, on the same pages,
each implementation of `referrals_translation.ocr` reads every page as the service does (the
first page's work: orientation and script detection, then recognition with the packs the script
picks, the page turned upright):

- `tesserocr`: the module as it is (tesserocr's wheel, its bundled libtesseract);
- `ctypes`: the module at `OLD_REVISION`, read from git (the C API through ctypes, Debian's
  libtesseract).

Each implementation runs in its own process (two copies of Tesseract's C++ symbols in one process
are asking for trouble), with a warm-up page first (models loaded), and the two alternate over
`--rounds` rounds. Times are CPU seconds of the reading thread (Tesseract reads a page on the
caller's thread, on one core, in both), so other load on a shared machine hardly moves them;
a page's time is its best over the rounds. Printed per implementation: pages/s on one core, OSD
and recognition seconds a page, the reading process's resident memory with every engine loaded;
and how far the two agree (script, rotation, letters, mean word confidence, text similarity).

The pages: scans of the fixture documents in each script the service reads (Latin, Cyrillic,
Hebrew), one turned on its side, and the fixture photos (tests/fixtures/translation).

    uv run --frozen python bench/ocr.py [--rounds 2] [--scans 8]
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
from _harness.results import ROOT, parser, shown, write_results
from _harness.revision import module_at

sys.path.insert(0, str(ROOT))  # the fixture generator lives under tests/

OLD_REVISION = "7091b190939711100b813e099af08e979d6e186b"
"""The last commit whose `referrals_translation/ocr.py` called libtesseract through ctypes."""
OCR_MODULE = "services/translation/src/referrals_translation/ocr.py"
FIXTURE_PHOTOS = ("photo_sideways_pl.jpg", "photo_referral_uk.jpg", "photo_epikriz_tr.jpg")
SCAN_DPI = 150  # the service renders pages for OCR at 150 dpi (see ocr.py)


def make_pages(folder: Path, scans: int) -> list[tuple[Path, int | None]]:
    """Grey page images to read, each with its resolution when known."""
    from PIL import Image

    from tests.fixtures.translation import make_documents, texts

    documents = [
        texts.PATHOLOGY_EN,
        texts.DISCHARGE_UK,
        texts.PATHOLOGY_RU,
        texts.ARZTBRIEF_DE,
        texts.WYPIS_PL,
        texts.EPIKRIZ_TR,
        texts.REFERRAL_UK,
        texts.EPICRISIS_RU,
    ]
    pages: list[tuple[Path, int | None]] = []
    for index in range(scans):
        page = make_documents.scanned(
            make_documents.page_image(documents[index % len(documents)]), seed=index
        ).convert("L")
        page = page.resize((round(page.width * 0.75), round(page.height * 0.75)))  # 200 → 150 dpi
        if index == 1:
            page = page.rotate(90, expand=True)  # on its side: OSD must turn it back
        path = folder / f"scan-{index}.png"
        page.save(path)
        pages.append((path, SCAN_DPI))
    hebrew = make_documents.scanned(
        make_documents.page_image(texts.CONSULTATION_HE, rtl=True), seed=99
    ).convert("L")
    hebrew = hebrew.resize((round(hebrew.width * 0.75), round(hebrew.height * 0.75)))
    hebrew.save(folder / "scan-he.png")
    pages.append((folder / "scan-he.png", SCAN_DPI))
    fixtures = ROOT / "tests" / "fixtures" / "translation"
    for name in FIXTURE_PHOTOS:
        path = folder / f"{name}.png"
        Image.open(fixtures / name).convert("L").save(path)
        pages.append((path, None))
    return pages


def load_implementation(name: str, folder: Path) -> ModuleType:
    """The OCR module of `name`: the working tree's (tesserocr) or the old revision's (ctypes)."""
    if name == "tesserocr":
        from referrals_translation import ocr

        return ocr
    return module_at(OLD_REVISION, OCR_MODULE, "ocr_ctypes", folder)


def measure_pages(
    name: str, pages: list[tuple[Path, int | None]], folder: Path
) -> list[dict[str, Any]]:
    """Read every page with implementation `name` in this process; one row per page."""
    from PIL import Image

    ocr = load_implementation(name, folder)
    ocr.ensure_available()

    def read(path: Path, dpi: int | None) -> dict[str, Any]:
        image = Image.open(path)
        image.load()
        began = time.thread_time()
        orientation = ocr.detect_orientation(image, timeout=60)
        osd_s = time.thread_time() - began
        packs = ocr.languages_for(orientation)
        if packs is None:
            return {"page": path.name, "osd_s": osd_s, "recognition_s": 0.0, "packs": None}
        began = time.thread_time()
        result = ocr.recognise(ocr.upright(image, orientation), packs, dpi=dpi, timeout=60)
        return {
            "page": path.name,
            "osd_s": osd_s,
            "recognition_s": time.thread_time() - began,
            "script": orientation.script if orientation else None,
            "rotate": orientation.rotate if orientation else None,
            "packs": packs,
            "confidence": result.confidence,
            "letters": sum(ch.isalpha() for ch in result.text),
            "text": result.text,
        }

    # Warm-up: the OSD model and every set of packs a page may need are loaded before timing.
    read(*pages[0])
    blank = Image.new("L", (200, 100), 255)
    for packs in {*ocr.SCRIPT_LANGUAGES.values(), ocr.FALLBACK_LANGUAGES}:
        ocr.recognise(blank, packs, dpi=None, timeout=60)
    rows = [read(path, dpi) for path, dpi in pages]
    # The reading process's resident memory with every engine loaded (a checking worker's).
    rss_mib = psutil.Process().memory_info().rss / 2**20
    return [{**row, "rss_mib": rss_mib} for row in rows]


def run_child(
    name: str, pages: list[tuple[Path, int | None]], folder: Path
) -> list[dict[str, Any]]:
    listing = json.dumps([[str(path), dpi] for path, dpi in pages])
    done = subprocess.run(
        [sys.executable, __file__, "--measure", name, "--folder", str(folder)],
        input=listing,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def best_of(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per page, the row of the fastest round (the pages read the same every round)."""
    return [
        min(rows, key=lambda row: row["osd_s"] + row["recognition_s"])
        for rows in zip(*rounds, strict=True)
    ]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    osd = sum(row["osd_s"] for row in rows)
    recognition = sum(row["recognition_s"] for row in rows)
    read = [row for row in rows if row["packs"] is not None]
    return {
        "pages": len(rows),
        "pages_per_s_one_core": round(len(rows) / (osd + recognition), 3),
        "osd_s_per_page": round(osd / len(rows), 3),
        "recognition_s_per_page": round(recognition / max(1, len(read)), 3),
        "mean_word_confidence": round(statistics.mean(row["confidence"] for row in read), 1),
        "letters": sum(row["letters"] for row in read),
        "resident_mib_with_engines_loaded": round(max(row["rss_mib"] for row in rows)),
    }


def agreement(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, float]:
    pairs = list(zip(old, new, strict=True))
    both = [(a, b) for a, b in pairs if a["packs"] and b["packs"]]
    return {
        "same_script": sum(a.get("script") == b.get("script") for a, b in pairs),
        "same_rotation": sum(a.get("rotate") == b.get("rotate") for a, b in pairs),
        "same_packs": sum(a["packs"] == b["packs"] for a, b in pairs),
        "pages": len(old),
        "mean_text_similarity": round(
            statistics.mean(
                difflib.SequenceMatcher(None, a["text"], b["text"], autojunk=False).ratio()
                for a, b in both
            ),
            3,
        ),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console

    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pages = make_pages(folder, args.scans)
        runs: dict[str, list[list[dict[str, Any]]]] = {"ctypes": [], "tesserocr": []}
        for round_ in range(args.rounds):
            for name in ("ctypes", "tesserocr") if round_ % 2 == 0 else ("tesserocr", "ctypes"):
                console.print(f"round {round_ + 1}: {name} reads {len(pages)} pages")
                runs[name].append(run_child(name, pages, folder))
    old, new = best_of(runs["ctypes"]), best_of(runs["tesserocr"])
    result: dict[str, Any] = {
        "old_revision": OLD_REVISION,
        "rounds": args.rounds,
        "ctypes": summary(old),
        "tesserocr": summary(new),
        "agreement": agreement(old, new),
    }
    result["speed_ratio_tesserocr_over_ctypes"] = round(
        result["tesserocr"]["pages_per_s_one_core"] / result["ctypes"]["pages_per_s_one_core"], 3
    )
    for name in ("ctypes", "tesserocr"):
        figures = result[name]
        console.print(
            f"{name:>9}: {figures['pages_per_s_one_core']} pages/s on one core "
            f"(OSD {figures['osd_s_per_page']} s, "
            f"recognition {figures['recognition_s_per_page']} s a page), "
            f"mean word confidence {figures['mean_word_confidence']}, "
            f"{figures['letters']} letters; {figures['resident_mib_with_engines_loaded']} MiB "
            "resident with the engines loaded"
        )
    same = result["agreement"]
    console.print(
        f"tesserocr / ctypes speed: {result['speed_ratio_tesserocr_over_ctypes']}; same script on "
        f"{same['same_script']}/{same['pages']} pages, same rotation on {same['same_rotation']}, "
        f"same packs on {same['same_packs']}, text similarity {same['mean_text_similarity']}"
    )
    for a, b in zip(old, new, strict=True):
        console.print(
            f"  {a['page']:<28} ctypes {a['osd_s'] + a['recognition_s']:.2f} s "
            f"({a.get('script')}, {a.get('confidence', 0):.0f}) · tesserocr "
            f"{b['osd_s'] + b['recognition_s']:.2f} s "
            f"({b.get('script')}, {b.get('confidence', 0):.0f})"
        )
    console.print(f"written to {shown(write_results('ocr.json', result))}")
    return result


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=2)
    cli.add_argument("--scans", type=int, default=8)
    cli.add_argument("--measure", choices=("ctypes", "tesserocr"), help=argparse.SUPPRESS)
    cli.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    arguments = cli.parse_args()
    if arguments.measure:
        listed = [(Path(path), dpi) for path, dpi in json.loads(sys.stdin.read())]
        print(json.dumps(measure_pages(arguments.measure, listed, arguments.folder)))
    else:
        measure(arguments)


if __name__ == "__main__":
    main()
