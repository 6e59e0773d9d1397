"""Optical character recognition with Tesseract's C API, in the checking worker's process.

Why this shape:

* **The library, not the program, inside a killable worker.** Tesseract is called through
  `tesserocr` (pinned; its wheel bundles libtesseract and Leptonica, and reads the language packs
  of Debian's `tesseract-ocr-*` packages), with an engine per set of language packs kept for the
  life of the checking worker. Running the `tesseract` program for every call cost more than the
  reading itself on short pages: each run loaded its models and dictionaries again (OSD took
  0.35-0.45 s a page as a program, 0.13 s in the library; recognition 0.9-1.0 s against
  0.65-0.7 s). Isolation is kept one level up: documents are read in worker processes
  (`checking`), so a Tesseract that crashes or runs away takes one worker with it, which the
  pool replaces, and the document is unreadable with a reason. Recognition has a deadline per
  page (Tesseract's progress monitor, `Recognize(timeout=...)`); orientation detection is
  bounded by the few characters it classifies. The program itself is run only to ask which
  language packs are installed and where (`tesseract --list-langs`).
* **One script, a few languages.** Giving Tesseract every installed language pack
  (`eng+ukr+rus+deu+pol+heb+tur+fra+spa+ita`) makes it retry each poorly recognised word in
  every pack: on a 300 dpi Cyrillic page that took 9 s instead of 3.6 s, and the seven Latin
  packs took 16 s on it. So the first page of a document goes through orientation and script
  detection (the `osd` model), which also says whether the page is rotated, and the script
  picks the packs:

  - Cyrillic: `ukr+rus`. Both are needed: telling Ukrainian from Russian depends on letters only
    one of them has (і ї є ґ against ы э ъ ё), which the other model would mangle.
  - Hebrew: `heb+eng` (Hebrew reports are full of English drug and test names).
  - Latin: `eng` alone. The text is only read to identify its language: German, Polish or
    Turkish read with the English model lose their diacritics (Marz, przyjeta, sikayeti) but
    keep their words, which identify them just as well, in about 60 % of the time the seven
    Latin packs take.
  - unknown (too little text for OSD): `eng+ukr+rus`, the scripts most patients' papers use;
  - any other script OSD is sure of (Greek, Arabic, Georgian...): no installed pack reads it,
    and the page is not OCR'd.

  Later pages of the same document reuse the first page's choice, and are only re-examined
  (orientation and script) when their recognition comes out poor.
* **A confidence per page.** Recognition asks for TSV output, which gives every word its
  confidence (0-100); a page's confidence is the mean over its words weighted by their letters.
  The caller decides what is too poor to trust.
* **One core per call.** The wheel's Tesseract is built without OpenMP; `OMP_THREAD_LIMIT=1`
  (set before the library loads) keeps a Tesseract built with it (tesserocr compiled from source
  against a distribution's libtesseract) to one thread too: its OpenMP threads do not speed up a
  single page much and fight each other when several documents are read at once.

What it costs, per core (bench/translation.py): OSD about 0.13 s a page (on 15 characters;
Tesseract's default of 50 takes several times longer), recognition about 1 300 letters/s, so
0.6-0.8 s for an A4 page of a thousand letters. Resolution hardly matters (each text line is
scaled to a fixed height before recognition): 150 dpi reads about 10 % faster than 200 dpi and
the test scans and photos read just as well, which is why pages are rendered at 150 dpi.
Through tesserocr (its Tesseract 5.5) recognition takes about a fifth less CPU than it did
through the ctypes binding to Debian's Tesseract 5.3, with the same results (bench/ocr.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from PIL import Image
    from tesserocr import PyTessBaseAPI

TESSERACT: Final = "tesseract"
"""The command-line program, used only to list the installed language packs and their folder."""

SCRIPT_LANGUAGES: Final[dict[str, str]] = {
    "Cyrillic": "ukr+rus",
    "Latin": "eng",
    "Fraktur": "eng",
    "Hebrew": "heb+eng",
}
"""Tesseract language packs to read a page in each script OSD may report (see the module doc)."""

FALLBACK_LANGUAGES: Final = "eng+ukr+rus"
"""Packs used when OSD cannot tell the script (a page with little text)."""

REQUIRED_PACKS: Final = frozenset({"osd", "eng", "ukr", "rus", "heb"})
"""Language packs without which documents in the common scripts cannot be read."""

MIN_ROTATION_CONFIDENCE: Final = 2.0
"""OSD orientation confidence from which a reported rotation is applied."""

MIN_SCRIPT_CONFIDENCE: Final = 1.0
"""OSD script confidence below which an unsupported script is not trusted (fallback packs)."""

OSD_CHARACTERS: Final = 15
"""Characters OSD classifies before it may stop (it tries up to five times as many when unsure).

