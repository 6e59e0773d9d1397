"""PDF text layers that lie: mojibake from a font without a Unicode map, or gibberish from a bad
scanner OCR, over a readable scan. The page is read from its pixels instead. Not marked `unit`:
it runs Tesseract."""

# Cyrillic letters that look Latin are meant in the Ukrainian text.

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fpdf import FPDF
from fpdf.enums import TextMode

from referrals_common.contracts.translation import ExtractionMethod, UnreadableReason
from referrals_translation.extraction import PDF
from referrals_translation.outcome import Limits
from referrals_translation.pipeline import read_document
from tests.fixtures.translation import texts
from tests.fixtures.translation.make_documents import page_image, scanned

UKRAINIAN = " ".join(texts.DISCHARGE_UK[1][2:5])
GIBBERISH = "xqzt vrkp mnbl wqxz trpl kvzq prst mlkn bvcx zqwr tplk nmzx " * 8


def scan_with_layer(path: Path, layer: str, *, with_scan: bool = True) -> None:
    """A scanned Ukrainian page with an invisible text layer saying `layer` (Latin-1 only)."""
    pdf = FPDF(format="A4")
    pdf.add_page()
    if with_scan:
        image = io.BytesIO()
        scanned(page_image(texts.DISCHARGE_UK), seed=21).save(image, "PNG")
        pdf.image(image, x=0, y=0, w=pdf.w, h=pdf.h)
    pdf.set_font("Helvetica", size=9)
    pdf.text_mode = TextMode.INVISIBLE
    pdf.multi_cell(0, 5, layer)
    pdf.output(str(path))


def test_a_mojibake_layer_is_ignored_and_the_page_ocrd(tmp_path: Path) -> None:
    mojibake = UKRAINIAN.encode("cp1251").decode("latin-1")  # "Ä³àãíîç: ðàê ë³âî¿ ..."
    scan_with_layer(tmp_path / "mojibake.pdf", mojibake)
    outcome = read_document(tmp_path / "mojibake.pdf", PDF, Limits())
    assert (outcome.kind, outcome.main_language) == ("text", "uk"), outcome
    assert outcome.method is ExtractionMethod.OCR


def test_a_layer_in_no_language_is_read_again_from_the_pixels(tmp_path: Path) -> None:
    scan_with_layer(tmp_path / "gibberish.pdf", GIBBERISH)
    outcome = read_document(tmp_path / "gibberish.pdf", PDF, Limits())
    assert (outcome.kind, outcome.main_language) == ("text", "uk"), outcome
    assert outcome.method is ExtractionMethod.OCR


@pytest.mark.parametrize("layer", [GIBBERISH])
def test_a_layer_in_no_language_over_nothing_stays_undetermined(tmp_path: Path, layer: str) -> None:
    scan_with_layer(tmp_path / "gibberish-only.pdf", layer, with_scan=False)
    outcome = read_document(tmp_path / "gibberish-only.pdf", PDF, Limits())
    assert outcome.kind == "unreadable"
    assert outcome.reason is UnreadableReason.LANGUAGE_UNDETERMINED


FIXTURES = Path(__file__).parents[2] / "fixtures" / "translation"


@pytest.mark.parametrize(
    "name",
    [
        "arztbrief_de.pdf",
        "consultation_he.pdf",
        "discharge_summary_uk.pdf",
        "epikriz_tr.pdf",
        "pathology_report_en.pdf",
        "pathology_report_ru.pdf",
        "referral_owner_password_uk.pdf",
    ],
)
def test_pdfium_reads_the_same_words_as_pypdf(name: str) -> None:
    """Text layers are read with pdfium for speed; pypdf, the fallback, finds the same words."""
    from pypdf import PdfReader

    from referrals_translation.extraction import _open_pdfium, _page_text

    path = FIXTURES / name
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        reader.decrypt("")
    fast = _open_pdfium(path)
    assert fast is not None
    try:
        for index in range(len(reader.pages)):
            by_pdfium = _page_text(reader, fast, index).split()
            by_pypdf = _page_text(reader, None, index).split()
            assert by_pdfium, f"page {index + 1} has a text layer"
            same = len(set(by_pdfium) & set(by_pypdf)) / len(set(by_pypdf))
            assert same > 0.9, f"page {index + 1}: {same:.0%} of pypdf's words"
    finally:
        fast.close()
