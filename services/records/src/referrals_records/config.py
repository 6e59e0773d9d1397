"""Records' settings: the shared ones plus storage, limits, links and token verification."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from referrals_common.settings import ServiceSettings

MIB = 1024 * 1024


class RecordsSettings(ServiceSettings):
    service_name: ClassVar[str] = "records"

    bucket: str = "referrals-documents"
    max_upload_mb: int = Field(50, ge=1, description="limit for every kind but imaging studies")
    max_imaging_mb: int = Field(2048, ge=1, description="limit for DICOM imaging studies")
    link_ttl_seconds: int = Field(300, ge=1, le=3600, description="life of a download link")
    # The JWKS intake publishes at /v1/.well-known/jwks.json: case tokens are verified offline.
    case_token_jwks: str = ""
    case_token_issuer: str = "referrals-intake"  # noqa: S105 - an issuer name
    # Server-side secret mixed into cancer centers' API key hashes.
    api_key_pepper: SecretStr = SecretStr("change-me-in-dev-only-pepper")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MIB

    @property
    def max_imaging_bytes(self) -> int:
        return self.max_imaging_mb * MIB

    def _secrets(self) -> dict[str, str]:
        return {**super()._secrets(), "api_key_pepper": self.api_key_pepper.get_secret_value()}
