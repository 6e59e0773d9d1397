"""Upload inspection: records decides a document's type by its content, never holds the whole file,
and refuses bad uploads with a precise reason, an HTTP status and a sentence for the patient."""

# Patients' files and names are in Ukrainian: Cyrillic letters that look Latin are meant here.

from __future__ import annotations

import io
import random
import struct
import zipfile
from collections.abc import Callable, Iterator
from functools import cache

import docx
import pydicom
import pytest
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pypdf import PdfWriter

from referrals_common.contracts.records import DocumentKind, RejectionReason
from referrals_records.inspection import (
    ACCEPTED_MEDIA_TYPES,
    DICOM,
    DOCX,
    HEAD_BYTES,
    JPEG,
    PDF,
    PNG,
    TAIL_BYTES,
    TEXT,
    TIFF,
    ContentInspector,
    InspectionResult,
    SizeLimits,
    UploadRefused,
    check_file_name,
    max_bytes_for,
    sniff,
)

pytestmark = pytest.mark.unit

CHUNK = 64 * 1024
MB = 2**20
UKRAINIAN = (
    "Виписка із медичної карти стаціонарного хворого (форма 027/о).\n"
    "Діагноз: рак молочної залози, T2N1M0. Гістологія: інвазивна протокова карцинома.\n"
)


# --- real sample files, built in memory ----------------------------------------------------------


@cache
def pdf_file(pages: int = 3) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@cache
def image_file(image_format: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "white").save(out, image_format)
    return out.getvalue()


@cache
def scanned_tiff() -> bytes:
    """A noisy 600x400 scan written by libtiff, which puts the image directory after the pixels."""
    noise = random.Random(7).randbytes(600 * 400)
    out = io.BytesIO()
    Image.frombytes("L", (600, 400), noise).save(out, "TIFF", compression="tiff_deflate")
    return out.getvalue()


def _dicom_data_set() -> Dataset:
    data_set = Dataset()
    data_set.SOPClassUID = SecondaryCaptureImageStorage
    data_set.SOPInstanceUID = generate_uid()
    data_set.Modality = "OT"
    data_set.StudyDate = "20240301"
    data_set.PatientName = "Test^Patient"
    return data_set


@cache
def dicom_file(preamble: bytes = b"\x00" * 128) -> bytes:
    data_set = _dicom_data_set()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = data_set.SOPClassUID
    meta.MediaStorageSOPInstanceUID = data_set.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    part10 = FileDataset("IM00001", data_set, file_meta=meta, preamble=preamble)
    out = io.BytesIO()
    pydicom.dcmwrite(out, part10, enforce_file_format=True)
    return out.getvalue()


@cache
def bare_dicom_data_set(implicit_vr: bool) -> bytes:
    """The data set alone, without preamble, 'DICM' or file meta (as some old software wrote)."""
    out = io.BytesIO()
    pydicom.dcmwrite(out, _dicom_data_set(), implicit_vr=implicit_vr, little_endian=True)
    return out.getvalue()


@cache
def docx_file() -> bytes:
    document = docx.Document()
    document.add_paragraph(UKRAINIAN)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_file(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


def xlsx_file() -> bytes:
    return zip_file(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
            "_rels/.rels": b"<Relationships/>",
            "xl/workbook.xml": b"<workbook/>",
            "xl/worksheets/sheet1.xml": b"<worksheet/>",
        }
    )


def docm_file() -> bytes:
    return zip_file(
        {
            "[Content_Types].xml": b"<Types/>",
            "word/document.xml": b"<document/>",
            "word/vbaProject.bin": b"\xd0\xcf\x11\xe0 macros",
        }
    )


def elf_file() -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + struct.pack("<HH", 2, 0x3E) + b"\x00" * 200


def pe_file() -> bytes:
    dos_header = b"MZ" + b"\x90\x00\x03\x00" + b"\x00" * 54 + struct.pack("<I", 0x80)
    return dos_header.ljust(0x80, b"\x00") + b"PE\x00\x00" + b"\x4c\x01" + b"\x00" * 200


def html_file() -> bytes:
    return b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>\n"


def svg_file() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>\n'
    )


