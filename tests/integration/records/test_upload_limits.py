"""Records' upload limits over real MinIO and PostgreSQL: the size limit follows the type found in
the content (not the declared kind), a case has a quota (enforced while streaming and again,
under a lock, when recording), one file per request, and DOCX zip bombs are refused. Every refusal
leaves no object and no row. (The runtime's settings: `max_upload_mb=2` caps every type but DICOM
at 2 MB, `max_imaging_mb=40`.)"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest

from referrals_records.repository import UploadStatements
from tests.fixtures import zip_bombs

from .conftest import case_headers, upload
from .test_documents import objects, rows

pytestmark = pytest.mark.integration

MB = 2**20
REJECTED = "referrals.document.rejected.v1"


def big_pdf(size: int) -> bytes:
    """A PDF-typed file of about `size` bytes that passes the inspector's checks (a trailer)."""
    return b"%PDF-1.7\n" + os.urandom(size) + b"\nstartxref\n0\n%%EOF\n"


def dicom(size: int) -> bytes:
    return b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + os.urandom(size)


async def rejections(runtime) -> list[dict]:
    found = await rows(runtime, "select payload from outbox where event_type = $1", REJECTED)
    return [json.loads(row["payload"])["data"] for row in found]


async def test_a_pdf_declared_as_an_imaging_study_gets_the_pdf_limit(api, runtime):
    case_id = uuid.uuid4()

    r = await upload(api, case_id, big_pdf(3 * MB), name="ct.pdf", kind="imaging_study")

    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/upload-too-large")
    assert problem["reason"] == "too_large"
    assert problem["detail"] == "The file is larger than the limit of 2 MB."
    assert objects(runtime) == []
    assert await rows(runtime, "select id from documents") == []
    assert [event["reason"] for event in await rejections(runtime)] == ["too_large"]


async def test_a_dicom_study_gets_the_imaging_limit_whatever_kind_it_is_sent_as(api, runtime):
    case_id = uuid.uuid4()

    r = await upload(api, case_id, dicom(3 * MB), name="IM00001", kind="other")

    assert r.status_code == 201, r.text
    assert r.json()["media_type"] == "application/dicom"