Tesseract's default, 50, spends about 0.7 s a page classifying up to 250 characters in four
orientations; 15 takes about 0.35 s and still names the script and the rotation of the test
scans and photos (tests/fixtures/translation)."""


class OcrError(Exception):
    """Tesseract could not read an image: it timed out, failed, or is not installed."""


@dataclass(frozen=True, slots=True)
class Orientation:
    """What Tesseract's orientation and script detection found on a page."""

    rotate: int
    """Degrees to rotate the image clockwise to make it upright: 0, 90, 180 or 270."""
    orientation_confidence: float
    script: str
    script_confidence: float


@dataclass(frozen=True, slots=True)
class Recognised:
    """The text of one image and how sure Tesseract was of it."""

    text: str
    confidence: float
    """Mean word confidence, 0-100, weighted by letters; 0 when no word was recognised."""
    words: int


def packs_available() -> frozenset[str]:
    """The language packs the installed Tesseract has (empty when Tesseract is missing)."""
    return _installed_packs()[1]


def ensure_available() -> None:
    """Raise `OcrError` unless Tesseract and the language packs this module uses are installed."""
    missing = REQUIRED_PACKS - packs_available()
    if missing:
        raise OcrError(f"Tesseract or its language packs are missing: {', '.join(sorted(missing))}")
    _load_library()


def detect_orientation(image: Image.Image, *, timeout: float) -> Orientation | None:
    """Orientation and script of a page, or None when the page has too little text to tell."""
    began = time.monotonic()
    with _engine("osd") as api:
        _set_image(api, image, dpi=None)
        try:
            found = api.DetectOrientationScript()
        finally:
            api.Clear()
    if time.monotonic() - began > timeout:
        raise OcrError(f"OCR of a page took longer than {timeout:g} s.")
    if not found or not found.get("script_name"):
        return None
    return Orientation(
        # Tesseract says how far the text is turned (counter-clockwise); undoing it turns the
        # image clockwise by the same angle, which is what the command line calls "Rotate".
        rotate=(360 - int(found["orient_deg"])) % 360,
        orientation_confidence=float(found["orient_conf"]),
        script=str(found["script_name"]),
        script_confidence=float(found["script_conf"]),
    )


def languages_for(orientation: Orientation | None) -> str | None:
    """The packs to read a page with, or None when its script is one no installed pack reads."""
    if orientation is None:
        return FALLBACK_LANGUAGES
    packs = SCRIPT_LANGUAGES.get(orientation.script)
    if packs is not None:
        return packs
    if orientation.script_confidence < MIN_SCRIPT_CONFIDENCE:
        return FALLBACK_LANGUAGES
    return None


def upright(image: Image.Image, orientation: Orientation | None) -> Image.Image:
    """The image turned upright when OSD is confident it is rotated."""
    if (
        orientation is None
        or orientation.rotate == 0
        or orientation.orientation_confidence < MIN_ROTATION_CONFIDENCE
    ):
        return image
    return image.rotate(-orientation.rotate, expand=True)  # PIL turns counter-clockwise


def recognise(image: Image.Image, languages: str, *, dpi: int | None, timeout: float) -> Recognised:
    """Read the text of an upright image with the given Tesseract language packs."""
    with _engine(languages) as api:
        _set_image(api, image, dpi=dpi)
        began = time.monotonic()
        try:
            # The deadline is Tesseract's progress monitor: recognition stops there and fails.
            read = api.Recognize(timeout=max(1, round(timeout * 1000)))
            tsv = api.GetTSVText(0) if read else ""
        finally:
            api.Clear()
    if not read:
        # Recognition stops at the monitor's deadline, and fails on an image it cannot take.
        if time.monotonic() - began >= timeout:
            raise OcrError(f"OCR of a page took longer than {timeout:g} s.")
        raise OcrError("Tesseract could not read the page.")
    # The API's TSV has no header row and starts at the page's own row; the CLI's has both.
    return parse_tsv("header\n" + tsv)