def chunks(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def inspect(data: bytes, name: str, *, max_bytes: int = 100 * MB) -> InspectionResult:
    """What records does with an upload: sniff its head, then stream it through an inspector."""
    inspector = ContentInspector(sniff(data[:HEAD_BYTES], name), max_bytes=max_bytes)
    for chunk in chunks(data):
        inspector.feed(chunk)
    return inspector.finish()


def refusal(call: Callable[[], object]) -> UploadRefused:
    with pytest.raises(UploadRefused) as caught:
        call()
    return caught.value


ACCEPTED_LIST = (
    "Accepted types: PDF (.pdf), JPEG (.jpg, .jpeg), PNG (.png), TIFF (.tif, .tiff), "
    "DICOM (.dcm, .dicom or no extension), Word (.docx) and plain text (.txt)."
)


# --- accepted types ------------------------------------------------------------------------------


def test_the_accepted_media_types_and_their_extensions() -> None:
    assert ACCEPTED_MEDIA_TYPES == {
        "application/pdf": (".pdf",),
        "image/jpeg": (".jpg", ".jpeg"),
        "image/png": (".png",),
        "image/tiff": (".tif", ".tiff"),
        "application/dicom": (".dcm", ".dicom", ""),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
        "text/plain": (".txt",),
    }


ACCEPTED_SAMPLES = [
    pytest.param(pdf_file, "Виписка_Форма100.pdf", PDF, id="pdf"),
    pytest.param(pdf_file, "BIOPSY.PDF", PDF, id="pdf-upper-case"),
    pytest.param(lambda: image_file("JPEG"), "photo.jpg", JPEG, id="jpeg"),
    pytest.param(lambda: image_file("JPEG"), "PHOTO.JPEG", JPEG, id="jpeg-upper-case"),
    pytest.param(lambda: image_file("PNG"), "scan.Png", PNG, id="png"),
    pytest.param(lambda: image_file("TIFF"), "scan.tif", TIFF, id="tiff-little-endian"),
    pytest.param(scanned_tiff, "SCAN.TIFF", TIFF, id="tiff-written-by-libtiff"),
    pytest.param(dicom_file, "IM00001", DICOM, id="dicom-without-extension"),
    pytest.param(dicom_file, "1.2.840.113619.2.55.3.6041", DICOM, id="dicom-named-by-uid"),
    pytest.param(dicom_file, "ct.DCM", DICOM, id="dicom-dcm"),
    pytest.param(dicom_file, "ct.dicom", DICOM, id="dicom-dicom"),
    pytest.param(docx_file, "Висновок.DOCX", DOCX, id="docx"),
    pytest.param(lambda: UKRAINIAN.encode(), "notes.txt", TEXT, id="text-utf8"),
    pytest.param(lambda: UKRAINIAN.encode("utf-8-sig"), "notes.txt", TEXT, id="text-utf8-bom"),
    pytest.param(lambda: UKRAINIAN.encode("utf-16"), "NOTES.TXT", TEXT, id="text-utf16-bom"),
    pytest.param(lambda: UKRAINIAN.encode("cp1251"), "notes.txt", TEXT, id="text-cp1251"),
]


@pytest.mark.parametrize(("make", "name", "media_type"), ACCEPTED_SAMPLES)
def test_each_accepted_type_is_recognised_by_its_content_whatever_the_case_of_its_name(
    make: Callable[[], bytes], name: str, media_type: str
) -> None:
    data = make()

    result = inspect(data, name)

    assert result.media_type == media_type
    assert result.size_bytes == len(data)


def test_big_tiff_from_big_endian_machines_is_recognised() -> None:
    out = io.BytesIO()
    Image.new("L", (10, 10)).save(out, "TIFF")
    little_endian = out.getvalue()
    assert little_endian.startswith(b"II*\x00")

    assert sniff(b"MM\x00*" + little_endian[4:], "scan.tiff") == TIFF


def test_a_pdf_is_found_after_up_to_1024_bytes_of_leading_junk_as_acrobat_finds_it() -> None:
    junk = b"Content-Type: application/pdf\r\n".ljust(1024, b"\x00")

    assert sniff(junk + pdf_file(), "report.pdf") == PDF
    refused = refusal(lambda: sniff(junk + b"\x00" + pdf_file(), "report.pdf"))
    assert refused.detail.startswith("The file's type could not be recognised.")


def test_the_page_count_of_a_small_pdf_is_reported() -> None:
    assert inspect(pdf_file(pages=3), "report.pdf").pages == 3


def test_a_linearized_pdf_too_large_to_hold_reports_the_page_count_it_declares() -> None:
    body = b"%PDF-1.7\n1 0 obj\n<< /Linearized 1 /L {size} /N 12 /T 99 >>\nendobj\n"
    trailer = b"\nstartxref\n116\n%%EOF\n"
    filler_size = 300_000
    size = len(body) + filler_size + len(trailer)
    size += len(str(size)) - len("{size}")
    data = body.replace(b"{size}", str(size).encode()) + b" " * filler_size + trailer
    assert len(data) == size

    assert inspect(data, "atlas.pdf").pages == 12
    # Bytes appended after linearization (an incremental update) make the declaration stale.
    assert inspect(data[:-6] + b" " * 10 + b"%%EOF\n", "atlas.pdf").pages is None


@pytest.mark.parametrize(
    ("make", "name", "size"),
    [
        pytest.param(lambda: image_file("JPEG", (640, 480)), "a.jpg", (640, 480), id="jpeg"),
        pytest.param(lambda: image_file("PNG", (33, 77)), "a.png", (33, 77), id="png"),
        pytest.param(lambda: image_file("TIFF", (5, 9)), "a.tif", (5, 9), id="tiff"),
        pytest.param(scanned_tiff, "a.tif", (600, 400), id="tiff-directory-in-the-tail"),
    ],
)
def test_an_images_dimensions_are_read_from_its_header(
    make: Callable[[], bytes], name: str, size: tuple[int, int]
) -> None:
    result = inspect(make(), name)

    assert (result.width, result.height) == size
    assert result.pages is None


def test_a_libtiff_scan_keeps_its_directory_past_the_head_which_the_tail_provides() -> None:
    data = scanned_tiff()
    (directory_offset,) = struct.unpack_from("<I", data, 4)

    assert len(data) > HEAD_BYTES + TAIL_BYTES
    assert len(data) - TAIL_BYTES <= directory_offset


def test_nothing_is_learned_about_dicom_docx_or_text_beyond_type_and_size() -> None:
    for data, name in [(dicom_file(), "IM1"), (docx_file(), "a.docx"), (b"hi", "a.txt")]:
        result = inspect(data, name)

        assert (result.pages, result.width, result.height) == (None, None, None)


# --- refused types -------------------------------------------------------------------------------


def test_a_jpeg_named_pdf_is_refused_as_a_mismatch_naming_both() -> None:
    refused = refusal(lambda: sniff(image_file("JPEG"), "Petrenko_Ivan.pdf"))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.status == 415
    assert refused.detail.startswith(
        "The file is named .pdf but is a JPEG image; its name must end in .jpg or .jpeg."
    )
    assert refused.detail.endswith(ACCEPTED_LIST)
    assert "Petrenko" not in refused.detail


@pytest.mark.parametrize(
    ("make", "name", "opening"),
    [
        (
            pdf_file,
            "report",
            "The file name has no extension but the file is a PDF document; its name must end "
            "in .pdf.",
        ),
        (pdf_file, "report.docx", "The file is named .docx but is a PDF document"),
        (
            dicom_file,
            "ct.jpg",
            "The file is named .jpg but is a DICOM file; its name must end in .dcm or .dicom or "
            "have no extension.",
        ),
        (lambda: b"plain notes", "notes.csv", "The file is named .csv but is a plain text file"),
        (
            lambda: image_file("PNG"),
            "scan.Petrenko-Ivan",
            "The file name's extension does not match its content, which is a PNG image",
        ),
    ],
)
def test_a_name_whose_extension_contradicts_the_content_is_refused(
    make: Callable[[], bytes], name: str, opening: str
) -> None:
    refused = refusal(lambda: sniff(make(), name))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.detail.startswith(opening)
    assert refused.detail.endswith(ACCEPTED_LIST)


@pytest.mark.parametrize(
    ("make", "name", "what"),
    [
        (lambda: zip_file({"a.pdf": b"%PDF-1.4"}), "records.zip", "a ZIP archive"),
        (lambda: zip_file({"a.pdf": b"%PDF-1.4"}), "records.pdf", "a ZIP archive"),
        (xlsx_file, "labs.docx", "an Excel workbook (XLSX)"),
        (docm_file, "letter.docx", "a Word document with macros (DOCM)"),
        (elf_file, "scan.pdf", "a Linux program (ELF executable)"),
        (pe_file, "scan.pdf", "a Windows program (EXE or DLL)"),
        (html_file, "report.txt", "an HTML page"),
        (svg_file, "scan.txt", "an SVG image"),
        (lambda: html_file().decode().encode("utf-16"), "report.txt", "an HTML page"),
        (lambda: b"#!/bin/sh\nrm -rf ~\n", "notes.txt", "a script"),
        (lambda: image_file("GIF"), "scan.gif", "a GIF image"),
        (lambda: image_file("BMP"), "scan.bmp", "a BMP image"),
        (lambda: image_file("WEBP"), "scan.webp", "a WebP image"),
        (
            lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
            "IMG_0001.HEIC",
            "a HEIC/HEIF photo",
        ),
        (
            lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504,
            "letter.doc",
            "a legacy or password-protected Microsoft Office file",
        ),
        (
            lambda: b"%PDF-".rjust(200, b" ").replace(b" ", b"<html>", 1),
            "report.pdf",
            "an HTML page",
        ),
    ],
    ids=[
        "zip",
        "zip-named-pdf",
        "xlsx-named-docx",
        "docm-named-docx",
        "elf",
        "pe",
        "html",
        "svg",
        "html-in-utf16",
        "shell-script",
        "gif",
        "bmp",
        "webp",
        "heic",
        "ole2-doc",
        "html-before-a-pdf-header",
    ],
)
def test_recognisable_formats_records_does_not_accept_are_named_in_the_refusal(
    make: Callable[[], bytes], name: str, what: str
) -> None:
    refused = refusal(lambda: sniff(make(), name))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.status == 415
    assert refused.detail.startswith(f"The file is {what}")
    assert refused.detail.endswith(ACCEPTED_LIST)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(random.Random(1).randbytes(4096), id="random-bytes"),
        pytest.param(UKRAINIAN.encode("utf-16-le"), id="utf16-without-bom"),
        pytest.param(bytes(range(1, 32)) * 20, id="control-characters"),
    ],
)
def test_unrecognisable_content_is_refused_as_such(data: bytes) -> None:
    refused = refusal(lambda: sniff(data, "notes.txt"))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.detail == f"The file's type could not be recognised. {ACCEPTED_LIST}"


