"""What records accepts as a medical document, decided by content while the upload streams.

An upload is checked in three steps, none of which needs the whole file in memory:

1. `check_file_name` refuses names that could travel as paths or disguise their extension.
2. `sniff` decides the media type from the first bytes (the magic numbers), whatever the name
   says, and refuses anything but PDF, JPEG, PNG, TIFF, DICOM, DOCX and plain text, as well as a
   name whose extension contradicts the content.
3. A `ContentInspector` sees every chunk on its way to object storage: it enforces the size limit
   (`max_bytes_for` the media type found, never the kind declared) as soon as it is crossed, keeps
   only the first `HEAD_BYTES` and the last `TAIL_BYTES` (`DOCX_DIRECTORY_BYTES` of a DOCX), and
   at the end checks what those bytes can tell (a PDF's trailer, an image's dimensions, readable
   text, a DOCX's ZIP directory against bombs).

Every refusal is an `UploadRefused` carrying the `RejectionReason` of the event catalogue, an HTTP
status and a sentence for the patient. The sentence never repeats the file name (it may carry the
patient's name), so it can also go into `DocumentRejected.detail`.

Plain text is accepted when it has no NUL bytes (unless it is UTF-16 with a byte-order mark), and
decodes as UTF-8, as UTF-16 with a BOM, or else as a single-byte legacy encoding in which at least
95 % of the characters are printable. CP1251 is the yardstick for that last case because
Ukrainian legacy files use it; any other 8-bit text (CP1252, KOI8-U) passes the same test and is
stored as it came, so the media type carries no charset.

The magic numbers are `filetype`'s matchers (pinned, pure Python: no native parser reads an
upload in the API's process). Kept here is only what it lacks or what is records' own rule:
DICOM (the Part 10 header, a program hidden in its preamble, a bare data set), a PDF header
anywhere in the first 1024 bytes without a web page before it, which ZIP is a Word document
(and not a DOCM, XLSX or ODT), what counts as plain text and as markup, the few signatures
filetype lacks (Mach-O, Java class, OLE2, BigTIFF, a bare JPEG 2000 codestream, scripts), and
stricter checks over its shortest signatures ("MZ", "BM", "%!" could start a note).

DICOM is accepted only as a standard (Part 10) file: a 128-byte preamble, then "DICM". A bare data
set without that header can only be recognised heuristically, and many viewers cannot open one,
so it is refused with a sentence that says so and asks for a standard export.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Final, cast

import filetype
from filetype.types import archive, audio, image, video
from filetype.types.base import Type
from filetype.types.isobmff import IsoBmff
from PIL import ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from referrals_common.contracts.records import RejectionReason
from referrals_common.i18n.case_texts import Refusal
from referrals_common.media_types import DICOM, DOCX, JPEG, PDF, PNG, TEXT, TIFF

if TYPE_CHECKING:
    from typing_extensions import Buffer

ACCEPTED_MEDIA_TYPES: Final[dict[str, tuple[str, ...]]] = {
    PDF: (".pdf",),
    JPEG: (".jpg", ".jpeg"),
    PNG: (".png",),
    TIFF: (".tif", ".tiff"),
    # "" is a name without extension: DICOM files from CDs are often called IM00001, or are
    # named by their instance UID (1.2.840.113619.2.55), whose last part is not an extension.
    DICOM: (".dcm", ".dicom", ""),
    DOCX: (".docx",),
    TEXT: (".txt",),
}
"""The media types records accepts, each with the file extensions its name may end in."""

HEAD_BYTES: Final = 64 * 1024
"""How much of the start of a file `sniff` wants and `ContentInspector` keeps."""

TAIL_BYTES: Final = 2 * 1024
"""How much of the end of a file `ContentInspector` keeps (a PDF's trailer, a ZIP's directory)."""

MAX_IMAGE_PIXELS: Final = 100_000_000
"""Images with more pixels than this are refused as decompression bombs (about 400 MB decoded)."""

MAX_NAME_BYTES: Final = 255
"""The longest file name accepted, in bytes of UTF-8 (what most file systems allow)."""

DOCX_DIRECTORY_BYTES: Final = 256 * 1024
"""How much of the end of a DOCX `ContentInspector` keeps: its whole ZIP central directory must
fit (about 100 bytes an entry), so the declared sizes of every entry can be checked."""

MAX_DOCX_ENTRIES: Final = 2_000
"""A DOCX with more ZIP entries is refused as a bomb (a real one has tens, a few hundred with
many pictures)."""

MAX_DOCX_UNCOMPRESSED: Final = 128 * 2**20
"""A DOCX whose entries declare more bytes in total once inflated is refused as a bomb (a 50 MB
DOCX is mostly pictures, which do not compress; translation reads no more either)."""

MAX_DOCX_RATIO: Final = 200
"""An entry inflating to more than this many times its compressed size (and past
`DOCX_RATIO_FROM` bytes) is refused as a bomb; Word's XML compresses about 5-20 times."""

DOCX_RATIO_FROM: Final = 2**20
"""Entries inflating to at most this many bytes may have any compression ratio."""

_STATUS: Final = {
    RejectionReason.UNSUPPORTED_TYPE: 415,
    RejectionReason.TOO_LARGE: 413,
}

