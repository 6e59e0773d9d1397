"""Optical character recognition with the Tesseract command-line program.

Why this shape:

* **A subprocess, not a binding.** Tesseract runs as `tesseract stdin stdout`, fed a PNG image on
  its standard input, with a timeout per call. A hung or crashing OCR run is one killed child,
  not a wedged interpreter, and nothing beyond the `tesseract` program on PATH is needed.
* **One script, a few languages.** Giving Tesseract every installed language pack
  (`eng+ukr+rus+deu+pol+heb+tur+fra+spa+ita`) makes it retry each poorly recognised word in
  every pack: on a 300 dpi Cyrillic page that took 9 s instead of 3.6 s, and the seven Latin
  packs took 16 s on it. So the first page of a document goes through orientation and script
  detection (`--psm 0`, the `osd` model), which also says whether the page is rotated, and the
  script picks the packs:

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
* **One core per call.** `OMP_THREAD_LIMIT=1`: Tesseract's OpenMP threads do not speed up a
  single page much and fight each other when several documents are read at once.

What it costs, per core (bench/translation.py): OSD about 0.3 s a page (on 15 characters; 0.7 s
with Tesseract's default of 50), recognition about 1 000 letters/s, so 0.7-1 s for an A4 page
of a thousand letters. Resolution hardly matters (each text line is scaled to a fixed height
before recognition): 150 dpi reads about 10 % faster than 200 dpi and the test scans and photos
read just as well, which is why pages are rendered at 150 dpi.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Final

from PIL import Image

TESSERACT: Final = "tesseract"

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
    if shutil.which(TESSERACT) is None:
        return frozenset()
    done = subprocess.run(
        [TESSERACT, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
    )
    lines = done.stdout.splitlines()[1:]  # the first line says where the packs are
    return frozenset(line.strip() for line in lines if line.strip())


def ensure_available() -> None:
    """Raise `OcrError` unless Tesseract and the language packs this module uses are installed."""
    missing = REQUIRED_PACKS - packs_available()
    if missing:
        raise OcrError(f"Tesseract or its language packs are missing: {', '.join(sorted(missing))}")


def detect_orientation(image: Image.Image, *, timeout: float) -> Orientation | None:
    """Orientation and script of a page, or None when the page has too little text to tell."""
    options = ["--psm", "0", "-l", "osd", "-c", f"min_characters_to_try={OSD_CHARACTERS}"]
    done = _run(image, options, dpi=None, timeout=timeout, check=False)
    fields: dict[str, str] = {}
    for line in done.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        return Orientation(
            rotate=int(fields["Rotate"]) % 360,
            orientation_confidence=float(fields["Orientation confidence"]),
            script=fields["Script"],
            script_confidence=float(fields["Script confidence"]),
        )
    except (KeyError, ValueError):
        return None


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
    tsv = _run(image, ["--psm", "3", "-l", languages], dpi=dpi, timeout=timeout, tsv=True)
    return parse_tsv(tsv)


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


def _run(
    image: Image.Image,
    options: list[str],
    *,
    dpi: int | None,
    timeout: float,
    tsv: bool = False,
    check: bool = True,
) -> str:
    """Run Tesseract on `image` (sent as PNG on stdin) and return its standard output."""
    png = io.BytesIO()
    # PNG at the lowest compression: about 20 ms to write an A4 page at 200 dpi, and Tesseract
    # reads it about 0.1 s sooner than the same page as PGM or BMP (Leptonica's slower readers).
    image.save(png, "PNG", compress_level=1)
    argv = [TESSERACT, "stdin", "stdout", *options]
    if dpi is not None:
        argv += ["--dpi", str(dpi)]
    if tsv:
        argv.append("tsv")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            argv, input=png.getvalue(), capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrError(f"OCR of a page took longer than {timeout:g} s.") from exc
    except FileNotFoundError as exc:
        raise OcrError("Tesseract is not installed.") from exc
    if check and done.returncode != 0:
        raise OcrError(f"Tesseract failed with exit status {done.returncode}.")
    return done.stdout.decode("utf-8", errors="replace")
