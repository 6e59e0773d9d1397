"""Text extraction without OCR: encodings, Word internals, PDF encryption, broken text layers,
Tesseract's TSV, and the outcomes of files that cannot be read. In-process, no Tesseract."""

# Cyrillic letters that look Latin are meant in the Ukrainian and Russian texts.

from __future__ import annotations

import codecs
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from referrals_common.contracts.translation import ExtractionMethod, UnreadableReason
from referrals_translation import extraction
from referrals_translation.extraction import decode_text, looks_garbled
from referrals_translation.ocr import parse_tsv
from referrals_translation.outcome import Limits, Outcome
from referrals_translation.pipeline import read_document

from .conftest import FIXTURES

pytestmark = pytest.mark.unit

UKRAINIAN = (
    "Пацієнтка поступила зі скаргами на ущільнення в лівій молочній залозі. Їй виконано "
    "трепанобіопсію, гістологічний висновок: інвазивна протокова карцинома, ґрейд 2."
)
RUSSIAN = (
    "Пациентка поступила с жалобами на уплотнение в левой молочной железе. Выполнена "
    "трепанобиопсия, гистологическое заключение: инвазивная протоковая карцинома."
)


# --- plain text encodings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        UKRAINIAN.encode("cp1251"),
        UKRAINIAN.encode("utf-8"),
        codecs.BOM_UTF8 + UKRAINIAN.encode("utf-8"),
        UKRAINIAN.encode("utf-16"),  # with a BOM, little-endian here
        codecs.BOM_UTF16_BE + UKRAINIAN.encode("utf-16-be"),
        UKRAINIAN.encode("utf-32"),
    ],
    ids=["cp1251", "utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "utf-32-bom"],
)
def test_ukrainian_text_decodes_in_every_usual_encoding(encoded: bytes) -> None:
    assert decode_text(encoded) == UKRAINIAN


def test_russian_in_cp1251_decodes() -> None:
    assert decode_text(RUSSIAN.encode("cp1251")) == RUSSIAN


def test_utf8_cut_in_the_middle_of_a_letter_keeps_the_rest() -> None:
    # A text file is read up to a byte limit, which may fall inside a two-byte letter.
    cut = "Пацієнтка".encode()[:9]  # П а ц і and the first byte of є
    assert decode_text(cut) == "Паці"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("blank.txt", UnreadableReason.NO_TEXT), ("digits.txt", UnreadableReason.NO_TEXT)],
)
def test_text_files_without_letters(tmp_path: Path, name: str, reason: UnreadableReason) -> None:
    path = tmp_path / name
    path.write_text("   \r\n\t \n" if name == "blank.txt" else "12.03.2025 118 5,6 212\n")
    outcome = read_document(path, extraction.TEXT, Limits())
    assert outcome.kind == "unreadable"
    assert outcome.reason is reason


def test_an_empty_text_file_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    outcome = read_document(path, extraction.TEXT, Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.NO_TEXT)


def test_only_the_first_bytes_of_a_huge_text_file_are_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_bytes((UKRAINIAN + "\n").encode("utf-8") * 20_000)  # 6 MB
    outcome = read_document(path, extraction.TEXT, Limits(max_text_bytes=64 * 1024))
    assert (outcome.kind, outcome.main_language) == ("text", "uk")
    assert outcome.method is ExtractionMethod.PLAIN_TEXT


# --- text layers ---------------------------------------------------------------------------------


def test_mojibake_is_recognised() -> None:
    mojibake = UKRAINIAN.encode("cp1251").decode("latin-1")  # "Ïàö³ºíòêà ..."
    assert looks_garbled(mojibake)
    assert looks_garbled("\ue001\ue002\ue003 \ue004\ue005 abc")  # private-use glyphs


@pytest.mark.parametrize(
    "text",
    [
        "Die Patientin wurde wegen eines tastbaren Knotens in der linken Brust aufgenommen.",
        "Pacjentka została przyjęta do szpitala z powodu guza lewej piersi.",
        "A beteg általános állapota jó, étvágya megtartott, fájdalmat nem érez.",
        "La patiente a été hospitalisée pour une masse du sein gauche découverte à l'examen.",
        "Hasta sol memede ele gelen kitle şikâyeti ile servise yatırıldı.",
        UKRAINIAN,
        "",
    ],
)
def test_real_text_is_not_mojibake(text: str) -> None:
    assert not looks_garbled(text)


# --- Tesseract's TSV -----------------------------------------------------------------------------