_DESCRIPTIONS: Final = {
    PDF: "a PDF document",
    JPEG: "a JPEG image",
    PNG: "a PNG image",
    TIFF: "a TIFF image",
    DICOM: "a DICOM file",
    DOCX: "a Word document (DOCX)",
    TEXT: "a plain text file",
}

_SHORT_NAMES: Final = {
    PDF: "PDF",
    JPEG: "JPEG",
    PNG: "PNG",
    TIFF: "TIFF",
    DICOM: "DICOM",
    DOCX: "Word",
    TEXT: "plain text",
}


def too_large(max_bytes: int) -> UploadRefused:
    """The refusal of a file over `max_bytes`, naming the limit in MB."""
    return UploadRefused(
        RejectionReason.TOO_LARGE,
        f"The file is larger than the limit of {_megabytes(max_bytes)} MB.",
        Refusal(RejectionReason.TOO_LARGE, limit_bytes=max_bytes),
    )


class UploadRefused(Exception):
    """An upload records will not store, with the reason, the HTTP status and an explanation.

    `detail` is one or two sentences in English for the center, the logs and an English front
    end; it never contains the file name, so it may also be published as
    `DocumentRejected.detail`. `words` is what the patient's words are made of, rendered in the
    case's language (`referrals_common.i18n.case_texts.upload_refusal`); without it, the
    reason's. `status` is 415 for a type records does not accept (or a name contradicting the
    content), 413 for a file over the size limit and 422 for everything else.
    """

    def __init__(self, reason: RejectionReason, detail: str, words: Refusal | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.words = words or Refusal(reason)
        self.status = _STATUS.get(reason, 422)


class CaseQuotaExceeded(UploadRefused):
    """The upload would take the case's stored documents past its quota (413).

    `quota_bytes` is the case's quota and `used_bytes` what its live documents already take;
    both go into the problem. The reason published in `document.rejected` is `too_large`.
    """

    def __init__(self, quota_bytes: int, used_bytes: int) -> None:
        super().__init__(
            RejectionReason.TOO_LARGE,
            f"The case's documents may take {_megabytes(quota_bytes)} MB in all; "
            f"{_megabytes(used_bytes)} MB are used, and this file does not fit in the rest. "
            "Delete a document the case does not need, or send a smaller file.",
            Refusal(RejectionReason.TOO_LARGE, quota_bytes=quota_bytes, used_bytes=used_bytes),
        )
        self.quota_bytes = quota_bytes
        self.used_bytes = used_bytes


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """The largest upload records accepts of each media type, in bytes, decided by the type
    sniffed from the content (never by the kind the uploader declares).

    `dicom` is for imaging studies (DICOM files are large), `image` for JPEG, PNG and TIFF.
    """

    dicom: int
    pdf: int
    image: int
    docx: int
    text: int

    def __post_init__(self) -> None:
        for name in ("dicom", "pdf", "image", "docx", "text"):
            if getattr(self, name) < 1:
                raise ValueError(f"the {name} size limit must be positive")


@dataclass(frozen=True, slots=True)
class InspectionResult:
    """What the inspection learned about an accepted file.

    `pages` is a PDF's page count when the kept bytes tell it (the whole file fits in the head,
    or a linearized PDF declares it), otherwise None. `width` and `height` are an image's pixel
    dimensions (first page of a TIFF); None for other types.
    """

    media_type: str
    size_bytes: int
    pages: int | None = None
    width: int | None = None
    height: int | None = None


def accepted_types_sentence() -> str:
    """The sentence listing the accepted types and extensions, as every type refusal ends."""
    parts = []
    for media_type, extensions in ACCEPTED_MEDIA_TYPES.items():
        named = [extension for extension in extensions if extension]
        listed = ", ".join(named)
        if "" in extensions:
            listed += " or no extension"
        parts.append(f"{_SHORT_NAMES[media_type]} ({listed})")
    return f"Accepted types: {', '.join(parts[:-1])} and {parts[-1]}."


def _not_accepted(
    found: str | None, *, expected: str | None = None, bare_dicom: bool = False
) -> Refusal:
    """The patient's words of a type refusal: what the file is (None: not recognised), the
    endings a file of the `expected` media type may have, and the accepted types."""
    return Refusal(
        RejectionReason.UNSUPPORTED_TYPE,
        found=found,
        expected_extensions=ACCEPTED_MEDIA_TYPES[expected] if expected else (),
        bare_dicom=bare_dicom,
        accepted=tuple((_SHORT_NAMES[m], e) for m, e in ACCEPTED_MEDIA_TYPES.items()),
    )


# --- file names ---------------------------------------------------------------------------------

# Explicit embeddings, overrides and isolates reorder what follows them on screen, so that
# "scan\u202efdp.exe" shows as "scanexe.pdf".
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_file_name(name: str) -> str:
    """Return the upload's file name, NFC-normalised and stripped, if records accepts it.

    Raises `UploadRefused` (BAD_NAME) for a name that is empty (or only spaces), longer than 255
    bytes of UTF-8, contains a path separator ('/' or '\\'), is '.' or '..', contains a control
    character (C0 including NUL and tab, DEL, C1) anywhere (before stripping too), or contains a
    Unicode bidi embedding/override/isolate character (U+202A to U+202E, U+2066 to
    U+2069). Names in Cyrillic or any other script are accepted.
    """
    # Control characters are refused before stripping: str.strip would silently drop some of
    # them (\n, \x1c-\x1f, \x85) and hide that the name was tampered with.
    if any(unicodedata.category(character) == "Cc" for character in name):
        _refuse_name("The file name contains a control character.")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        _refuse_name("The file has no name.")
    if not _BIDI_CONTROLS.isdisjoint(cleaned):
        _refuse_name(
            "The file name contains a Unicode direction-override character, which can disguise "
            "its real extension."
        )
    if "/" in cleaned or "\\" in cleaned:
        _refuse_name("The file name contains a path separator ('/' or '\\').")
    if cleaned in {".", ".."}:
        _refuse_name("The file name cannot be '.' or '..'.")
    if len(cleaned.encode()) > MAX_NAME_BYTES:
        _refuse_name(f"The file name is longer than {MAX_NAME_BYTES} bytes.")
    return cleaned


def _refuse_name(detail: str) -> None:
    raise UploadRefused(RejectionReason.BAD_NAME, detail)


def _extension(file_name: str) -> str:
    """The name's extension, lower-cased with its dot; "" when there is none."""
    _, dot, extension = file_name.rpartition(".")
    # An all-digit suffix is the last component of a DICOM instance UID used as the name, not a
    # type extension.
    if not dot or not extension or (extension.isascii() and extension.isdigit()):
        return ""
    return "." + extension.lower()


# --- sniffing ------------------------------------------------------------------------------------

_ZIP_LOCAL_HEADER: Final = b"PK\x03\x04"
_ZIP_END_OF_DIRECTORY: Final = b"PK\x05\x06"
_PDF_MAGIC: Final = b"%PDF-"
# Acrobat finds the header anywhere in the first 1024 bytes (after a BOM, mail headers, a
# printer-job prefix), and so do we.
_PDF_MAGIC_WITHIN: Final = 1024
_DICOM_PREAMBLE: Final = 128
_DICOM_MAGIC: Final = b"DICM"


class _Signature(Type):  # type: ignore[misc]  # filetype is untyped: its base class is Any
    """A format `filetype` does not know, recognised by the bytes it starts with."""

    def __init__(self, extension: str, *prefixes: bytes) -> None:
        super().__init__(mime="application/octet-stream", extension=extension)
        self.prefixes = prefixes

    def match(self, buf: bytes | bytearray) -> bool:
        return bytes(buf[:16]).startswith(self.prefixes)


class _Stricter(Type):  # type: ignore[misc]  # filetype is untyped: its base class is Any
    """One of `filetype`'s matchers whose few letters could also start a note ("MZ", "BM",
    "%!"), with a check of what else the real header has."""

    def __init__(self, matcher: Type, check: Callable[[bytes], bool]) -> None:
        super().__init__(mime=matcher.mime, extension=matcher.extension)
        self.matcher, self.check = matcher, check

    def match(self, buf: bytes | bytearray) -> bool:
        return bool(self.matcher.match(buf)) and self.check(bytes(buf[:64]))


class _IsoMedia(IsoBmff):  # type: ignore[misc]  # filetype is untyped: its base class is Any
    """Any ISO base media file (an `ftyp` box of any brand): MP4, MOV, 3GP and kin."""

    def __init__(self) -> None:
        super().__init__(mime="video/mp4", extension="mp4")

    def match(self, buf: bytes | bytearray) -> bool:
        return bool(self._is_isobmff(buf))


_MACH_O: Final = (
    b"\xcf\xfa\xed\xfe",
    b"\xce\xfa\xed\xfe",
    b"\xfe\xed\xfa\xcf",
    b"\xfe\xed\xfa\xce",
)
_PROGRAMS: Final = (
    (archive.Exe(), "a Windows program (EXE or DLL)"),
    (archive.Elf(), "a Linux program (ELF executable)"),
    (_Signature("macho", *_MACH_O), "a macOS program (Mach-O executable)"),
    (_Signature("class", b"\xca\xfe\xba\xbe"), "a macOS program or a Java class file"),
)
"""Program headers: `filetype`'s matchers, and the Mach-O and Java ones it lacks."""

# Formats recognised only to explain a refusal precisely, in the order they are tried.
_REFUSED: Final = (
    # A DOS header has NUL bytes in its first 64, not just "MZ".
    (_Stricter(archive.Exe(), lambda head: b"\x00" in head), "a Windows program (EXE or DLL)"),
    *_PROGRAMS[1:],
    (image.Gif(), "a GIF image"),
    (_Signature("tif", b"II+\x00", b"MM\x00+"), "a BigTIFF image"),
    (image.Jpx(), "a JPEG 2000 image"),
    (_Signature("j2c", b"\xffO\xffQ"), "a JPEG 2000 image"),  # a bare codestream
    (image.Psd(), "a Photoshop document"),
    (image.Cr2(), "a camera raw photo (Canon CR2; export it as JPEG)"),  # TIFF-shaped
    (
        _Signature("cfb", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),
        "a legacy or password-protected Microsoft Office file",
    ),
    (archive.Rtf(), "an RTF document"),
    (_Stricter(archive.Ps(), lambda head: head.startswith(b"%!PS")), "a PostScript file"),
    (archive.Rar(), "a RAR archive"),
    (archive.SevenZ(), "a 7-Zip archive"),
    (archive.Gz(), "a gzip archive"),
    (archive.Xz(), "an XZ archive"),
    (archive.Zip(), "a ZIP archive"),  # an empty or spanned one: local headers are seen first
    (audio.Ogg(), "an audio or video file"),
    (video.Mkv(), "a video (WebM or MKV)"),
    (video.Webm(), "a video (WebM or MKV)"),
    (_Signature("sh", b"#!"), "a script"),
    (image.Webp(), "a WebP image"),
    (video.Avi(), "an audio or video file"),
    (audio.Wav(), "an audio or video file"),
    (image.Heic(), "a HEIC/HEIF photo (as iPhones take them; export it as JPEG)"),
    (image.Avif(), "an AVIF image"),
    (_IsoMedia(), "a video or audio file (MP4, MOV or similar)"),
    # A bitmap's header has reserved zeros after its size, not just "BM".
    (
        _Stricter(image.Bmp(), lambda head: head[6:10] == bytes(4) and len(head) >= 26),
        "a BMP image",
    ),
)
_REFUSED_DESCRIPTIONS: Final[dict[Type, str]] = dict(_REFUSED)

_ACCEPTED_IMAGE_TYPES: Final[dict[Type, str]] = {
    image.Jpeg(): JPEG,
    image.Png(): PNG,
    image.Tiff(): TIFF,
}
"""`filetype`'s matchers of the images records accepts, with their media types."""


def sniff(head: bytes, file_name: str) -> str:
    """Return the media type of a file from its first bytes, checked against its name.

    `head` is the start of the file: at least the first `HEAD_BYTES`, or the whole file if it is
    smaller (more is allowed, only the first `HEAD_BYTES` are looked at). The result is a key of
    `ACCEPTED_MEDIA_TYPES`, decided by content only.

    Raises `UploadRefused`:
    - EMPTY when `head` is empty;
    - UNSUPPORTED_TYPE for any other content, naming what it is when it is recognisable ("a ZIP
      archive", "a Windows program (EXE or DLL)", "an HTML page"), for a DICOM data set without
      the standard file header or whose preamble holds a program header, and for a name whose
      extension is not one of those accepted for the detected type ("The file is named .pdf but
      is a JPEG image"). Every such detail ends with the list of accepted types.
    """
    head = bytes(head[:HEAD_BYTES])
    if not head:
        raise UploadRefused(RejectionReason.EMPTY, "The file is empty.")
    media_type = _detect(head)
    extension = _extension(file_name)
    if extension not in ACCEPTED_MEDIA_TYPES[media_type]:
        raise UploadRefused(
            RejectionReason.UNSUPPORTED_TYPE,
            f"{_mismatch(extension, _DESCRIPTIONS[media_type])}; its name must end in "
            f"{_extensions_phrase(media_type)}. {accepted_types_sentence()}",
            _not_accepted(_DESCRIPTIONS[media_type], expected=media_type),
        )
    return media_type


def _mismatch(extension: str, content: str) -> str:
    if not extension:
        return f"The file name has no extension but the file is {content}"
    # Only a short alphanumeric extension is repeated: a long one may be part of a person's name.
    if re.fullmatch(r"\.[a-z0-9]{1,8}", extension):
        return f"The file is named {extension} but is {content}"
    return f"The file name's extension does not match its content, which is {content}"


def _extensions_phrase(media_type: str) -> str:
    named = [extension for extension in ACCEPTED_MEDIA_TYPES[media_type] if extension]
    phrase = " or ".join(named)
    return f"{phrase} or have no extension" if "" in ACCEPTED_MEDIA_TYPES[media_type] else phrase


def _unsupported(what: str | None) -> UploadRefused:
    opening = (
        f"The file is {what}, which records does not accept."
        if what
        else "The file's type could not be recognised."
    )
    return UploadRefused(
        RejectionReason.UNSUPPORTED_TYPE,
        f"{opening} {accepted_types_sentence()}",
        _not_accepted(what),
    )


def _detect(head: bytes) -> str:
    """The accepted media type of `head`; raises UploadRefused(UNSUPPORTED_TYPE) otherwise."""
    if head.startswith(_PDF_MAGIC):
        return PDF
    # DICOM before the other signatures: its preamble may legitimately hold a TIFF header (the
    # "dual personality" files of digital pathology).
    if head[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == _DICOM_MAGIC:
        _check_dicom_preamble(head[:_DICOM_PREAMBLE])
        return DICOM
    if kind := filetype.match(head, list(_ACCEPTED_IMAGE_TYPES)):
        return _ACCEPTED_IMAGE_TYPES[kind]
    if head.startswith(_ZIP_LOCAL_HEADER):
        return _detect_zip(head)
    if kind := filetype.match(head, list(_REFUSED_DESCRIPTIONS)):
        raise _unsupported(_REFUSED_DESCRIPTIONS[kind])
    if (position := head.find(_PDF_MAGIC, 0, _PDF_MAGIC_WITHIN + len(_PDF_MAGIC))) > 0:
        # The junk before the header must not itself be a web page (an HTML/PDF polyglot).
        if markup := _markup(head[:position].decode("latin-1")):
            raise _unsupported(markup)
        return PDF
    if _looks_like_bare_dicom(head):
        raise UploadRefused(
            RejectionReason.UNSUPPORTED_TYPE,
            "The file looks like DICOM data without the standard DICOM file header (the "
            "128-byte preamble and 'DICM'), which records cannot check reliably; please export "
            f"the images again as standard DICOM files. {accepted_types_sentence()}",
            _not_accepted(None, bare_dicom=True),
        )
    text = _decode_text(head)
    if text is None:
        raise _unsupported(None)
    if markup := _markup(text):
        raise _unsupported(markup)
    return TEXT


def _check_dicom_preamble(preamble: bytes) -> None:
    # The preamble is free for applications to use, which is how a file can be a valid DICOM
    # file and a Windows program at once (CVE-2019-11687): such files are refused.
    if filetype.match(preamble, [matcher for matcher, _ in _PROGRAMS]):
        raise _unsupported("a DICOM file whose preamble holds a program header")
    if preamble.startswith(b"#!"):
        raise _unsupported("a DICOM file whose preamble holds a script")


def _zip_entry_names(head: bytes) -> list[str]:
    """Names from the ZIP local file headers found in `head`, in order.

    Headers are found by their signature rather than by skipping each entry's data, because an
    entry streamed with a data descriptor does not say its size up front.
    """
    names = []
    position = head.find(_ZIP_LOCAL_HEADER)
    while position != -1 and position + 30 <= len(head):
        (name_length,) = struct.unpack_from("<H", head, position + 26)
        name = head[position + 30 : position + 30 + name_length]
        if len(name) == name_length:
            names.append(name.decode("utf-8", errors="replace"))
        position = head.find(_ZIP_LOCAL_HEADER, position + 4)
    return names


def _detect_zip(head: bytes) -> str:
    names = _zip_entry_names(head)
    if "[Content_Types].xml" in names:
        if any(name == "word/vbaProject.bin" for name in names):
            raise _unsupported("a Word document with macros (DOCM)")
        if any(name.startswith("word/") for name in names):
            return DOCX
        if any(name.startswith("xl/") for name in names):
            raise _unsupported("an Excel workbook (XLSX)")
        if any(name.startswith("ppt/") for name in names):
            raise _unsupported("a PowerPoint presentation (PPTX)")
        raise _unsupported("an Office Open XML package that is not a Word document")
    if names[:1] == ["mimetype"]:
        raise _unsupported("an OpenDocument file (ODT, ODS or ODP)")
    raise _unsupported("a ZIP archive")


# DICOM value representations, and those followed by a reserved word and a 32-bit length in
# explicit VR encoding.
_DICOM_VRS: Final = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)
_DICOM_LONG_VRS: Final = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def _looks_like_bare_dicom(head: bytes) -> bool:
    """Whether `head` starts like a DICOM data set written without the Part 10 header.

    Such a data set starts with the file meta group (0002) or the identifying group (0008),
    little endian, in implicit or explicit VR; the first elements are walked and must have
    ascending tags and even lengths that stay within `head`. Used only to word a refusal.
    """
    if len(head) < 8 or struct.unpack_from("<H", head)[0] not in {0x0002, 0x0008}:
        return False
    explicit = head[4:6] in _DICOM_VRS
    position, previous_tag, elements = 0, -1, 0
    while elements < 4 and position + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, position)
        tag = group << 16 | element
        if tag <= previous_tag:
            return False
        if explicit:
            vr = head[position + 4 : position + 6]
            if vr not in _DICOM_VRS:
                return False
            if vr in _DICOM_LONG_VRS:
                if position + 12 > len(head):
                    break
                (length,) = struct.unpack_from("<I", head, position + 8)
                header = 12
            else:
                (length,) = struct.unpack_from("<H", head, position + 6)
                header = 8
        else:
            (length,) = struct.unpack_from("<I", head, position + 4)
            header = 8
        if length == 0xFFFFFFFF:  # a sequence of undefined length: the walk stops here
            elements += 1
            break
        if length % 2 or position + header + length > len(head):
            return False
        position += header + length
        previous_tag = tag
        elements += 1
    return elements >= 3