def test_text_may_contain_a_few_odd_characters_but_not_more_than_5_percent() -> None:
    line = UKRAINIAN.encode("cp1251")[:100]
    assert len(line) == 100

    assert sniff(line[:95] + b"\x01" * 5, "a.txt") == TEXT
    assert refusal(lambda: sniff(line[:94] + b"\x01" * 6, "a.txt")).reason is (
        RejectionReason.UNSUPPORTED_TYPE
    )


def test_a_multibyte_character_cut_at_the_end_of_the_head_is_still_text() -> None:
    data = ("Діагноз " * 10_000).encode()
    head = data[:HEAD_BYTES]
    with pytest.raises(UnicodeDecodeError, match="unexpected end of data"):
        head.decode()

    assert sniff(head, "a.txt") == TEXT
    assert sniff(("Діагноз " * 10_000).encode("utf-16")[: HEAD_BYTES - 1], "a.txt") == TEXT


def test_a_dicom_file_named_im00001_from_a_cd_is_accepted() -> None:
    assert sniff(dicom_file(), "IM00001") == DICOM


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_a_dicom_data_set_without_preamble_is_refused_and_told_to_export_again(
    implicit_vr: bool,
) -> None:
    refused = refusal(lambda: sniff(bare_dicom_data_set(implicit_vr), "IM00001"))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert "without the standard DICOM file header" in refused.detail
    assert "export the images again as standard DICOM files" in refused.detail
    assert refused.detail.endswith(ACCEPTED_LIST)


