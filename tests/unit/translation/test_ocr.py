"""OCR decisions: the script picks the language packs, rotation is undone, and a page OCR cannot
read well ends as `ocr_failed` with the reason. The last tests run Tesseract."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from referrals_common.contracts.translation import UnreadableReason
from referrals_translation import ocr
from referrals_translation.extraction import PNG
from referrals_translation.ocr import Orientation
from referrals_translation.outcome import Limits
from referrals_translation.pipeline import read_document
from tests.fixtures.translation import texts
from tests.fixtures.translation.make_documents import page_image

from .conftest import FIXTURES

GREEK = (
    "ΙΑΤΡΙΚΗ ΓΝΩΜΑΤΕΥΣΗ",
    [
        "Ο ασθενής προσήλθε στο νοσοκομείο με πόνο στην κοιλιά και απώλεια βάρους. Η βιοψία "
        "επιβεβαίωσε αδενοκαρκίνωμα του παγκρέατος και συστήνεται χημειοθεραπεία."
    ]
    * 4,
)


def orientation(script: str, confidence: float = 5.0, rotate: int = 0) -> Orientation:
    return Orientation(
        rotate=rotate, orientation_confidence=10.0, script=script, script_confidence=confidence
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("found", "packs"),
    [
        (orientation("Cyrillic"), "ukr+rus"),
        (orientation("Latin"), "eng"),
        (orientation("Hebrew"), "heb+eng"),
        (None, ocr.FALLBACK_LANGUAGES),  # too little text to tell
        (orientation("Greek"), None),  # no installed pack reads it
        (orientation("Katakana", confidence=0.0), ocr.FALLBACK_LANGUAGES),  # a doubtful guess
    ],
)
def test_the_script_picks_the_packs(found: Orientation | None, packs: str | None) -> None:
    assert ocr.languages_for(found) == packs


@pytest.mark.unit
def test_a_rotated_page_is_turned_upright() -> None:
    page = Image.new("L", (300, 100), 255)
    page.putpixel((0, 0), 0)  # a mark in the top left corner
    sideways = page.rotate(90, expand=True)  # turned counter-clockwise: the mark is bottom left
    assert sideways.getpixel((0, 299)) == 0
    turned = ocr.upright(sideways, orientation("Latin", rotate=90))
    assert turned.size == (300, 100)
    assert turned.getpixel((0, 0)) == 0
    unsure = Orientation(rotate=90, orientation_confidence=0.5, script="Latin", script_confidence=9)
    assert ocr.upright(sideways, unsure) is sideways


def test_a_blurred_scan_is_too_poor_for_ocr(tmp_path: Path) -> None:
    page_image(texts.PATHOLOGY_EN).filter(ImageFilter.GaussianBlur(5)).save(tmp_path / "blur.png")
    outcome = read_document(tmp_path / "blur.png", PNG, Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.OCR_FAILED)
    assert "too poor" in (outcome.detail or "")


def test_a_script_without_a_language_pack_is_an_ocr_failure(tmp_path: Path) -> None:
    page_image(GREEK).save(tmp_path / "greek.png")
    outcome = read_document(tmp_path / "greek.png", PNG, Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.OCR_FAILED)
    assert outcome.detail == "The text is in Greek script, which OCR cannot read here."


def test_a_tesseract_run_past_its_limit_is_an_ocr_failure() -> None:
    outcome = read_document(FIXTURES / "lab_results_en.png", PNG, Limits(ocr_timeout_s=0.05))
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.OCR_FAILED)
    assert outcome.detail == "OCR of a page took longer than 0.05 s."
