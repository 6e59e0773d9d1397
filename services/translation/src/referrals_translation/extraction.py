"""The text of a stored document, by media type, within the `Limits`.

Every format is read from a local file (the consumer streams the object out of storage first) and
only as far as language identification needs: the first pages of a PDF, the first frames of a
TIFF, the first `max_text_bytes` of a text file. What cannot be read raises `Unreadable` with the
contract's reason and an English detail that never quotes the document.

* **PDF**: the text layer of each page with pdfium (pypdf where pdfium cannot open the file or a
  page; pypdf also checks the encryption of an encrypted PDF, and the page tree of one where
  pdfium finds no pages, first). A page with (almost) no text
  layer, or one whose text is mojibake (a Cyrillic font without a Unicode map comes out as
  "Ïàö³ºíò"), is a scan: it is rendered with pdfium at `ocr_dpi` and OCR'd (`ocr`), at most
  `max_ocr_pages` of them. A password-protected PDF is `encrypted` unless it opens with the
  empty password (an owner password only restricts printing or copying, and is common on
  hospital exports).
* **JPEG, PNG, TIFF** (every frame of a multi-page TIFF): OCR, after refusing declared sizes above
  `max_image_pixels` (a decompression bomb is a small file whose header announces gigapixels),
  honouring the EXIF orientation of photos, and scaling huge photos down.
* **DOCX**: python-docx's paragraphs wherever they are (body, tables, nested tables, text boxes).
  An OLE container instead of a ZIP is an encrypted Office file (or an old .doc). Zip bombs are
  refused before anything is inflated or parsed: the ZIP's end record is read first, and a
  directory of more than `MAX_DOCX_ENTRIES` entries or `MAX_DOCX_DIRECTORY_BYTES` bytes is refused
  before `zipfile` builds an object per entry; then the entries' declared sizes, which bound what
  `zipfile` ever inflates (more fails its CRC check), must stay within `MAX_DOCX_INFLATED_BYTES`
  in all (`MAX_DOCX_MARKUP_BYTES` for the XML parts), `MAX_DOCX_RATIO` times an entry's
  compressed size, and `max_docx_xml_bytes` for the main part. An archive nested inside is never
  opened, only carried as bytes.
* **Plain text**: a byte-order mark decides (UTF-8, UTF-16, UTF-32); otherwise strict UTF-8;
  otherwise charset-normalizer (CP1251 for most legacy Ukrainian files).
* **DICOM**: parsed with pydicom without the pixel data, to make sure it is a real DICOM object;
  it is imaging, and has no language.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Final

import charset_normalizer
import docx
import pydicom
import pypdfium2 as pdfium
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from PIL import Image, ImageOps
from pypdf import PasswordType, PdfReader

from referrals_common.contracts.translation import ExtractionMethod, UnreadableReason
from referrals_common.media_types import DICOM, JPEG, PNG, TIFF
from referrals_common.media_types import DOCX as DOCX
from referrals_common.media_types import PDF as PDF
from referrals_common.media_types import TEXT as TEXT
from referrals_translation import ocr
from referrals_translation.language import count_letters
from referrals_translation.outcome import Limits

log = logging.getLogger(__name__)

IMAGES: Final = frozenset({JPEG, PNG, TIFF})

OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""The start of an OLE compound file: an encrypted OOXML document, or a legacy .doc."""

GARBLED_SHARE: Final = 0.35
"""A text layer with more of its letters in Latin-1's accented range is mojibake."""

MAX_DOCX_ENTRIES: Final = 2_000
"""A DOCX with more ZIP entries is refused (a real one has tens, a few hundred with pictures)."""

MAX_DOCX_DIRECTORY_BYTES: Final = 1024 * 1024
"""A DOCX whose ZIP central directory is larger is refused before `zipfile` reads it."""

MAX_DOCX_INFLATED_BYTES: Final = 128 * 2**20
"""A DOCX whose entries inflate to more bytes in all is refused (python-docx holds its parts in
memory): records accepts DOCX files of 50 MB, mostly pictures that do not compress."""

MAX_DOCX_MARKUP_BYTES: Final = 64 * 2**20
"""Of those, what the XML parts (parsed into trees about three times their size) may inflate to
in all: with the rest as pictures, a worker reading a DOCX at both limits peaks below 300 MB above
what it had."""