def test_a_dicom_file_whose_preamble_hides_a_windows_program_is_refused() -> None:
    polyglot = dicom_file(preamble=pe_file()[:128])

    refused = refusal(lambda: sniff(polyglot, "IM00001"))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.detail.startswith("The file is a DICOM file whose preamble holds a program")


def test_a_dicom_file_whose_preamble_is_a_tiff_header_is_dicom() -> None:
    dual_personality = dicom_file(preamble=image_file("TIFF")[:8].ljust(128, b"\x00"))

    assert sniff(dual_personality, "slide.dcm") == DICOM


# --- file names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        pytest.param("", "no name", id="empty"),
        pytest.param("   ", "no name", id="blank"),
        pytest.param("а" * 127 + ".pdf", "longer than 255 bytes", id="too-long-in-utf8"),
        pytest.param("scans/report.pdf", "path separator", id="slash"),
        pytest.param("C:\\scans\\report.pdf", "path separator", id="backslash"),
        pytest.param("../../etc/passwd", "path separator", id="parent-path"),
        pytest.param(".", "'.' or '..'", id="dot"),
        pytest.param("..", "'.' or '..'", id="dot-dot"),
        pytest.param("report\x00.pdf", "control character", id="nul"),
        pytest.param("report\n.pdf", "control character", id="c0-newline"),
        pytest.param("report.pdf\t", "control character", id="c0-trailing-tab"),
        pytest.param("report\x7f.pdf", "control character", id="del"),
        pytest.param("report\x85.pdf", "control character", id="c1"),
        pytest.param("scan\u202efdp.exe", "direction-override", id="right-to-left-override"),
        pytest.param("scan\u202dx.pdf", "direction-override", id="left-to-right-override"),
        pytest.param("scan\u202ax.pdf", "direction-override", id="embedding"),
        pytest.param("scan\u2067fdp.exe", "direction-override", id="isolate"),
    ],
)
def test_bad_file_names_are_refused(name: str, why: str) -> None:
    refused = refusal(lambda: check_file_name(name))

    assert refused.reason is RejectionReason.BAD_NAME
    assert refused.status == 422
    assert why in refused.detail


