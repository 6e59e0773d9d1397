"""Check one document in the current process: extract its text, identify its languages.

`read_document` never raises for anything about the document: every failure becomes an
`Outcome` of kind `unreadable`. It does not bound its own time or memory; `checking` runs it in a
worker process that it kills when the time limit passes. Tests and the benchmark call it directly.

The decisions, in order:

1. extraction fails (`extraction.Unreadable`, an OCR failure, anything a parser raises, memory
   exhausted) → unreadable, with the reason extraction gave (`corrupt` for parser errors);
2. a DICOM study → imaging;
3. no letters at all → `ocr_failed` when Tesseract failed on a page (a page that fails is
   skipped, the others still count), when OCR'd pages were discarded as too poor, or were in a
   script no installed pack reads; `no_text` otherwise;
4. a PDF whose text layer is in no recognisable language (a broken font encoding that passed the
   mojibake test) is read again through OCR, and that reading is kept if it identifies one;
5. language undetermined (too few letters, too uncertain) → `language_undetermined`;
6. otherwise text, with the main language, confidence, shares, pages examined and method.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from referrals_common.contracts.translation import (
    ExtractionMethod,
    LanguageShare,
    UnreadableReason,
)
from referrals_translation import extraction, language, ocr
from referrals_translation.extraction import Extracted, Unreadable
from referrals_translation.outcome import Limits, Outcome

log = logging.getLogger(__name__)

_NO_PIXELS = {
    extraction.TEXT: "The text file has no letters.",
    extraction.DOCX: "The Word document has no text.",
}
"""What to say about a document without letters whose format has nothing to OCR."""


def read_document(path: str | Path, media_type: str, limits: Limits) -> Outcome:
    """The outcome of checking the document at `path` of `media_type`; never raises for it."""
    started = time.perf_counter()
    outcome = _read(Path(path), media_type, limits)
    return outcome.timed(time.perf_counter() - started)


def _read(path: Path, media_type: str, limits: Limits) -> Outcome:
    try:
        extracted = extraction.extract(path, media_type, limits)
        if extracted.imaging:
            return Outcome.imaging(pages=extracted.pages)
        if not language.has_letters(extracted.text):
            return _without_text(extracted, media_type)
        identified = _identify(extracted, limits)
        if identified.main_language is None and _worth_ocr(extracted, media_type):
            extracted, identified = _through_ocr(path, limits, extracted, identified)
    except Unreadable as exc:
        return Outcome.unreadable(exc.reason, exc.detail, pages=exc.pages)
    except ocr.OcrError as exc:
        return Outcome.unreadable(UnreadableReason.OCR_FAILED, str(exc))
    except MemoryError:
        return Outcome.unreadable(
            UnreadableReason.CORRUPT, "Reading the document needed more memory than allowed."
        )
    except Exception as exc:  # a parser's bug on a hostile file is the file's problem
        log.warning("reading a %s failed", media_type, exc_info=True)
        return Outcome.unreadable(
            UnreadableReason.CORRUPT, f"The document could not be parsed ({type(exc).__name__})."
        )
    if identified.main_language is None:
        return Outcome.unreadable(
            UnreadableReason.LANGUAGE_UNDETERMINED,
            identified.undetermined or "The language could not be determined.",
            pages=extracted.pages,
        )
    return Outcome.text(
        main_language=identified.main_language,
        languages=tuple(
            LanguageShare(language=code, share=share) for code, share in identified.shares
        ),
        confidence=identified.confidence,
        pages=extracted.pages,
        method=extracted.method,
    )


def _identify(extracted: Extracted, limits: Limits) -> language.Identification:
    return language.identify(
        extracted.text, min_letters=limits.min_letters, min_confidence=limits.min_confidence
    )


def _through_ocr(
    path: Path, limits: Limits, extracted: Extracted, identified: language.Identification
) -> tuple[Extracted, language.Identification]:
    """The PDF read again from its pixels, when that identifies its language; else as it was."""
    try:
        again = extraction.extract(path, extraction.PDF, limits, force_ocr=True)
    except (Unreadable, ocr.OcrError):
        return extracted, identified
    identified_again = _identify(again, limits)
    if identified_again.main_language is None:
        return extracted, identified
    return again, identified_again


def _worth_ocr(extracted: Extracted, media_type: str) -> bool:
    """A PDF read from its text layer whose language came out undetermined: try its pixels."""
    return media_type == extraction.PDF and extracted.method is ExtractionMethod.TEXT_LAYER


def _without_text(extracted: Extracted, media_type: str) -> Outcome:
    if extracted.ocr_failure is not None:
        return Outcome.unreadable(
            UnreadableReason.OCR_FAILED, extracted.ocr_failure, pages=extracted.pages
        )
    if extracted.unsupported_script is not None:
        return Outcome.unreadable(
            UnreadableReason.OCR_FAILED,
            f"The text is in {extracted.unsupported_script} script, which OCR cannot read here.",
            pages=extracted.pages,
        )
    if extracted.ocr_poor_pages:
        return Outcome.unreadable(
            UnreadableReason.OCR_FAILED,
            f"OCR of {extracted.ocr_poor_pages} page(s) was too poor to use (best mean word "
            f"confidence {extracted.ocr_poor_confidence:.0f} of 100).",
            pages=extracted.pages,
        )
    if media_type in _NO_PIXELS:
        return Outcome.unreadable(UnreadableReason.NO_TEXT, _NO_PIXELS[media_type])
    return Outcome.unreadable(
        UnreadableReason.NO_TEXT,
        "The document has neither a text layer nor text that OCR could find.",
        pages=extracted.pages,
    )
