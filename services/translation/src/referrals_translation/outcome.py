"""What checking one document produces (`Outcome`) and the bounds it is checked within (`Limits`).

Both are plain frozen dataclasses: they cross the pipe between the consumer and the checking
worker process (pickled), so they hold nothing but values, and they say nothing about the case's
destination: whether the language is *acceptable* is decided afterwards (`acceptance`), when the
destination is known.

An outcome is one of three kinds:

* `text`: the document has text whose main language was identified (`main_language`,
  `confidence`, `languages` with their shares, `pages` examined, `method`);
* `imaging`: a DICOM study, images rather than prose; accepted without a language check
  (`method` is `dicom`, `pages` the number of frames, no languages);
* `unreadable`: why not (`reason`, one of the contract's `UnreadableReason`) and an English
  `detail` for operators that never quotes the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from referrals_common.contracts.translation import (
    ExtractionMethod,
    LanguageShare,
    UnreadableReason,
)

OutcomeKind = Literal["text", "imaging", "unreadable"]

MAX_DETAIL = 500
"""The contract's limit on `DocumentUnreadable.detail`."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much time, work and memory checking one document may take.

    The defaults read the first 20 pages of a text PDF (fewer once 20 000 letters are found,
    plenty to identify languages), OCR at most 5 scanned pages (fewer once 1 500 letters are
    read), and stop everything after 90 s.
    """

    timeout_s: float = 90.0
    """The whole check; the worker is killed when it runs longer."""
    max_pages: int = 20
    """Pages (PDF) or frames (TIFF) examined at most, from the first."""
    max_ocr_pages: int = 5
    """Of those, how many may be OCR'd (each costs 1-3 s)."""
    enough_letters: int = 20_000
    """Stop examining further pages once this many letters were read."""
    ocr_enough_letters: int = 1_500
    """Stop OCR'ing further pages once this many letters were recognised."""
    min_text_layer_letters: int = 20
    """A PDF page whose text layer has fewer letters is treated as a scan and OCR'd."""
    ocr_dpi: int = 150
    """Resolution PDF pages are rendered at for OCR."""
    max_render_pixels: int = 25_000_000
    """A rendered page is scaled down to at most this many pixels (an oversized page)."""
    max_image_pixels: int = 100_000_000
    """Larger images (declared width x height) are refused as decompression bombs."""
    ocr_max_side: int = 4_000
    """Photos are scaled down to this longest side before OCR."""
    ocr_timeout_s: float = 60.0
    """One Tesseract run."""
    min_ocr_confidence: float = 55.0
    """A page whose mean word confidence (0-100) is lower is discarded as unreadable."""
    min_letters: int = 40
    """Fewer letters of text are too few to tell the language."""
    min_confidence: float = 0.6
    """A main language identified with less confidence (0-1) is undetermined."""
    max_text_bytes: int = 2 * 1024 * 1024
    """Bytes of a plain-text file read."""
    max_docx_xml_bytes: int = 64 * 1024 * 1024
    """A DOCX whose main part expands to more is refused (a zip bomb)."""
    max_memory_mb: int | None = 3072
    """Address-space limit of the checking worker (it maps ~1 GB of language models)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of checking one document; build it with `text`, `imaging` or `unreadable`."""

    kind: OutcomeKind
    method: ExtractionMethod | None = None
    pages: int = 0
    """Pages examined (frames of a study; 0 for DOCX and plain text)."""
    main_language: str | None = None
    languages: tuple[LanguageShare, ...] = field(default_factory=tuple)
    confidence: float = 0.0
    reason: UnreadableReason | None = None
    detail: str | None = None
    seconds: float = 0.0
    """Wall time the check took, worker start-up excluded."""

    @classmethod
    def text(
        cls,
        *,
        main_language: str,
        languages: tuple[LanguageShare, ...],
        confidence: float,
        pages: int,
        method: ExtractionMethod,
        seconds: float = 0.0,
    ) -> Outcome:
        """Text whose main language was identified."""
        if main_language not in {share.language for share in languages}:
            raise ValueError("main_language is not one of languages")
        return cls(
            kind="text",
            method=method,
            pages=pages,
            main_language=main_language,
            languages=languages,
            confidence=confidence,
            seconds=seconds,
        )

    @classmethod
    def imaging(cls, *, pages: int, seconds: float = 0.0) -> Outcome:
        """An imaging study (DICOM): accepted without a language."""
        return cls(
            kind="imaging",
            method=ExtractionMethod.DICOM,
            pages=pages,
            confidence=1.0,
            seconds=seconds,
        )

    @classmethod
    def unreadable(
        cls, reason: UnreadableReason, detail: str, *, pages: int = 0, seconds: float = 0.0
    ) -> Outcome:
        """The document could not be read; `detail` is English and free of document text."""
        detail = detail.strip() or "The document could not be read."
        if len(detail) > MAX_DETAIL:
            detail = detail[: MAX_DETAIL - 1] + "…"
        return cls(kind="unreadable", reason=reason, detail=detail, pages=pages, seconds=seconds)

    def timed(self, seconds: float) -> Outcome:
        """The same outcome with its wall time."""
        return replace(self, seconds=seconds)