@pytest.mark.parametrize(
    "name",
    [
        "Виписка_Форма100.pdf",
        "Гістологія (блок 2) — висновок.docx",
        "IM00001",
        "informe médico.pdf",
        "а" * 125 + ".pdf",
        "..report.pdf",
    ],
)
def test_good_file_names_are_accepted_in_any_script(name: str) -> None:
    assert check_file_name(name) == name


def test_a_name_is_returned_nfc_normalised_and_stripped() -> None:
    decomposed = "Виписка_и\u0306.pdf"  # и + combining breve, as macOS spells й

    assert check_file_name(f"  {decomposed} ") == "Виписка_й.pdf"


# --- size ----------------------------------------------------------------------------------------


def test_a_file_over_the_limit_is_refused_mid_stream_as_soon_as_it_crosses_it() -> None:
    data = b"a" * (5 * MB)
    inspector = ContentInspector(TEXT, max_bytes=1 * MB)
    fed: list[int] = []

    def stream() -> None:
        for chunk in chunks(data):
            fed.append(len(chunk))
            inspector.feed(chunk)

    refused = refusal(stream)

    assert sum(fed) == 1 * MB + CHUNK  # the first chunk past the limit, long before the 5 MB end
    assert refused.reason is RejectionReason.TOO_LARGE
    assert refused.status == 413
    assert refused.detail == "The file is larger than the limit of 1 MB."
    assert refusal(lambda: inspector.feed(b"a")).reason is RejectionReason.TOO_LARGE


def test_a_file_of_exactly_the_limit_is_accepted() -> None:
    inspector = ContentInspector(TEXT, max_bytes=1 * MB)
    for chunk in chunks(b"a" * MB):
        inspector.feed(chunk)

    assert inspector.finish().size_bytes == MB


def test_the_limit_is_said_in_megabytes() -> None:
    inspector = ContentInspector(PDF, max_bytes=int(1.5 * MB))

    assert refusal(lambda: inspector.feed(bytes(2 * MB))).detail.endswith("limit of 1.5 MB.")


def test_the_limit_follows_the_media_type_found_in_the_content_not_the_kind() -> None:
    limits = SizeLimits(dicom=2048 * MB, pdf=100 * MB, image=50 * MB, docx=40 * MB, text=5 * MB)

    assert max_bytes_for(DICOM, limits) == 2048 * MB
    assert max_bytes_for(PDF, limits) == 100 * MB
    assert [max_bytes_for(image, limits) for image in (JPEG, PNG, TIFF)] == [50 * MB] * 3
    assert max_bytes_for(DOCX, limits) == 40 * MB
    assert max_bytes_for(TEXT, limits) == 5 * MB
    with pytest.raises(ValueError, match="not an accepted media type"):
        max_bytes_for(DocumentKind.IMAGING_STUDY, limits)  # a kind is not a media type