def test_tsv_gives_one_line_per_paragraph_and_a_letter_weighted_confidence() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight"
    rows = [
        header + "\tconf\ttext",
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t",
        "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90.0\tДіагноз:",  # 7 letters
        "5\t1\t1\t1\t2\t1\t0\t0\t10\t10\t60.0\tрак",  # 3 letters, next line, same paragraph
        "5\t1\t1\t1\t2\t2\t0\t0\t10\t10\t10.0\t12.03",  # no letters: no weight
        "5\t1\t2\t1\t1\t1\t0\t0\t10\t10\t80.0\tC50",  # 1 letter, another block
        "5\t1\t2\t1\t1\t2\t0\t0\t10\t10\t95.0\t ",  # blank word: ignored
    ]
    result = parse_tsv("\n".join(rows))
    assert result.text == "Діагноз: рак 12.03\nC50"
    assert result.words == 4
    assert result.confidence == pytest.approx((90 * 7 + 60 * 3 + 80 * 1) / 11)


def test_tsv_without_words_has_no_confidence() -> None:
    assert parse_tsv("level\tconf\ttext\n") == parse_tsv("")
    assert parse_tsv("").confidence == 0.0


# --- DOCX ----------------------------------------------------------------------------------------


def test_docx_text_includes_tables_and_nested_tables(tmp_path: Path) -> None:
    word = docx.Document()
    word.add_paragraph("ENGLISH HEADING ONLY")
    table = word.add_table(rows=1, cols=2)
    table.cell(0, 0).text = UKRAINIAN
    nested = table.cell(0, 1).add_table(rows=1, cols=1)
    nested.cell(0, 0).text = "Гемоглобін 118 г/л, лейкоцити в нормі"
    path = tmp_path / "tables.docx"
    word.save(str(path))
    extracted = extraction.extract(path, extraction.DOCX, Limits())
    assert UKRAINIAN in extracted.text
    assert "Гемоглобін 118 г/л" in extracted.text
    assert read_document(path, extraction.DOCX, Limits()).main_language == "uk"


def test_a_docx_without_text(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    word = docx.Document()
    word.add_paragraph("")
    word.add_table(rows=2, cols=2)
    word.save(str(path))
    outcome = read_document(path, extraction.DOCX, Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.NO_TEXT)
    assert outcome.detail == "The Word document has no text."


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            extraction.OLE_MAGIC + b"\x00" * 600 + "EncryptionInfo".encode("utf-16-le"),
            UnreadableReason.ENCRYPTED,
        ),
        (extraction.OLE_MAGIC + b"\x00" * 600 + "WordDocument".encode("utf-16-le"), None),
        (b"PK\x03\x04 not really a zip", UnreadableReason.CORRUPT),
    ],
    ids=["encrypted-ooxml", "legacy-doc", "broken-zip"],
)
def test_what_is_not_a_docx(
    tmp_path: Path, content: bytes, reason: UnreadableReason | None
) -> None:
    path = tmp_path / "document.docx"
    path.write_bytes(content)
    outcome = read_document(path, extraction.DOCX, Limits())
    assert outcome.kind == "unreadable"
    assert outcome.reason is (reason or UnreadableReason.UNSUPPORTED_FORMAT)


def test_a_docx_expanding_too_far_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.docx"
    word = docx.Document()
    for _ in range(300):
        word.add_paragraph(UKRAINIAN)
    word.save(str(path))
    outcome = read_document(path, extraction.DOCX, Limits(max_docx_xml_bytes=50_000))
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.CORRUPT)
    assert "MiB" in (outcome.detail or "")


# --- PDF -----------------------------------------------------------------------------------------


def _text_pdf(path: Path, text: str) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, text)
    pdf.output(str(path))


