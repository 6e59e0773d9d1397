"""Events published by **translation** on `referrals.language-checks.v1`.

Translation reads every stored document (OCR for scans) and checks that it is written in English
or in a language of the countries the case may go to, the rule second-opinion services apply. For
each `referrals.document.stored.v1` it publishes exactly one outcome: the document's languages are
accepted, a translation is required (and into which languages), or the document is unreadable.
Events carry language codes, shares and confidences, never text from the document.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    model_validator,
)

from . import topics
from .envelope import EventData
from .intake import LanguageCode

SOURCE = "/referrals/translation"

Confidence = Annotated[
    float,
    Field(ge=0.0, le=1.0, description="Confidence of the detection, from 0 (none) to 1 (certain)"),
]


class ExtractionMethod(StrEnum):
    """How the text of the document was obtained."""

    TEXT_LAYER = "text_layer"
    """The document's own text layer (a digital PDF)."""
    OCR = "ocr"
    """Optical character recognition of a scan or photo."""
    DICOM = "dicom"
    """The text attributes of a DICOM study."""
    PLAIN_TEXT = "plain_text"
    """The document is plain text."""


class UnreadableReason(StrEnum):
    """Why the language of a document could not be determined."""

    NO_TEXT = "no_text"
    """Neither a text layer nor OCR produced any text."""
    OCR_FAILED = "ocr_failed"
    ENCRYPTED = "encrypted"
    """The document is password-protected."""
    CORRUPT = "corrupt"
    UNSUPPORTED_FORMAT = "unsupported_format"
    LANGUAGE_UNDETERMINED = "language_undetermined"
    """There is text, but no language was detected with enough confidence."""


def _no_duplicates(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("the list has duplicate languages")
    return values


class LanguageShare(BaseModel):
    """One language found in a document and the share of the text written in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: LanguageCode = Field(description="The language")
    share: float = Field(ge=0.0, le=1.0, description="Share of the text in this language, 0..1")


class DocumentLanguageAccepted(EventData):
    """The document is in an acceptable language, or is an imaging study: no translation needed.

    Emitted once per checked document. A consumer may rely on: `languages` lists each detected
    language once, their shares add up to at most 1, and `main_language` is one of them; for a
    DICOM study (`method` = `dicom`), which carries images rather than prose, `languages` is empty
    and `main_language` is null.
    """

    event_type: ClassVar[str] = "referrals.document.language_accepted.v1"
    topic: ClassVar[str] = topics.LANGUAGE_CHECKS
    source: ClassVar[str] = SOURCE

    document_id: UUID = Field(description="The checked document")
    languages: list[LanguageShare] = Field(
        description="The languages found, each once, with their shares (empty for a DICOM study)"
    )
    main_language: LanguageCode | None = Field(
        description="The language most of the text is in; null for a DICOM study"
    )
    confidence: Confidence
    pages: NonNegativeInt = Field(
        description="Pages examined (images for a study; 0 for a format without pages)"
    )
    method: ExtractionMethod = Field(description="How the text was obtained")

    @model_validator(mode="after")
    def _consistent_languages(self) -> DocumentLanguageAccepted:
        codes = [item.language for item in self.languages]
        if self.method is ExtractionMethod.DICOM:
            if codes or self.main_language is not None:
                raise ValueError("a DICOM study is accepted as imaging, without languages")
            return self
        if not codes:
            raise ValueError("languages is empty for a document with text")
        if len(set(codes)) != len(codes):
            raise ValueError("languages lists a language twice")
        if sum(item.share for item in self.languages) > 1.0 + 1e-6:
            raise ValueError("the language shares add up to more than 1")
        if self.main_language not in codes:
            raise ValueError("main_language is not one of languages")
        return self


class DocumentTranslationRequired(EventData):
    """The document must be translated before the case can be referred.

    Emitted once per checked document whose language no eligible center reads. A consumer may rely
    on: `acceptable_languages` is non-empty and does not contain `detected_language`; a translation
    into any one of them, uploaded as a document of kind `translation`, satisfies the check.
    """

    event_type: ClassVar[str] = "referrals.document.translation_required.v1"
    topic: ClassVar[str] = topics.LANGUAGE_CHECKS
    source: ClassVar[str] = SOURCE

    document_id: UUID = Field(description="The document that needs a translation")
    detected_language: LanguageCode = Field(description="The main language of the document")
    acceptable_languages: Annotated[list[LanguageCode], AfterValidator(_no_duplicates)] = Field(
        min_length=1,
        description="Languages a translation may be in (English first, then languages of the "
        "destination countries), without duplicates",
    )
    confidence: Confidence

    @model_validator(mode="after")
    def _detected_is_not_acceptable(self) -> DocumentTranslationRequired:
        if self.detected_language in self.acceptable_languages:
            raise ValueError("detected_language is acceptable: no translation is required")
        return self


class DocumentUnreadable(EventData):
    """The document's language could not be determined: the patient must upload a better copy.

    Emitted once per checked document that could not be read. `detail` is an English explanation
    for operators, never text from the document.
    """

    event_type: ClassVar[str] = "referrals.document.unreadable.v1"
    topic: ClassVar[str] = topics.LANGUAGE_CHECKS
    source: ClassVar[str] = SOURCE

    document_id: UUID = Field(description="The document that could not be read")
    reason: UnreadableReason = Field(description="Why the document could not be read")
    detail: str = Field(
        min_length=1,
        max_length=500,
        description="Human-readable explanation in English, without text from the document",
    )


__all__ = [
    "Confidence",
    "DocumentLanguageAccepted",
    "DocumentTranslationRequired",
    "DocumentUnreadable",
    "ExtractionMethod",
    "LanguageShare",
    "UnreadableReason",
]