def test_the_inspector_never_holds_more_than_head_and_tail() -> None:
    data = random.Random(5).randbytes(5 * MB)
    inspector = ContentInspector(DICOM, max_bytes=10 * MB)

    for chunk in chunks(data, 100_000):
        inspector.feed(chunk)
        assert inspector.buffered_bytes <= HEAD_BYTES + TAIL_BYTES

    assert inspector.buffered_bytes == HEAD_BYTES + TAIL_BYTES
    assert (len(inspector._head), len(inspector._tail)) == (HEAD_BYTES, TAIL_BYTES)
    assert inspector.head == data[:HEAD_BYTES]
    assert inspector.tail == data[-TAIL_BYTES:]
    assert inspector.finish().size_bytes == 5 * MB


def test_head_and_tail_are_kept_right_whatever_the_chunking() -> None:
    data = random.Random(6).randbytes(HEAD_BYTES + 3 * TAIL_BYTES)
    for size in (1, 777, TAIL_BYTES, CHUNK + 1, len(data)):
        inspector = ContentInspector(DICOM, max_bytes=MB)
        for chunk in chunks(data, size):
            inspector.feed(chunk)

        assert (inspector.head, inspector.tail) == (data[:HEAD_BYTES], data[-TAIL_BYTES:])


# --- damaged and dangerous content ---------------------------------------------------------------


def test_an_empty_file_is_refused() -> None:
    assert refusal(lambda: sniff(b"", "report.pdf")).reason is RejectionReason.EMPTY
    refused = refusal(ContentInspector(PDF, max_bytes=MB).finish)
    assert refused.reason is RejectionReason.EMPTY
    assert refused.status == 422


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pdf_file()[:-20], id="no-eof-marker"),
        pytest.param(pdf_file().replace(b"startxref", b"startxxxx"), id="no-startxref"),
        pytest.param(
            pdf_file() + random.Random(2).randbytes(3 * TAIL_BYTES), id="trailer-not-at-the-end"
        ),
    ],
)
def test_a_pdf_without_its_trailer_is_corrupt(data: bytes) -> None:
    refused = refusal(lambda: inspect(data, "report.pdf"))

    assert refused.reason is RejectionReason.CORRUPT
    assert refused.status == 422
    assert "cut short" in refused.detail