# --- text ----------------------------------------------------------------------------------------

_MIN_PRINTABLE_SHARE: Final = 0.95
# Control characters other than tab, LF, VT, FF and CR, and the replacement character that marks
# a byte the legacy code page does not define.
_NOT_TEXT: Final = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")
_HTML: Final = re.compile(
    r"<(?:!doctype\s+html|html|head|body|script|iframe|style|title|div|table|p|a|br|h1|font|b)"
    r"(?:[\s/>]|$)|<!--",
    re.IGNORECASE,
)
_SVG: Final = re.compile(r"<(?:svg|!doctype\s+svg)(?:[\s>]|$)", re.IGNORECASE)


def _decode_text(data: bytes, *, whole: bool = False) -> str | None:
    """The text of `data` if it is plain text as records defines it (see the module), else None.

    Unless `whole` says `data` is the entire file, a multi-byte character cut at its end is
    allowed, because `data` is usually only the head of the file.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates: tuple[tuple[str, str], ...] = (("utf-16", "strict"),)
    elif b"\x00" in data:
        return None
    else:
        candidates = (("utf-8-sig", "strict"), ("cp1251", "replace"))
    for encoding, errors in candidates:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
        try:
            text = decoder.decode(data, final=whole)
        except UnicodeDecodeError:
            continue
        if len(_NOT_TEXT.findall(text)) <= (1 - _MIN_PRINTABLE_SHARE) * len(text):
            return text
        return None
    return None


def _markup(text: str) -> str | None:
    """What `text` is if it is a web page, an image or data in markup, or a script."""
    start = text.lstrip("\ufeff \t\r\n\f\v")[:4096]
    if _SVG.match(start) or (start[:5].lower() == "<?xml" and _SVG.search(start)):
        return "an SVG image"
    if _HTML.match(start) or (start[:5].lower() == "<?xml" and "<html" in start.lower()):
        return "an HTML page"
    if start[:5].lower() == "<?xml":
        return "an XML document"
    if start.startswith("#!"):
        return "a script"
    return None


# --- streaming inspection ------------------------------------------------------------------------

_IMAGE_FORMATS: Final[dict[str, Callable[[IO[bytes]], ImageFile.ImageFile]]] = {
    JPEG: JpegImagePlugin.JpegImageFile,
    PNG: PngImagePlugin.PngImageFile,
    TIFF: TiffImagePlugin.TiffImageFile,
}
_LINEARIZATION: Final = re.compile(rb"<<[^>]*?/Linearized\s[^>]*>>")


class ContentInspector:
    """Checks one upload of a known media type while it streams, in bounded memory.

    Feed it every chunk in order, then call `finish`. It never keeps more than the first
    `HEAD_BYTES` and the last `TAIL_BYTES` of the file (`DOCX_DIRECTORY_BYTES` of a DOCX, whose
    ZIP directory it reads) (see `buffered_bytes`), plus a flag.
    """

    def __init__(
        self, media_type: str, *, max_bytes: int, max_image_pixels: int = MAX_IMAGE_PIXELS
    ) -> None:
        if media_type not in ACCEPTED_MEDIA_TYPES:
            raise ValueError(f"not an accepted media type: {media_type!r}")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.media_type = media_type
        self.max_bytes = max_bytes
        self.max_image_pixels = max_image_pixels
        self._size = 0
        self._head = bytearray()
        self._tail = bytearray()
        self._saw_nul = False
        self._finished = False
        self._tail_bytes = DOCX_DIRECTORY_BYTES if media_type == DOCX else TAIL_BYTES

    @property
    def size_bytes(self) -> int:
        """How many bytes were fed so far."""
        return self._size

    @property
    def head(self) -> bytes:
        """The first `HEAD_BYTES` fed (fewer if the file is smaller)."""
        return bytes(self._head)

    @property
    def tail(self) -> bytes:
        """The last `TAIL_BYTES` fed (`DOCX_DIRECTORY_BYTES` for a DOCX; fewer if the file is
        smaller)."""
        return bytes(self._tail)

    @property
    def buffered_bytes(self) -> int:
        """How many bytes of the file the inspector holds: at most HEAD_BYTES + TAIL_BYTES
        (HEAD_BYTES + DOCX_DIRECTORY_BYTES for a DOCX)."""
        return len(self._head) + len(self._tail)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Account for the next chunk of the file.

        Raises `UploadRefused` (TOO_LARGE, naming the limit in MB) as soon as the bytes fed
        exceed `max_bytes`, so the caller can stop reading the upload there; it keeps raising if
        fed more. Raises RuntimeError after `finish`.
        """
        if self._finished:
            raise RuntimeError("the inspection is finished")
        if isinstance(chunk, memoryview):  # bytes and bytearray are read as they are
            chunk = chunk.tobytes()
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise too_large(self.max_bytes)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._tail += chunk[-self._tail_bytes :]
        del self._tail[: -self._tail_bytes]
        # Text is sniffed from the head only; a NUL anywhere later means binary data follows.
        if self.media_type == TEXT and not self._saw_nul:
            self._saw_nul = b"\x00" in chunk

    def finish(self) -> InspectionResult:
        """Check what the kept bytes can tell and describe the file.

        Raises `UploadRefused`:
        - EMPTY when no byte was fed;
        - CORRUPT for a PDF whose last `TAIL_BYTES` lack `startxref` or `%%EOF` (it was cut
          short), a DOCX whose tail lacks the ZIP end-of-directory record, an image whose header
          cannot be read from the kept bytes (the first `HEAD_BYTES`, and the last `TAIL_BYTES`
          where a TIFF may keep its directory), and text that has nothing printable in its head
          or (unless UTF-16) a NUL byte anywhere;
        - DECOMPRESSION_BOMB for an image of more than `max_image_pixels` pixels, and for a DOCX
          whose ZIP directory (read from the kept tail, before anyone inflates anything) lists
          more than `MAX_DOCX_ENTRIES` entries or does not fit in `DOCX_DIRECTORY_BYTES`, declares
          more than `MAX_DOCX_UNCOMPRESSED` bytes in all once inflated, or an entry of more than
          `DOCX_RATIO_FROM` bytes inflating more than `MAX_DOCX_RATIO` times;
        - UNSUPPORTED_TYPE for a DOCX whose tail shows a macro project (a renamed DOCM).
        A DICOM file is not examined further here.
        """
        self._finished = True
        if self._size == 0:
            raise UploadRefused(RejectionReason.EMPTY, "The file is empty.")
        result = InspectionResult(self.media_type, self._size)
        if self.media_type == PDF:
            return self._finish_pdf(result)
        if self.media_type in _IMAGE_FORMATS:
            return self._finish_image(result)
        if self.media_type == DOCX:
            self._finish_docx()
        elif self.media_type == TEXT:
            self._finish_text()
        return result

    def _finish_pdf(self, result: InspectionResult) -> InspectionResult:
        if b"startxref" not in self._tail or b"%%EOF" not in self._tail:
            raise _corrupt(
                "The PDF document is incomplete: it does not end with a PDF trailer "
                "(startxref and %%EOF), so it was probably cut short."
            )
        return InspectionResult(result.media_type, result.size_bytes, pages=self._pdf_pages())

    def _pdf_pages(self) -> int | None:
        if self._size <= len(self._head):
            # Imported here: pypdf costs ~18 MiB of resident memory, for a best-effort count.
            from pypdf import PdfReader

            try:
                return len(PdfReader(io.BytesIO(self._head), strict=False).pages)
            except Exception:  # pypdf on hostile input: the count is best effort, not a check
                return None
        # A linearized PDF declares its page count (/N) up front; its declared length (/L) no
        # longer matches once someone appended an incremental update, which may add pages.
        if match := _LINEARIZATION.search(self._head, 0, 2048):
            length = re.search(rb"/L\s+(\d+)", match[0])
            pages = re.search(rb"/N\s+(\d+)", match[0])
            if length and pages and int(length[1]) == self._size:
                return int(pages[1])
        return None

    def _finish_image(self, result: InspectionResult) -> InspectionResult:
        kept = _KeptBytes(bytes(self._head), bytes(self._tail), self._size)
        # The plugin class is used directly, not Image.open, which would itself refuse large
        # images (or warn) against Pillow's own global limit before we could name the size.
        try:
            # A RawIOBase is a binary file; typeshed's IO[bytes] is a nominal type it lacks.
            image = _IMAGE_FORMATS[self.media_type](cast(IO[bytes], kept))
            width, height = image.size
        except Exception:  # Pillow on hostile input: anything it raises means unreadable
            raise _corrupt(
                f"The image's header could not be read: the file is damaged, or its metadata "
                f"does not fit in the first {HEAD_BYTES // 1024} KiB."
            ) from None
        if width * height > self.max_image_pixels:
            raise UploadRefused(
                RejectionReason.DECOMPRESSION_BOMB,
                f"The image is {width} x {height} pixels, more than the "
                f"{self.max_image_pixels:,} pixels records accepts.",
            )
        return InspectionResult(result.media_type, result.size_bytes, width=width, height=height)

    def _finish_docx(self) -> None:
        if _ZIP_END_OF_DIRECTORY not in self._tail:
            raise _corrupt(
                "The Word document is incomplete: its ZIP directory is missing, so it was "
                "probably cut short."
            )
        # The central directory at the end lists every entry, including those past the head.
        if b"word/vbaProject.bin" in self._tail:
            raise _unsupported("a Word document with macros (DOCM)")
        _check_zip_directory(bytes(self._tail), self._size)

    def _finish_text(self) -> None:
        utf16 = self._head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if self._saw_nul and not utf16:
            raise _corrupt("The text file contains binary data after its beginning.")
        text = _decode_text(bytes(self._head), whole=self._size <= HEAD_BYTES) or ""
        if not any(character.isprintable() and not character.isspace() for character in text):
            raise _corrupt("The text file contains no readable text.")