async def test_an_upload_past_the_case_quota_is_refused_and_deleted_documents_free_it(api, runtime):
    runtime.records.case_quota_bytes = 3 * MB
    case_id = uuid.uuid4()
    first = await upload(api, case_id, big_pdf(3 * MB // 2), name="a.pdf")
    assert first.status_code == 201, first.text
    used = first.json()["size_bytes"]

    second = big_pdf(3 * MB // 2 + 1000)
    r = await upload(api, case_id, second, name="b.pdf")

    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "https://referrals.example/problems/case-quota-exceeded"
    assert problem["status"] == 413
    assert (problem["quota_bytes"], problem["used_bytes"]) == (3 * MB, used)
    assert "3 MB in all" in problem["detail"]
    assert objects(runtime) == [f"cases/{case_id}/documents/{first.json()['id']}"]
    assert len(await rows(runtime, "select id from documents")) == 1
    assert [event["reason"] for event in await rejections(runtime)] == ["too_large"]
    # Another case has its own quota.
    assert (await upload(api, uuid.uuid4(), second, name="b.pdf")).status_code == 201

    deleted = await api.delete(
        f"/v1/cases/{case_id}/documents/{first.json()['id']}", headers=case_headers(case_id)
    )
    assert deleted.status_code == 204, deleted.text
    assert (await upload(api, case_id, second, name="b.pdf")).status_code == 201


async def test_the_quota_left_bounds_the_stream(api, runtime):
    """A 30 MB study into a case with 3 MB left is stopped a few megabytes in, not read whole."""
    runtime.records.case_quota_bytes = 3 * MB
    case_id = uuid.uuid4()
    boundary = "quota-bound"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nimaging_study\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="IM1"\r\n\r\n'
    ).encode()
    sent = 0

    async def body():
        nonlocal sent
        for piece in [head + dicom(0)] + [os.urandom(MB) for _ in range(30)]:
            sent += len(piece)
            yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    r = await api.post(
        f"/v1/cases/{case_id}/documents",
        content=body(),
        headers={
            **case_headers(case_id),
            "content-type": f"multipart/form-data; boundary={boundary}",
        },
    )

    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("/case-quota-exceeded")
    assert sent < 10 * MB, f"{sent / MB:.0f} MB of 30 read"
    assert objects(runtime) == []
    store = runtime.records.store
    assert list(store.client._list_multipart_uploads(store.bucket).uploads) == []


async def test_two_uploads_at_once_cannot_both_pass_the_quota(api, runtime, monkeypatch):
    """Both uploads see the case empty while they stream (held until both have looked); the
    second to be recorded finds the first under the lock and is refused."""
    runtime.records.case_quota_bytes = 3 * MB
    case_id = uuid.uuid4()
    both_looked = asyncio.Barrier(2)
    upload_state = UploadStatements.upload_state

    async def look_together(self, *args):
        state = await upload_state(self, *args)
        await asyncio.wait_for(both_looked.wait(), 30)
        return state

    monkeypatch.setattr(UploadStatements, "upload_state", look_together)

    answers = await asyncio.gather(
        upload(api, case_id, big_pdf(19 * MB // 10), name="a.pdf"),
        upload(api, case_id, big_pdf(19 * MB // 10), name="b.pdf"),
    )

    assert sorted(r.status_code for r in answers) == [201, 413], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 413).json()
    assert refused["type"].endswith("/case-quota-exceeded")
    stored = next(r for r in answers if r.status_code == 201).json()
    assert refused["used_bytes"] == stored["size_bytes"]
    assert objects(runtime) == [f"cases/{case_id}/documents/{stored['id']}"]
    [total] = await rows(runtime, "select sum(size_bytes) as total from documents")
    assert total["total"] <= 3 * MB
    assert [event["reason"] for event in await rejections(runtime)] == ["too_large"]


def two_files(boundary: str) -> bytes:
    parts = [b'name="kind"\r\n\r\n' + b"discharge_summary"]
    for name in ("a.pdf", "b.pdf"):
        parts.append(f'name="file"; filename="{name}"\r\n\r\n'.encode() + big_pdf(1000))
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; ".encode() + part + b"\r\n"
        for part in parts
    )
    return body + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("sent", ["as-httpx-streams-it", "in-one-piece"])
async def test_a_second_file_in_one_request_is_refused_and_nothing_is_stored(api, runtime, sent):
    case_id = uuid.uuid4()
    url, headers = f"/v1/cases/{case_id}/documents", case_headers(case_id)

    if sent == "in-one-piece":  # the whole body in one read: the second file used to be dropped
        r = await api.post(
            url,
            content=two_files("two-files"),
            headers={**headers, "content-type": "multipart/form-data; boundary=two-files"},
        )
    else:
        r = await api.post(
            url,
            data={"kind": "discharge_summary"},
            files=[
                ("file", ("a.pdf", big_pdf(1000), "application/pdf")),
                ("file", ("b.pdf", big_pdf(1000), "application/pdf")),
            ],
            headers=headers,
        )

    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/multiple-files")
    assert "more than one file" in problem["detail"]
    assert objects(runtime) == []
    assert await rows(runtime, "select id from documents") == []


@pytest.mark.parametrize("what", ["a part inflating 1000 times", "thousands of entries"])
async def test_a_docx_zip_bomb_is_refused_and_leaves_nothing(api, runtime, tmp_path: Path, what):
    if what == "a part inflating 1000 times":
        path = zip_bombs.inflating_part(tmp_path / "bomb.docx", inflated=256 * MB)
    else:
        path = zip_bombs.many_entries(tmp_path / "bomb.docx", entries=5_000)
    case_id = uuid.uuid4()

    r = await upload(api, case_id, path.read_bytes(), name="letter.docx", kind="other")

    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "decompression_bomb"
    assert "ZIP bomb" in r.json()["detail"]
    assert objects(runtime) == []
    assert await rows(runtime, "select id from documents") == []
    assert [event["reason"] for event in await rejections(runtime)] == ["decompression_bomb"]


async def test_a_body_announced_larger_than_its_types_limit_is_refused_before_it_is_read(
    api, runtime
):
    """Content-Length says 300 MB for a PDF (limit 2 MB here): refused as soon as the head
    shows the type, not after streaming and hashing up to the limit (an abusive client's
    cheapest way to burn the service's CPU)."""
    case_id = uuid.uuid4()
    boundary = "limits"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\npathology_report\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    announced = 300 * MB
    pulled = 0

    async def body():  # type: ignore[no-untyped-def]
        nonlocal pulled
        yield head + b"%PDF-1.7\n"
        for _ in range(300):
            pulled += MB
            yield bytes(MB)

    r = await api.post(
        f"/v1/cases/{case_id}/documents",
        content=body(),
        headers={
            **case_headers(case_id),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(announced),
        },
    )
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == "The file is larger than the limit of 2 MB."
    assert pulled <= MB, f"{pulled // MB} MB were read before the refusal"
    assert objects(runtime) == []
    assert await rows(runtime, "select id from documents") == []
