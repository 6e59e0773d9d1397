"""Translation's settings: the shared ones, where documents are, how long a check may take."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from referrals_common.settings import ServiceSettings


class TranslationSettings(ServiceSettings):
    service_name: ClassVar[str] = "translation"

    bucket: str = "referrals-documents"
    check_timeout_seconds: float = Field(
        90.0, gt=0, description="a document still being read after this is declared unreadable"
    )
    max_pages: int = Field(
        20, ge=1, description="pages examined per document (a 500-page PDF is sampled)"
    )
    workers: int = Field(2, ge=1, description="documents checked at the same time")
    max_records: int = Field(
        4,
        ge=1,
        description="records per consumer batch: a batch must finish within the poll "
        "interval, and OCR takes seconds per page",
    )