_ZIP_END: Final = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR: Final = struct.Struct("<4sLQL")
_ZIP64_END: Final = struct.Struct("<4sQ2H2L4Q")
_ZIP_DIRECTORY_ENTRY: Final = struct.Struct("<4s4B4HL2L5H2L")
_ZIP_DIRECTORY_SIGNATURE: Final = b"PK\x01\x02"
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_END_SIGNATURE: Final = b"PK\x06\x06"
_ZIP64_EXTRA: Final = 0x0001


def _bomb(detail: str) -> UploadRefused:
    return UploadRefused(RejectionReason.DECOMPRESSION_BOMB, detail)


def _check_zip_directory(tail: bytes, size: int) -> None:
    """Refuse a ZIP (a DOCX) whose central directory, read from `tail` (the last bytes of a file
    of `size` bytes), announces a decompression bomb, or is damaged. Nothing is inflated: the
    declared sizes are checked (a reader that trusts them, as Python's zipfile does, never
    inflates more; one that does not finds a CRC error)."""
    damaged = "The Word document's ZIP directory is damaged."
    end = tail.rfind(_ZIP_END_OF_DIRECTORY)
    if end == -1 or end + _ZIP_END.size > len(tail):
        raise _corrupt(damaged)
    (_, _, _, _, entries, directory_size, directory_offset, comment) = _ZIP_END.unpack_from(
        tail, end
    )
    if end + _ZIP_END.size + comment != len(tail):
        raise _corrupt(damaged)
    directory_end = end
    if entries == 0xFFFF or 0xFFFFFFFF in (directory_size, directory_offset):
        locator = end - _ZIP64_LOCATOR.size
        if locator < 0 or tail[locator : locator + 4] != _ZIP64_LOCATOR_SIGNATURE:
            raise _corrupt(damaged)
        record = locator - _ZIP64_END.size
        if record < 0 or tail[record : record + 4] != _ZIP64_END_SIGNATURE:
            raise _bomb(
                "The Word document's ZIP directory is too large to check (a ZIP bomb, or far "
                "more parts than a document has)."
            )
        fields = _ZIP64_END.unpack_from(tail, record)
        entries, directory_size = fields[7], fields[8]
        directory_end = record
    if entries > MAX_DOCX_ENTRIES:
        raise _bomb(
            f"The Word document is a ZIP archive of {entries:,} parts, more than the "
            f"{MAX_DOCX_ENTRIES:,} records accepts (a ZIP bomb)."
        )
    position = directory_end - directory_size
    if position < 0:
        if size <= len(tail):  # the whole file is kept: the directory claims more than there is
            raise _corrupt(damaged)
        raise _bomb(
            "The Word document's ZIP directory is too large to check (a ZIP bomb, or far more "
            "parts than a document has)."
        )
    total = 0
    for _ in range(entries):
        if (
            position + _ZIP_DIRECTORY_ENTRY.size > directory_end
            or tail[position : position + 4] != _ZIP_DIRECTORY_SIGNATURE
        ):
            raise _corrupt(damaged)
        fields = _ZIP_DIRECTORY_ENTRY.unpack_from(tail, position)
        compressed, inflated = fields[10], fields[11]
        name_length, extra_length, comment_length = fields[12], fields[13], fields[14]
        extra_start = position + _ZIP_DIRECTORY_ENTRY.size + name_length
        if 0xFFFFFFFF in (compressed, inflated):
            compressed, inflated = _zip64_sizes(
                tail[extra_start : extra_start + extra_length], compressed, inflated
            )
        position = extra_start + extra_length + comment_length
        total += inflated
        if inflated > DOCX_RATIO_FROM and inflated > MAX_DOCX_RATIO * max(compressed, 1):
            raise _bomb(
                f"A part of the Word document inflates {inflated // max(compressed, 1):,} times "
                f"(to {_megabytes(inflated)} MB), more than the {MAX_DOCX_RATIO} times records "
                "accepts (a ZIP bomb)."
            )
        if total > MAX_DOCX_UNCOMPRESSED:
            raise _bomb(
                f"The Word document inflates to more than {_megabytes(MAX_DOCX_UNCOMPRESSED)} MB, "
                "more than records accepts (a ZIP bomb)."
            )
    if position > directory_end:
        raise _corrupt(damaged)


