"""Events published by **records** on `referrals.documents.v1`.

Records stores the case's medical documents in object storage (MinIO) and announces each stored
document, or the refusal of an upload. Events describe a document by identifiers and technical
facts (kind, media type, size, digest, an opaque storage key built from ids): never the uploaded
file name, which may carry the patient's name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field, PositiveInt, StringConstraints, model_validator

from . import topics
from .envelope import EventData

SOURCE = "/referrals/records"


class DocumentKind(StrEnum):
    """What a document is, clinically."""

    DISCHARGE_SUMMARY = "discharge_summary"
    """A discharge summary or extract (in Ukraine, Form 027/o or the military Form 100)."""
    PATHOLOGY_REPORT = "pathology_report"
    """A pathology, biopsy, cytology or immunohistochemistry report."""
    IMAGING_REPORT = "imaging_report"
    """A radiologist's report on CT, MRI, PET-CT, ultrasound or X-ray."""
    IMAGING_STUDY = "imaging_study"
    """The images themselves (DICOM)."""
    LAB_RESULTS = "lab_results"
    MEDICATION_LIST = "medication_list"
    TRANSLATION = "translation"
    """A translated copy of another document of the case (see `translation_of`)."""
    OPINION = "opinion"
    """A cancer center's written opinion."""
    OTHER = "other"


class RejectionReason(StrEnum):
    """Why records refused an upload."""

    UNSUPPORTED_TYPE = "unsupported_type"
    TOO_LARGE = "too_large"
    EMPTY = "empty"
    CORRUPT = "corrupt"
    DECOMPRESSION_BOMB = "decompression_bomb"
    BAD_NAME = "bad_name"


MediaType = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z]+/[a-z0-9][a-z0-9.+-]*$", max_length=127),
    Field(
        description="IANA media type as sniffed from the content, without parameters: "
        "application/pdf, image/jpeg, application/dicom",
        examples=["application/pdf"],
    ),
]
"""An IANA media type without parameters."""

Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="SHA-256 digest of the stored bytes, lower-case hex"),
]
"""A SHA-256 digest in lower-case hex."""

ObjectKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9-]+(/[a-z0-9-]+)*$", max_length=512),
    Field(
        description="Opaque key of the object in the documents bucket, built from ids only "
        "(lower-case letters, digits, '-' and '/': no file name, no extension)",
        examples=["cases/0b9a4a4e-8f53-4c1e-9c1a-3f0f6c7d2e11/documents/5f1c"],
    ),
]
"""An object storage key made of ids only."""


class DocumentStored(EventData):
    """A document of the case is stored, complete and checked, and may be read.

    Emitted once per document, after the object is durably written and its digest verified. A
    consumer may rely on: the object at `object_key` has exactly `size_bytes` bytes with digest
    `sha256` and never changes (a new version is a new document); `translation_of` names the
    original exactly when `kind` is `translation`. The language check of the document follows on
    `referrals.language-checks.v1`.
    """

    event_type: ClassVar[str] = "referrals.document.stored.v1"
    topic: ClassVar[str] = topics.DOCUMENTS
    source: ClassVar[str] = SOURCE

    document_id: UUID = Field(description="The document's id")
    kind: DocumentKind = Field(description="What the document is")
    media_type: MediaType = Field(description="Media type sniffed from the content")
    size_bytes: PositiveInt = Field(description="Size of the stored object in bytes (never 0)")
    sha256: Sha256Hex = Field(description="SHA-256 digest of the stored object")
    object_key: ObjectKey = Field(description="Where the object is in the documents bucket")
    translation_of: UUID | None = Field(
        default=None,
        description="For a translated copy, the id of the original document; null otherwise",
    )
    stored_at: AwareDatetime = Field(description="When the object was stored")
    referral_id: UUID | None = Field(
        default=None,
        description="For a document a cancer center uploaded (its opinion), the referral it "
        "uploaded it for; null for the patient's documents. Partners accepts an opinion only "
        "from the referral that uploaded it",
    )

    @model_validator(mode="after")
    def _translation_names_its_original(self) -> DocumentStored:
        is_translation = self.kind is DocumentKind.TRANSLATION
        if is_translation and self.translation_of is None:
            raise ValueError("a translation names its original in translation_of")
        if not is_translation and self.translation_of is not None:
            raise ValueError("only a document of kind `translation` has translation_of")
        if self.translation_of == self.document_id:
            raise ValueError("a document is not a translation of itself")
        if (self.kind is DocumentKind.OPINION) != (self.referral_id is not None):
            raise ValueError("an opinion, and only an opinion, names the referral it answers")
        return self


class DocumentRejected(EventData):
    """An upload was refused: nothing is stored under `document_id`.

    Emitted when records refuses an upload after accepting the request (for example when the
    archive turns out to be a decompression bomb), so that intake can ask the patient for another
    file. `detail` is an English explanation for operators; it never repeats the file name.
    """

    event_type: ClassVar[str] = "referrals.document.rejected.v1"
    topic: ClassVar[str] = topics.DOCUMENTS
    source: ClassVar[str] = SOURCE

    document_id: UUID = Field(description="The id the upload was given; nothing is stored")
    reason: RejectionReason = Field(description="Why the upload was refused")
    detail: str = Field(
        min_length=1,
        max_length=500,
        description="Human-readable explanation in English, without the file name or other "
        "personal data",
    )


__all__ = [
    "DocumentKind",
    "DocumentRejected",
    "DocumentStored",
    "MediaType",
    "ObjectKey",
    "RejectionReason",
    "Sha256Hex",
]