MAX_DOCX_RATIO: Final = 200
"""An entry inflating to more than this many times its compressed size (and past
`DOCX_RATIO_FROM` bytes) is a zip bomb; Word's XML compresses 5 to 20 times."""

DOCX_RATIO_FROM: Final = 2**20
"""Entries inflating to at most this many bytes may have any compression ratio."""

SMALL_IMAGE_SIDE: Final = 1_200
"""Images whose longest side is shorter are enlarged twice for OCR (screenshots, thumbnails)."""

_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Unreadable(Exception):
    """The document cannot be read: the contract's reason and an English detail."""

    def __init__(self, reason: UnreadableReason, detail: str, *, pages: int = 0) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.pages = pages


@dataclass(slots=True)
class Extracted:
    """The text found in a document, and how."""

    text: str
    pages: int
    """Pages (or frames) whose text was used."""
    method: ExtractionMethod
    imaging: bool = False
    """A DICOM study: no text is expected."""
    ocr_poor_pages: int = 0
    """Pages OCR'd with too little confidence, whose text was discarded."""
    ocr_poor_confidence: float = 0.0
    """The best confidence among those pages."""
    unsupported_script: str | None = None
    """A script OSD found that no installed language pack reads."""
    ocr_failure: str | None = None
    """Why Tesseract failed on a page (timed out, crashed), when it did."""


def extract(path: Path, media_type: str, limits: Limits, *, force_ocr: bool = False) -> Extracted:
    """The text of the document at `path`; raises `Unreadable`.

    `force_ocr` OCRs the pages of a PDF even when they have a text layer (used when that text
    layer turned out to be in no recognisable language).
    """
    if path.stat().st_size == 0:
        if media_type == TEXT:
            raise Unreadable(UnreadableReason.NO_TEXT, "The text file is empty.")
        raise Unreadable(UnreadableReason.CORRUPT, "The file is empty (0 bytes).")
    if media_type == PDF:
        return _pdf(path, limits, force_ocr=force_ocr)
    if media_type in IMAGES:
        return _image(path, limits)
    if media_type == DOCX:
        return _docx(path, limits)
    if media_type == TEXT:
        return _plain_text(path, limits)
    if media_type == DICOM:
        return _dicom(path)
    raise Unreadable(
        UnreadableReason.UNSUPPORTED_FORMAT, f"Documents of type {media_type} cannot be read."
    )


# --- OCR across the pages of one document --------------------------------------------------------


@dataclass(slots=True)
class _OcrSession:
    """OCR of a document's pages, sharing the script decision and the budget across pages."""

    limits: Limits
    packs: str | None = None
    """Language packs chosen on the first page with enough text for OSD."""
    pages: int = 0
    letters: int = 0
    poor_pages: int = 0
    poor_confidence: float = 0.0
    unsupported_script: str | None = None
    failure: str | None = None
    texts: list[str] = field(default_factory=list)

    def budget_left(self) -> bool:
        return (
            self.pages < self.limits.max_ocr_pages and self.letters < self.limits.ocr_enough_letters
        )

    def read(self, image: Image.Image, *, dpi: int | None) -> None:
        """OCR one page; keep its text unless it came out too poor to trust."""
        page = _for_ocr(image, self.limits)
        self.pages += 1
        try:
            result = self._recognise(page, dpi)
        except ocr.OcrError as exc:  # this page only: the others may read
            self.failure = str(exc)
            return
        if result is None or count_letters(result.text) == 0:
            return
        if result.confidence < self.limits.min_ocr_confidence:
            self.poor_pages += 1
            self.poor_confidence = max(self.poor_confidence, result.confidence)
            return
        self.texts.append(result.text)
        self.letters += count_letters(result.text)

    def _recognise(self, page: Image.Image, dpi: int | None) -> ocr.Recognised | None:
        timeout = self.limits.ocr_timeout_s
        if self.packs is not None:
            first = ocr.recognise(page, self.packs, dpi=dpi, timeout=timeout)
            if first.confidence >= self.limits.min_ocr_confidence:
                return first
            retried = self._examine_and_recognise(page, dpi)  # rotated, or another script?
            return first if retried is None or retried.confidence < first.confidence else retried
        return self._examine_and_recognise(page, dpi)

    def _examine_and_recognise(self, page: Image.Image, dpi: int | None) -> ocr.Recognised | None:
        timeout = self.limits.ocr_timeout_s
        orientation = ocr.detect_orientation(page, timeout=timeout)
        packs = ocr.languages_for(orientation)
        if packs is None:
            assert orientation is not None
            self.unsupported_script = orientation.script
            return None
        if orientation is not None and self.packs is None:
            self.packs = packs
        result = ocr.recognise(ocr.upright(page, orientation), packs, dpi=dpi, timeout=timeout)
        if result.confidence < self.limits.min_ocr_confidence and packs != ocr.FALLBACK_LANGUAGES:
            fallback = ocr.recognise(
                ocr.upright(page, orientation), ocr.FALLBACK_LANGUAGES, dpi=dpi, timeout=timeout
            )
            if fallback.confidence > result.confidence:
                return fallback
        return result

    def extracted(
        self, text_layer: list[str], text_layer_pages: int, layer_letters: int = 0
    ) -> Extracted:
        """The document's text: its text layer's pages (with `layer_letters` letters in all, as
        the caller counted them page by page), then the pages OCR'd."""
        method = (
            ExtractionMethod.OCR if self.letters > layer_letters else ExtractionMethod.TEXT_LAYER
        )
        return Extracted(
            text="\n\n".join([*text_layer, *self.texts]),
            pages=text_layer_pages + self.pages,
            method=method,
            ocr_poor_pages=self.poor_pages,
            ocr_poor_confidence=self.poor_confidence,
            unsupported_script=self.unsupported_script,
            ocr_failure=self.failure,
        )