def _zip64_sizes(extra: bytes, compressed: int, inflated: int) -> tuple[int, int]:
    """The 64-bit sizes of a central directory entry from its ZIP64 extra field: the inflated
    size first, then the compressed one, each present only if its 32-bit field is 0xFFFFFFFF."""
    position = 0
    while position + 4 <= len(extra):
        header, length = struct.unpack_from("<HH", extra, position)
        data = extra[position + 4 : position + 4 + length]
        if header == _ZIP64_EXTRA:
            values = [
                struct.unpack_from("<Q", data, offset)[0]
                for offset in range(0, len(data) - len(data) % 8, 8)
            ]
            if inflated == 0xFFFFFFFF and values:
                inflated = values.pop(0)
            if compressed == 0xFFFFFFFF and values:
                compressed = values.pop(0)
            return compressed, inflated
        position += 4 + length
    raise _corrupt("The Word document's ZIP directory is damaged.")


def _corrupt(detail: str) -> UploadRefused:
    return UploadRefused(RejectionReason.CORRUPT, detail)


def _megabytes(size: int) -> str:
    # MB here are 2**20 bytes, as operating systems show file sizes to patients.
    return f"{size / 2**20:.1f}".removesuffix(".0")


class _KeptBytes(io.RawIOBase):
    """A read-only file made of the kept head and tail of a file of `size` bytes.

    Reads in the gap between head and tail come back short, as at the end of a file, so a parser
    that needs bytes we did not keep fails instead of reading invented ones.
    """

    def __init__(self, head: bytes, tail: bytes, size: int) -> None:
        super().__init__()
        tail_start = size - len(tail)
        if tail_start <= len(head):  # head and tail touch or overlap: the file is whole
            head, tail, tail_start = head + tail[len(head) - tail_start :], b"", size
        self._head, self._tail, self._tail_start, self._size = head, tail, tail_start, size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Buffer) -> int:
        target = memoryview(buffer).cast("B")
        start = self._position
        if start < len(self._head):
            data = self._head[start : start + len(target)]
        elif start >= self._tail_start:
            data = self._tail[start - self._tail_start : start - self._tail_start + len(target)]
        else:
            data = b""
        target[: len(data)] = data
        self._position += len(data)
        return len(data)


