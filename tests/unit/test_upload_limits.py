"""Records' size limits, case quota and multipart rules: limits per media type (never per declared
kind), the settings they come from, a DOCX's ZIP directory checked for bombs from the kept tail,
the quota refusal, and one file per multipart request."""

from __future__ import annotations

import io
import struct
import zipfile

import docx
import pytest
from starlette.requests import Request

from referrals_common.api.problems import BadRequest
from referrals_common.contracts.records import RejectionReason
from referrals_records.config import RecordsSettings
from referrals_records.inspection import (
    DICOM,
    DOCX,
    DOCX_DIRECTORY_BYTES,
    JPEG,
    MAX_DOCX_ENTRIES,
    PDF,
    CaseQuotaExceeded,
    ContentInspector,
    UploadRefused,
    max_bytes_for,
)
from referrals_records.uploads import read_upload

pytestmark = pytest.mark.unit

MB = 2**20


# --- settings ------------------------------------------------------------------------------------


def test_the_default_limits_per_media_type_and_the_case_quota() -> None:
    settings = RecordsSettings()
    limits = settings.size_limits

    assert (limits.dicom, limits.pdf, limits.image, limits.docx, limits.text) == (
        2048 * MB,
        100 * MB,
        50 * MB,
        50 * MB,
        5 * MB,
    )
    assert settings.case_quota_bytes == 5 * 1024 * MB


def test_max_upload_mb_is_a_ceiling_on_every_limit_but_dicoms() -> None:
    limits = RecordsSettings(max_upload_mb=20, max_text_mb=3).size_limits

    assert (limits.pdf, limits.image, limits.docx, limits.text) == (
        20 * MB,
        20 * MB,
        20 * MB,
        3 * MB,
    )
    assert limits.dicom == 2048 * MB


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERRALS_RECORDS_MAX_PDF_MB", "7")
    monkeypatch.setenv("REFERRALS_RECORDS_CASE_QUOTA_MB", "9")
    settings = RecordsSettings()

    assert max_bytes_for(PDF, settings.size_limits) == 7 * MB
    assert max_bytes_for(JPEG, settings.size_limits) == 50 * MB
    assert settings.case_quota_bytes == 9 * MB


def test_a_pdf_gets_the_pdf_limit_and_dicom_the_imaging_limit() -> None:
    limits = RecordsSettings(max_pdf_mb=1, max_imaging_mb=3).size_limits
    pdf = ContentInspector(PDF, max_bytes=max_bytes_for(PDF, limits))
    dicom = ContentInspector(DICOM, max_bytes=max_bytes_for(DICOM, limits))

    dicom.feed(bytes(2 * MB))
    with pytest.raises(UploadRefused) as refused:
        pdf.feed(bytes(2 * MB))

    assert refused.value.reason is RejectionReason.TOO_LARGE
    assert refused.value.status == 413
    assert refused.value.detail == "The file is larger than the limit of 1 MB."