def parse_tsv(tsv: str) -> Recognised:
    """Text (a line per paragraph) and letter-weighted mean confidence from Tesseract's TSV."""
    paragraphs: dict[tuple[str, str], list[str]] = {}
    weighted = 0.0
    letters = 0
    words = 0
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) != 12 or not cells[11].strip():
            continue
        try:
            confidence = float(cells[10])
        except ValueError:
            continue
        if confidence < 0:
            continue
        word = cells[11].strip()
        paragraphs.setdefault((cells[2], cells[3]), []).append(word)
        words += 1
        count = sum(ch.isalpha() for ch in word)
        weighted += confidence * count
        letters += count
    text = "\n".join(" ".join(words) for words in paragraphs.values())
    return Recognised(text=text, confidence=weighted / letters if letters else 0.0, words=words)


_PACKS_FOLDER: Final = re.compile(r'"([^"]+)"')


@cache
def _installed_packs() -> tuple[str | None, frozenset[str]]:
    """Where the installed Tesseract keeps its language packs, and which it has (asked once per
    process of the `tesseract` program, which honours TESSDATA_PREFIX as the library does)."""
    if shutil.which(TESSERACT) is None:
        return None, frozenset()
    done = subprocess.run(
        [TESSERACT, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
    )
    first, *lines = done.stdout.splitlines() or [""]
    # The first line says where the packs are: List of available languages in "/…/tessdata/" (11):
    folder = match[1] if (match := _PACKS_FOLDER.search(first)) else None
    return folder, frozenset(line.strip() for line in lines if line.strip())


def _load_library() -> None:
    """Load Tesseract's library (tesserocr) into this process, or raise `OcrError`."""
    os.environ["OMP_THREAD_LIMIT"] = "1"  # read by an OpenMP runtime when it loads
    try:
        import tesserocr  # noqa: F401
    except ImportError as exc:
        raise OcrError("Tesseract's library (tesserocr) is not installed.") from exc


class _Engine:
    """A Tesseract API initialised with one set of language packs; one caller at a time."""

    def __init__(self, languages: str) -> None:
        folder, _ = _installed_packs()
        if folder is None:
            raise OcrError("Tesseract's language packs are not installed.")
        _load_library()
        from tesserocr import PSM, PyTessBaseAPI

        variables = {"debug_file": os.devnull}  # no warnings on stderr
        if languages == "osd":
            variables["min_characters_to_try"] = str(OSD_CHARACTERS)
        try:
            self.api = PyTessBaseAPI(
                path=folder,
                lang=languages,
                # OSD keeps the library's default segmentation (a single block), as it always
                # ran with; recognition segments the page fully automatically (the CLI's psm 3).
                psm=PSM.SINGLE_BLOCK if languages == "osd" else PSM.AUTO,
                variables=variables,
            )
        except RuntimeError as exc:
            raise OcrError(f"Tesseract cannot load the language packs {languages}.") from exc
        self.lock = threading.Lock()

    def __enter__(self) -> PyTessBaseAPI:
        self.lock.acquire()
        return self.api

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


_engines: dict[str, _Engine] = {}
_engines_lock = threading.Lock()


def _engine(languages: str) -> _Engine:
    """The process's engine for `languages`, made (models loaded) on first use."""
    with _engines_lock:
        engine = _engines.get(languages)
        if engine is None:
            engine = _engines[languages] = _Engine(languages)
        return engine


def _set_image(api: PyTessBaseAPI, image: Image.Image, *, dpi: int | None) -> None:
    """Give Tesseract an 8-bit grey copy of `image` (and its resolution when known)."""
    grey = image if image.mode == "L" else image.convert("L")
    api.SetImageBytes(grey.tobytes(), grey.width, grey.height, 1, grey.width)
    if dpi is not None:
        api.SetSourceResolution(dpi)