def max_bytes_for(media_type: str, limits: SizeLimits) -> int:
    """The size limit for an upload whose content is `media_type` (what `sniff` found, not the
    kind the uploader declared, so a PDF sent as an imaging study gets the PDF limit). Raises
    ValueError for a media type records does not accept."""
    by_type = {
        DICOM: limits.dicom,
        PDF: limits.pdf,
        JPEG: limits.image,
        PNG: limits.image,
        TIFF: limits.image,
        DOCX: limits.docx,
        TEXT: limits.text,
    }
    if media_type not in by_type:
        raise ValueError(f"not an accepted media type: {media_type!r}")
    return by_type[media_type]


__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "DICOM",
    "DOCX",
    "DOCX_DIRECTORY_BYTES",
    "HEAD_BYTES",
    "JPEG",
    "MAX_DOCX_ENTRIES",
    "MAX_DOCX_RATIO",
    "MAX_DOCX_UNCOMPRESSED",
    "MAX_IMAGE_PIXELS",
    "MAX_NAME_BYTES",
    "PDF",
    "PNG",
    "TAIL_BYTES",
    "TEXT",
    "TIFF",
    "CaseQuotaExceeded",
    "ContentInspector",
    "InspectionResult",
    "SizeLimits",
    "UploadRefused",
    "accepted_types_sentence",
    "check_file_name",
    "max_bytes_for",
    "sniff",
]