def test_the_quota_refusal_says_the_quota_and_what_is_used() -> None:
    refused = CaseQuotaExceeded(quota_bytes=5 * 1024 * MB, used_bytes=4 * 1024 * MB + MB // 2)

    assert isinstance(refused, UploadRefused)
    assert (refused.status, refused.reason) == (413, RejectionReason.TOO_LARGE)
    assert (refused.quota_bytes, refused.used_bytes) == (5 * 1024 * MB, 4 * 1024 * MB + MB // 2)
    assert "5120 MB in all; 4096.5 MB are used" in refused.detail


# --- DOCX bombs, from the ZIP directory in the kept tail -----------------------------------------


def word_document() -> bytes:
    document = docx.Document()
    document.add_paragraph("Виписка із медичної карти.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_plus(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(word_document())) as source,
        zipfile.ZipFile(out, "w", method) as archive,
    ):
        for entry in source.infolist():
            archive.writestr(entry, source.read(entry))
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def inspect_docx(data: bytes) -> None:
    inspector = ContentInspector(DOCX, max_bytes=50 * MB)
    for start in range(0, len(data), 64 * 1024):
        inspector.feed(data[start : start + 64 * 1024])
    inspector.finish()


def bomb_refusal(data: bytes) -> UploadRefused:
    with pytest.raises(UploadRefused) as refused:
        inspect_docx(data)
    assert refused.value.reason is RejectionReason.DECOMPRESSION_BOMB, refused.value.detail
    assert refused.value.status == 422
    return refused.value


def test_a_word_document_passes_the_directory_check() -> None:
    inspect_docx(word_document())
    inspect_docx(docx_plus({"word/media/image1.png": bytes(range(256)) * 4096}))


def test_a_part_inflating_hundreds_of_times_is_a_bomb() -> None:
    refused = bomb_refusal(docx_plus({"word/styles2.xml": b" " * (8 * MB)}))

    assert "more than the 200 times records accepts" in refused.detail


def test_parts_inflating_past_the_total_are_a_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    from referrals_records import inspection

    monkeypatch.setattr(inspection, "MAX_DOCX_UNCOMPRESSED", 2 * MB)
    data = docx_plus({"word/media/a.bin": bytes(3 * MB)}, method=zipfile.ZIP_STORED)

    assert "inflates to more than 2 MB" in bomb_refusal(data).detail


def test_too_many_entries_are_a_bomb() -> None:
    data = docx_plus({f"x/{n}": b"" for n in range(MAX_DOCX_ENTRIES)})

    assert "more than the 2,000 records accepts" in bomb_refusal(data).detail


def test_a_directory_larger_than_what_is_kept_is_a_bomb() -> None:
    long_names = {f"x/{n:05d}" + "n" * 240: b"" for n in range(1_500)}
    data = docx_plus(long_names)
    assert len(data) > DOCX_DIRECTORY_BYTES

    assert "too large to check" in bomb_refusal(data).detail


def central_directory(entries: list[tuple[str, int, int]], prefix: bytes) -> bytes:
    """A ZIP's central directory and end record, after `prefix`, whose entries declare their
    (compressed, inflated) sizes in ZIP64 extra fields."""
    directory = b""
    for name, compressed, inflated in entries:
        extra = struct.pack("<HHQQ", 1, 16, inflated, compressed)
        directory += struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            45,
            3,
            45,
            0,
            0,
            8,
            0,
            0,
            0,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            0,
        )
        directory += name.encode() + extra
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(prefix), 0
    )
    return prefix + directory + end


def test_zip64_sizes_in_the_directory_are_read() -> None:
    prefix = b"PK\x03\x04" + bytes(4000)
    fine = central_directory([("word/document.xml", 400_000, 4 * MB)], prefix)
    bomb = central_directory([("word/document.xml", 4 * MB, 8 * 2**30)], prefix)

    inspect_docx(fine)
    assert "to 8192 MB" in bomb_refusal(bomb).detail


def test_a_damaged_directory_is_corrupt() -> None:
    data = bytearray(word_document())
    directory = data.rfind(b"PK\x01\x02")
    data[directory : directory + 4] = b"XXXX"

    with pytest.raises(UploadRefused) as refused:
        inspect_docx(bytes(data))

    assert refused.value.reason is RejectionReason.CORRUPT


# --- one file per multipart request --------------------------------------------------------------


def multipart_request(body: bytes, boundary: str, chunk: int) -> Request:
    pieces = [body[start : start + chunk] for start in range(0, len(body), chunk)]
    messages = [
        {"type": "http.request", "body": piece, "more_body": index < len(pieces) - 1}
        for index, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    return Request(scope, receive)  # type: ignore[arg-type]


def two_files(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nother\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        f"first document\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.txt"\r\n\r\n'
        f"second document\r\n--{boundary}--\r\n"
    ).encode()


@pytest.mark.parametrize("chunk", [10_000, 7, 1], ids=["one-chunk", "small-chunks", "bytewise"])
async def test_a_second_file_in_one_request_is_refused_not_dropped(chunk: int) -> None:
    request = multipart_request(two_files("xyz"), "xyz", chunk)
    upload = await read_upload(request)

    with pytest.raises(BadRequest) as refused:
        [piece async for piece in upload.chunks]

    assert refused.value.type_slug == "multiple-files"
    assert "more than one file" in (refused.value.detail or "")


async def test_one_file_with_fields_after_it_is_read_whole() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        b"the document\r\n"
        b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nlater field\r\n--b--\r\n'
    )
    upload = await read_upload(multipart_request(body, "b", 5))

    assert b"".join([piece async for piece in upload.chunks]) == b"the document"
    assert upload.file_name == "a.txt"
