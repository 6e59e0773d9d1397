"""Records' settings: the shared ones plus storage, limits, links and token verification."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from referrals_common.settings import ApiServiceSettings, CaseTokenCheckSettings
from referrals_records.inspection import SizeLimits

MIB = 1024 * 1024


class RecordsSettings(ApiServiceSettings, CaseTokenCheckSettings):
    service_name: ClassVar[str] = "records"

    bucket: str = "referrals-documents"
    # Size limits follow the media type sniffed from the content, never the declared kind.
    max_imaging_mb: int = Field(2048, ge=1, description="limit for DICOM files (imaging studies)")
    max_pdf_mb: int = Field(100, ge=1, description="limit for PDF documents")
    max_image_mb: int = Field(50, ge=1, description="limit for JPEG, PNG and TIFF images")
    max_docx_mb: int = Field(50, ge=1, description="limit for Word documents (DOCX)")
    max_text_mb: int = Field(5, ge=1, description="limit for plain text files")
    max_upload_mb: int | None = Field(
        None, ge=1, description="optional ceiling on every limit but DICOM's (unset: none)"
    )
    case_quota_mb: int = Field(
        5120, ge=1, description="total of a case's live documents; an upload past it is refused"
    )
    upload_part_mb: int = Field(
        8, ge=5, le=512, description="part size of resumable uploads (S3's minimum is 5 MB)"
    )
    upload_ttl_hours: float = Field(
        24, gt=0, description="an upload with no new part for this long expires, parts dropped"
    )
    upload_sweep_seconds: float = Field(
        60, gt=0, description="how often the consumer process expires abandoned uploads"
    )
    link_ttl_seconds: int = Field(300, ge=1, le=3600, description="life of a download link")
    center_key_cache_seconds: float = Field(
        2.0,
        ge=0.1,
        le=60,
        description="how long a verified center key is remembered in one API process; a key "
        "partners revoked keeps working there at most this long after records read the event",
    )
    # HMAC key (base64, 32 bytes or more) that signs download links; development derives one.
    link_signing_key: SecretStr = SecretStr("")

    @property
    def size_limits(self) -> SizeLimits:
        """The limit per media type, in bytes; `max_upload_mb`, when set, lowers every one but
        DICOM's."""

        def capped(megabytes: int) -> int:
            ceiling = self.max_upload_mb if self.max_upload_mb is not None else megabytes
            return min(megabytes, ceiling) * MIB

        return SizeLimits(
            dicom=self.max_imaging_mb * MIB,
            pdf=capped(self.max_pdf_mb),
            image=capped(self.max_image_mb),
            docx=capped(self.max_docx_mb),
            text=capped(self.max_text_mb),
        )

    @property
    def case_quota_bytes(self) -> int:
        return self.case_quota_mb * MIB

    def _secrets(self) -> dict[str, str]:
        return {
            **super()._secrets(),
            "link_signing_key": self.link_signing_key.get_secret_value(),
        }