def test_an_aes256_pdf_with_a_user_password_is_encrypted(tmp_path: Path) -> None:
    _text_pdf(tmp_path / "plain.pdf", "The patient was admitted for chemotherapy. " * 5)
    writer = PdfWriter(clone_from=PdfReader(tmp_path / "plain.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "locked.pdf")
    outcome = read_document(tmp_path / "locked.pdf", extraction.PDF, Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.ENCRYPTED)


def test_an_aes256_pdf_with_an_owner_password_only_is_read(tmp_path: Path) -> None:
    _text_pdf(tmp_path / "plain.pdf", "The patient was admitted for chemotherapy. " * 5)
    writer = PdfWriter(clone_from=PdfReader(tmp_path / "plain.pdf"))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    writer.write(tmp_path / "restricted.pdf")
    outcome = read_document(tmp_path / "restricted.pdf", extraction.PDF, Limits())
    assert (outcome.kind, outcome.main_language) == ("text", "en")


def _opened_by_pypdf(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every PDF pypdf opens for extraction from now on."""
    opened: list[Path] = []

    def recording(path: Path, **options: object) -> PdfReader:
        opened.append(path)
        return PdfReader(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(extraction, "PdfReader", recording)
    return opened


def test_a_plain_pdf_is_read_by_pdfium_without_pypdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pypdf parsed every PDF before pdfium read it (a tenth of reading a text PDF); a PDF that
    pdfium opens, unencrypted and with pages, is read by pdfium alone, page count included."""
    opened = _opened_by_pypdf(monkeypatch)
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for _ in range(3):
        pdf.add_page()
        pdf.multi_cell(0, 6, "The patient was admitted for chemotherapy and tolerated it. " * 5)
    pdf.output(str(tmp_path / "three.pdf"))
    outcome = read_document(tmp_path / "three.pdf", extraction.PDF, Limits())
    assert (outcome.kind, outcome.main_language, outcome.pages) == ("text", "en", 3)
    assert opened == []


def test_pypdf_still_checks_an_encrypted_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _opened_by_pypdf(monkeypatch)
    outcome = read_document(FIXTURES / "referral_owner_password_uk.pdf", extraction.PDF, Limits())
    assert (outcome.kind, outcome.main_language) == ("text", "uk")
    assert opened == [FIXTURES / "referral_owner_password_uk.pdf"]


def test_a_page_pdfium_cannot_read_is_read_by_pypdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pypdf is opened when pdfium fails on a page, and only once for the document."""
    opened = _opened_by_pypdf(monkeypatch)
    _text_pdf(tmp_path / "plain.pdf", "The patient was admitted for chemotherapy. " * 5)
    writer = PdfWriter(clone_from=PdfReader(tmp_path / "plain.pdf"))
    writer.add_page(writer.pages[0])
    writer.write(tmp_path / "two.pdf")

    def failing(self: object) -> object:
        raise extraction.pdfium.PdfiumError("no text page")

    monkeypatch.setattr(extraction.pdfium.PdfPage, "get_textpage", failing)
    outcome = read_document(tmp_path / "two.pdf", extraction.PDF, Limits())
    assert (outcome.kind, outcome.main_language, outcome.pages) == ("text", "en", 2)
    assert opened == [tmp_path / "two.pdf"]


def test_pages_stop_once_enough_letters_are_read(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for _ in range(30):
        pdf.add_page()
        pdf.multi_cell(0, 6, "The patient was admitted for chemotherapy and tolerated it. " * 10)
    pdf.output(str(tmp_path / "thirty.pdf"))
    # 500 letters a page: 1200 are reached on the third page.
    outcome = read_document(tmp_path / "thirty.pdf", extraction.PDF, Limits(enough_letters=1200))
    assert (outcome.kind, outcome.main_language, outcome.pages) == ("text", "en", 3)
    capped = read_document(tmp_path / "thirty.pdf", extraction.PDF, Limits(max_pages=7))
    assert capped.pages == 7


# --- other failures and the outcome type ---------------------------------------------------------


def test_an_unsupported_media_type(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    path.write_bytes(b"PK\x05\x06" + bytes(18))
    outcome = read_document(path, "application/zip", Limits())
    assert (outcome.kind, outcome.reason) == ("unreadable", UnreadableReason.UNSUPPORTED_FORMAT)
    assert outcome.detail == "Documents of type application/zip cannot be read."


def test_a_dicom_study_is_imaging() -> None:
    outcome = read_document(FIXTURES / "ct_slice.dcm", extraction.DICOM, Limits())
    assert outcome.kind == "imaging"
    assert outcome.method is ExtractionMethod.DICOM
    assert (outcome.pages, outcome.main_language, outcome.languages) == (1, None, ())


def test_an_unreadable_detail_fits_the_contract() -> None:
    outcome = Outcome.unreadable(UnreadableReason.CORRUPT, "x" * 600)
    assert outcome.detail is not None and len(outcome.detail) == 500
    assert Outcome.unreadable(UnreadableReason.CORRUPT, "  ").detail


def test_a_text_outcome_names_its_main_language_among_its_languages() -> None:
    with pytest.raises(ValueError, match="main_language"):
        Outcome.text(
            main_language="uk",
            languages=(),
            confidence=1.0,
            pages=1,
            method=ExtractionMethod.TEXT_LAYER,
        )