def test_a_docx_cut_short_is_corrupt() -> None:
    refused = refusal(lambda: inspect(docx_file()[: len(docx_file()) // 2], "letter.docx"))

    assert refused.reason is RejectionReason.CORRUPT


@pytest.mark.parametrize(
    ("data", "name"),
    [
        pytest.param(image_file("PNG")[:20], "scan.png", id="png-cut-in-its-header"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "scan.png", id="png-garbage"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 100, "photo.jpg", id="jpeg-without-frame"),
        pytest.param(b"II*\x00\xff\xff\xff\x00" + b"\x00" * 100, "scan.tif", id="tiff-bad-ifd"),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_an_image_whose_header_cannot_be_read_is_corrupt(data: bytes, name: str) -> None:
    refused = refusal(lambda: inspect(data, name))

    assert refused.reason is RejectionReason.CORRUPT
    assert refused.detail.startswith("The image's header could not be read")


def test_an_image_whose_header_lies_past_the_kept_head_is_refused_rather_than_trusted() -> None:
    # 100 KB of metadata before the pixels: the dimensions are beyond the first 64 KiB, so the
    # decompression-bomb check cannot be made and the image is refused (fail closed).
    metadata = PngImagePlugin.PngInfo()
    metadata.add_text("Comment", "x" * 100_000)
    out = io.BytesIO()
    Image.new("L", (300, 200)).save(out, "PNG", pnginfo=metadata)

    refused = refusal(lambda: inspect(out.getvalue(), "scan.png"))

    assert refused.reason is RejectionReason.CORRUPT
    assert "does not fit in the first 64 KiB" in refused.detail


def test_a_20000_by_20000_png_is_a_decompression_bomb_though_only_kilobytes_long() -> None:
    bomb = image_file("PNG", (20_000, 20_000), "1")
    assert len(bomb) < 100_000

    refused = refusal(lambda: inspect(bomb, "scan.png"))

    assert refused.reason is RejectionReason.DECOMPRESSION_BOMB
    assert refused.status == 422
    assert refused.detail == (
        "The image is 20000 x 20000 pixels, more than the 100,000,000 pixels records accepts."
    )


def test_a_12_megapixel_photo_is_fine() -> None:
    result = inspect(image_file("JPEG", (3000, 4000)), "IMG_2024.jpg")

    assert (result.width, result.height) == (3000, 4000)


def test_the_pixel_limit_can_be_lowered() -> None:
    inspector = ContentInspector(PNG, max_bytes=MB, max_image_pixels=1000)
    inspector.feed(image_file("PNG", (40, 30)))

    assert refusal(inspector.finish).reason is RejectionReason.DECOMPRESSION_BOMB


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b" \r\n\t \n", id="whitespace"),
        pytest.param(b"\xef\xbb\xbf", id="utf8-bom-only"),
        pytest.param(b"\xff\xfe", id="utf16-bom-only"),
    ],
)
def test_text_with_nothing_printable_is_corrupt(data: bytes) -> None:
    refused = refusal(lambda: inspect(data, "notes.txt"))

    assert refused.reason is RejectionReason.CORRUPT
    assert refused.detail == "The text file contains no readable text."


def test_text_that_turns_binary_after_its_head_is_corrupt() -> None:
    data = UKRAINIAN.encode() * 2000 + b"\x00\x01\x02" + UKRAINIAN.encode()
    assert data.find(b"\x00") > HEAD_BYTES

    refused = refusal(lambda: inspect(data, "notes.txt"))

    assert refused.reason is RejectionReason.CORRUPT
    assert refused.detail == "The text file contains binary data after its beginning."


def test_long_utf16_text_with_its_nul_bytes_is_fine() -> None:
    data = UKRAINIAN.encode("utf-16") + ("Latin text " * 10_000).encode("utf-16-le")

    assert inspect(data, "notes.txt").size_bytes == len(data)


# --- the refusal itself --------------------------------------------------------------------------


def test_every_refusal_explains_itself_briefly_without_repeating_the_file_name() -> None:
    name = "Petrenko_Ivan_1975.pdf"
    attempts: list[Callable[[], object]] = [
        lambda: sniff(zip_file({"x": b"y"}), name),
        lambda: sniff(image_file("PNG"), name),
        lambda: sniff(bare_dicom_data_set(True), name),
        lambda: inspect(pdf_file()[:-10], name),
        lambda: inspect(b"%PDF-1.4\n" + bytes(MB), name, max_bytes=MB),
        lambda: check_file_name(name + "\u202e"),
    ]
    for attempt in attempts:
        refused = refusal(attempt)

        assert 0 < len(refused.detail) <= 500  # DocumentRejected.detail's limit
        assert "Petrenko" not in refused.detail
        assert str(refused) == refused.detail


def test_an_inspector_is_only_built_for_an_accepted_type_and_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="not an accepted media type"):
        ContentInspector("text/html", max_bytes=MB)
    with pytest.raises(ValueError, match="positive"):
        ContentInspector(PDF, max_bytes=0)


def test_nothing_may_be_fed_after_the_inspection_is_finished() -> None:
    inspector = ContentInspector(TEXT, max_bytes=MB)
    inspector.feed(b"notes")
    inspector.finish()

    with pytest.raises(RuntimeError):
        inspector.feed(b"more")


# --- where filetype's matchers decide otherwise than the signature tables they replaced ----------


def test_a_canon_raw_photo_is_refused_by_name_although_it_is_shaped_like_a_tiff() -> None:
    cr2 = b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(200)

    refused = refusal(lambda: sniff(cr2, "IMG_0001.tif"))

    assert refused.reason is RejectionReason.UNSUPPORTED_TYPE
    assert refused.detail.startswith("The file is a camera raw photo (Canon CR2")
    assert refused.detail.endswith(ACCEPTED_LIST)


def test_a_png_signature_cut_after_four_bytes_is_a_png_refused_as_damaged() -> None:
    damaged = b"\x89PNG" + b"garbage" + bytes(100)

    assert sniff(damaged, "scan.png") == PNG
    refused = refusal(lambda: inspect(damaged, "scan.png"))
    assert refused.reason is RejectionReason.CORRUPT
    assert refused.status == 422


def test_an_empty_zip_archive_is_refused_as_a_zip_archive() -> None:
    refused = refusal(lambda: sniff(b"PK\x05\x06" + bytes(18), "records.zip"))

    assert refused.detail.startswith("The file is a ZIP archive, which records does not accept.")


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(b"%! urgent: bring the CT disc\n", id="percent-bang"),
        pytest.param(b"MZ ward, bed 4: biopsy booked\n", id="mz"),
        pytest.param(b"BM trephine biopsy, 12 March 2024\n", id="bm"),
    ],
)
def test_a_note_starting_with_the_letters_of_a_short_signature_is_text(note: bytes) -> None:
    assert sniff(note, "notes.txt") == TEXT