def _for_ocr(image: Image.Image, limits: Limits) -> Image.Image:
    """A grey copy of an image for Tesseract, on white, scaled into a workable size."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    grey = image.convert("L")
    longest = max(grey.size)
    if longest > limits.ocr_max_side:
        factor = limits.ocr_max_side / longest
    elif longest < SMALL_IMAGE_SIDE:
        factor = 2.0
    else:
        return grey
    size = (max(1, round(grey.width * factor)), max(1, round(grey.height * factor)))
    return grey.resize(size, Image.Resampling.LANCZOS)


# --- PDF -----------------------------------------------------------------------------------------


def _pdf(path: Path, limits: Limits, *, force_ocr: bool) -> Extracted:
    fast = _open_pdfium(path)
    try:
        total = _pdfium_pages(fast)
        if total is None:  # pdfium cannot open it, or it is encrypted, or has no pages
            reader = _open_pdf(path)
            total = _pypdf_pages(reader)
            pypdf: PdfReader | Callable[[], PdfReader] = reader
        else:
            # A plain PDF pdfium reads needs no parsing by pypdf (a tenth of reading a text
            # PDF): pypdf opens it only if pdfium cannot read a page's text.
            pypdf = cache(partial(_open_pdf, path))
        text_layer: list[str] = []
        scanned: list[int] = []
        letters = 0
        for index in range(min(total, limits.max_pages)):
            if letters >= limits.enough_letters:
                break
            text = "" if force_ocr else _page_text(pypdf, fast, index)
            page_letters = count_letters(text)
            if page_letters >= limits.min_text_layer_letters and not looks_garbled(
                text, page_letters
            ):
                text_layer.append(text)
                letters += page_letters
            else:
                scanned.append(index)
    finally:
        if fast is not None:
            fast.close()
    session = _OcrSession(limits)
    if scanned and letters < limits.enough_letters:
        _ocr_pdf_pages(path, scanned, session)
    return session.extracted(text_layer, len(text_layer), letters)


def _pdfium_pages(document: pdfium.PdfDocument | None) -> int | None:
    """How many pages pdfium finds in a PDF it opened without a security handler; None when it
    could not open it, the PDF is encrypted (pypdf decides whether it may be read) or pdfium
    finds no pages (pypdf says why)."""
    if document is None or pdfium.raw.FPDF_GetSecurityHandlerRevision(document.raw) != -1:
        return None
    return len(document) or None


def _pypdf_pages(reader: PdfReader) -> int:
    try:
        total = len(reader.pages)
    except Exception as exc:  # pypdf on a broken page tree: anything it raises
        raise Unreadable(UnreadableReason.CORRUPT, "The PDF's page tree is broken.") from exc
    if total == 0:
        raise Unreadable(UnreadableReason.CORRUPT, "The PDF has no pages.")
    return total


def _open_pdf(path: Path) -> PdfReader:
    try:
        reader = PdfReader(path, strict=False)
    except Exception as exc:  # pypdf on a hostile file: anything it raises means unreadable
        raise Unreadable(UnreadableReason.CORRUPT, "The file is not a readable PDF.") from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # an encryption pypdf does not implement
            raise Unreadable(
                UnreadableReason.ENCRYPTED, "The PDF is encrypted with an unsupported method."
            ) from exc
        if opened == PasswordType.NOT_DECRYPTED:
            raise Unreadable(UnreadableReason.ENCRYPTED, "The PDF is protected by a password.")
    return reader


def _open_pdfium(path: Path) -> pdfium.PdfDocument | None:
    """The PDF opened with pdfium for its text layer (several times faster than pypdf's), or
    None if pdfium cannot open it: pypdf then reads the text."""
    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        log.debug("pdfium cannot open the PDF; its text is read with pypdf", exc_info=True)
        return None


def _page_text(
    reader: PdfReader | Callable[[], PdfReader], fast: pdfium.PdfDocument | None, index: int
) -> str:
    """The text layer of one page, by pdfium, else pypdf (`reader`, or what opens it); a page
    neither can parse counts as having none (it may still render, so it is OCR'd)."""
    if fast is not None:
        try:
            page = fast[index]
            try:
                textpage = page.get_textpage()
                try:
                    text: str = textpage.get_text_bounded()
                    return text.replace("\r\n", "\n")
                finally:
                    textpage.close()
            finally:
                page.close()
        except pdfium.PdfiumError:
            log.debug("pdfium reads no text on page %d; trying pypdf", index + 1, exc_info=True)
    try:
        pypdf = reader() if callable(reader) else reader
        return pypdf.pages[index].extract_text() or ""
    except Exception:  # a broken content stream, or a file pypdf cannot open
        log.debug("no text layer on page %d", index + 1, exc_info=True)
        return ""


_LATIN1_LETTERS: Final = re.compile("[\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff]")
"""The letters of U+00C0-U+00FF (all of them but × and ÷)."""
_UNKNOWN_GLYPHS: Final = re.compile("[\ufffd\ue000-\uf8ff]")


def looks_garbled(text: str, letters: int | None = None) -> bool:
    """Whether a text layer is mojibake: 8-bit Cyrillic decoded as Latin-1, or private glyphs.
    (`letters`: the text's `count_letters`, when the caller has it.)"""
    if letters is None:
        letters = count_letters(text)
    if not letters:
        return False
    # counted by the regular expression engine: a Python test per character took about a tenth
    # of reading a text PDF
    latin1 = len(_LATIN1_LETTERS.findall(text))
    unknown = len(_UNKNOWN_GLYPHS.findall(text))
    return latin1 / letters > GARBLED_SHARE or unknown / letters > GARBLED_SHARE


def _ocr_pdf_pages(path: Path, indexes: list[int], session: _OcrSession) -> None:
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise Unreadable(UnreadableReason.CORRUPT, "The PDF's pages cannot be rendered.") from exc
    try:
        for index in indexes:
            if not session.budget_left():
                break
            rendered = _render(document, index, session.limits)
            if rendered is not None:
                session.read(rendered[0], dpi=rendered[1])
    finally:
        document.close()


def _render(
    document: pdfium.PdfDocument, index: int, limits: Limits
) -> tuple[Image.Image, int] | None:
    """A page rendered in grey at `ocr_dpi`, or less when that would exceed the pixel limit."""
    try:
        page = document[index]
        width, height = page.get_size()
        scale = limits.ocr_dpi / 72
        pixels = width * height * scale * scale
        if pixels > limits.max_render_pixels:
            scale *= math.sqrt(limits.max_render_pixels / pixels)
        image = page.render(scale=scale, grayscale=True).to_pil()
    except pdfium.PdfiumError:
        log.debug("page %d does not render", index + 1, exc_info=True)
        return None
    return image, round(scale * 72)


# --- images --------------------------------------------------------------------------------------


def _image(path: Path, limits: Limits) -> Extracted:
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels  # Pillow's own guard, behind ours
    session = _OcrSession(limits)
    try:
        with Image.open(path) as image:
            for index, frame in enumerate(_frames(image, limits)):
                if not session.budget_left():
                    break
                session.read(ImageOps.exif_transpose(frame) if index == 0 else frame, dpi=None)
    except Unreadable:
        raise
    except Image.DecompressionBombError as exc:
        raise Unreadable(UnreadableReason.CORRUPT, _too_many_pixels_detail(limits)) from exc
    except Exception as exc:  # Pillow on a hostile or truncated file: anything it raises
        raise Unreadable(UnreadableReason.CORRUPT, "The image file is damaged.") from exc
    return session.extracted([], 0)


def _frames(image: Image.Image, limits: Limits) -> Iterator[Image.Image]:
    """The first frames of an image (pages of a TIFF), each checked against the pixel limit."""
    count = min(getattr(image, "n_frames", 1), limits.max_pages)
    for index in range(count):
        image.seek(index)
        width, height = image.size
        if width * height > limits.max_image_pixels:
            detail = _too_many_pixels_detail(limits, width, height)
            raise Unreadable(UnreadableReason.CORRUPT, detail)
        image.load()
        yield image


def _too_many_pixels_detail(limits: Limits, width: int = 0, height: int = 0) -> str:
    size = f"is {width} x {height} pixels" if width else "has too many pixels"
    return (
        f"The image {size}, more than the {limits.max_image_pixels / 1e6:g} million pixels "
        "accepted (a decompression bomb, or a scan at an excessive resolution)."
    )


# --- DOCX ----------------------------------------------------------------------------------------


def _docx(path: Path, limits: Limits) -> Extracted:
    _refuse_ole(path)
    _refuse_large_zip_directory(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            size = archive.getinfo("word/document.xml").file_size
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise Unreadable(UnreadableReason.CORRUPT, "The file is not a readable DOCX.") from exc
    _refuse_zip_bomb(entries)
    if size > limits.max_docx_xml_bytes:
        raise Unreadable(
            UnreadableReason.CORRUPT,
            f"The DOCX expands to {size // 2**20} MiB of text markup, more than the "
            f"{limits.max_docx_xml_bytes // 2**20} MiB accepted.",
        )
    try:
        document = docx.Document(str(path))
        text = _docx_text(document, limits.enough_letters)
    except Exception as exc:  # python-docx and lxml on a hostile file: anything they raise
        raise Unreadable(UnreadableReason.CORRUPT, "The DOCX's content is damaged.") from exc
    return Extracted(text=text, pages=0, method=ExtractionMethod.TEXT_LAYER)


_ZIP_END: Final = b"PK\x05\x06"
_ZIP_END_SIZE: Final = 22
_ZIP64_LOCATOR: Final = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE: Final = 20
_ZIP64_END: Final = b"PK\x06\x06"
_ZIP64_END_SIZE: Final = 56


def _refuse_large_zip_directory(path: Path) -> None:
    """Refuse a ZIP whose end record announces more entries or a larger central directory than a
    DOCX has, before `zipfile` reads that directory into an object per entry (a million empty
    entries make a 60 MB file and gigabytes of objects)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        start = max(0, size - (_ZIP_END_SIZE + 0xFFFF + _ZIP64_LOCATOR_SIZE))
        file.seek(start)
        tail = file.read()
        end = tail.rfind(_ZIP_END)
        if end == -1 or end + _ZIP_END_SIZE > len(tail):
            raise Unreadable(UnreadableReason.CORRUPT, "The file is not a readable DOCX.")
        entries, directory_bytes = struct.unpack_from("<HL", tail, end + 10)
        locator = end - _ZIP64_LOCATOR_SIZE
        if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
            (record,) = struct.unpack_from("<Q", tail, locator + 8)
            file.seek(record)
            zip64 = file.read(_ZIP64_END_SIZE)
            if len(zip64) < _ZIP64_END_SIZE or not zip64.startswith(_ZIP64_END):
                raise Unreadable(UnreadableReason.CORRUPT, "The file is not a readable DOCX.")
            entries, directory_bytes = struct.unpack_from("<QQ", zip64, 32)
    if entries > MAX_DOCX_ENTRIES or directory_bytes > MAX_DOCX_DIRECTORY_BYTES:
        raise Unreadable(
            UnreadableReason.CORRUPT,
            f"The DOCX is a ZIP archive of {entries:,} entries ({directory_bytes:,} bytes of "
            f"directory), more than the {MAX_DOCX_ENTRIES:,} accepted (a zip bomb).",
        )


def _refuse_zip_bomb(entries: list[zipfile.ZipInfo]) -> None:
    """Refuse a DOCX whose entries, as the directory declares them, inflate too far: in all,
    or one entry far beyond its compressed size. `zipfile` never inflates an entry past its
    declared size, so these bounds hold whatever the compressed data holds."""
    if len(entries) > MAX_DOCX_ENTRIES:
        raise Unreadable(
            UnreadableReason.CORRUPT,
            f"The DOCX is a ZIP archive of {len(entries):,} entries, more than the "
            f"{MAX_DOCX_ENTRIES:,} accepted (a zip bomb).",
        )
    total = markup = 0
    for entry in entries:
        inflated, compressed = entry.file_size, max(entry.compress_size, 1)
        total += inflated
        if entry.filename.lower().endswith((".xml", ".rels")):
            markup += inflated
        if inflated > DOCX_RATIO_FROM and inflated > MAX_DOCX_RATIO * compressed:
            raise Unreadable(
                UnreadableReason.CORRUPT,
                f"A part of the DOCX inflates {inflated // compressed:,} times, to "
                f"{inflated // 2**20} MiB, more than the {MAX_DOCX_RATIO} times accepted "
                "(a zip bomb).",
            )
        if total > MAX_DOCX_INFLATED_BYTES:
            raise Unreadable(
                UnreadableReason.CORRUPT,
                f"The DOCX inflates to more than {MAX_DOCX_INFLATED_BYTES // 2**20} MiB in all, "
                "more than accepted (a zip bomb).",
            )
        if markup > MAX_DOCX_MARKUP_BYTES:
            raise Unreadable(
                UnreadableReason.CORRUPT,
                f"The DOCX's XML parts inflate to more than {MAX_DOCX_MARKUP_BYTES // 2**20} MiB "
                "in all, more than accepted.",
            )


def _refuse_ole(path: Path) -> None:
    """An OLE compound file where a DOCX should be: encrypted OOXML, or a legacy Word file."""
    with path.open("rb") as file:
        head = file.read(64 * 1024)
    if not head.startswith(OLE_MAGIC):
        return
    if "EncryptionInfo".encode("utf-16-le") in head or _tail_mentions_encryption(path):
        raise Unreadable(UnreadableReason.ENCRYPTED, "The Word document is password-protected.")
    raise Unreadable(
        UnreadableReason.UNSUPPORTED_FORMAT, "The file is a legacy Word (.doc) document."
    )


def _tail_mentions_encryption(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - 64 * 1024))
        return "EncryptionInfo".encode("utf-16-le") in file.read()


def _docx_text(document: DocxDocument, enough_letters: int) -> str:
    """Every paragraph of the body in order, tables and text boxes included."""
    parts: list[str] = []
    letters = 0
    for element in document.element.body.iter(qn("w:p")):
        text = Paragraph(element, document).text
        if text.strip():
            parts.append(text)
            letters += count_letters(text)
            if letters >= enough_letters:
                break
    return "\n".join(parts)


# --- plain text ----------------------------------------------------------------------------------


def _plain_text(path: Path, limits: Limits) -> Extracted:
    with path.open("rb") as file:
        data = file.read(limits.max_text_bytes)
    text = decode_text(data)
    if text is None:
        raise Unreadable(
            UnreadableReason.CORRUPT, "The text file is in no recognisable character encoding."
        )
    if not text.strip():
        raise Unreadable(UnreadableReason.NO_TEXT, "The text file has only blank characters.")
    return Extracted(text=text, pages=0, method=ExtractionMethod.PLAIN_TEXT)


def decode_text(data: bytes) -> str | None:
    """Text from bytes in an unknown encoding (possibly cut mid-character), or None."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return codecs.getincrementaldecoder(encoding)(errors="replace").decode(data)
    with suppress(UnicodeDecodeError):
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    best = charset_normalizer.from_bytes(data).best()
    return None if best is None else str(best)


# --- DICOM ---------------------------------------------------------------------------------------


def _dicom(path: Path) -> Extracted:
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom on a hostile file: anything it raises
        raise Unreadable(
            UnreadableReason.CORRUPT, "The file is not a readable DICOM file."
        ) from exc
    sop_class = dataset.file_meta.get("MediaStorageSOPClassUID") or dataset.get("SOPClassUID")
    if not sop_class:
        raise Unreadable(UnreadableReason.CORRUPT, "The DICOM file does not say what it holds.")
    try:
        frames = max(1, int(dataset.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        frames = 1
    return Extracted(text="", pages=frames, method=ExtractionMethod.DICOM, imaging=True)
