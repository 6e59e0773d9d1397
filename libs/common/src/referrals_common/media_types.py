"""The media types of a case's documents: the ones records accepts (decided from the content,
never from the declared kind or the name) and announces in `document.stored`, and translation
reads."""

from __future__ import annotations

from typing import Final

PDF: Final = "application/pdf"
JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
TIFF: Final = "image/tiff"
DICOM: Final = "application/dicom"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT: Final = "text/plain"
