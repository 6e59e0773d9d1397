"""Resumable uploads on real MinIO and PostgreSQL: a file sent in parts survives a dropped
connection, completes into one document (with one `document.stored`), and an abandoned one
expires with its parts aborted."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import timedelta

import asyncpg
import pytest

from referrals_records.models import utcnow
from referrals_records.storage import MultipartFailed

from .conftest import case_headers, pdf_bytes

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def dicom(size: int) -> bytes:
    """A DICOM file of `size` bytes (preamble, 'DICM', a file meta element, noise)."""
    start = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
    return start + os.urandom(size - len(start))


async def rows(runtime, sql: str, *args):
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def objects(runtime) -> list[str]:
    store = runtime.records.store
    return [o.object_name for o in store.client.list_objects(store.bucket, recursive=True)]


async def start(api, case_id, content: bytes, *, key: str | None = None, **body):
    payload = {
        "kind": "imaging_study",
        "file_name": "КТ_грудної_клітки.dcm",
        "size_bytes": len(content),
        **body,
    }
    return await api.post(
        f"/v1/cases/{case_id}/uploads",
        json=payload,
        headers={**case_headers(case_id), "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def put_part(api, case_id, upload: dict, number: int, content: bytes, **headers):
    size = upload["part_size"]
    return await api.put(
        f"/v1/cases/{case_id}/uploads/{upload['id']}/parts/{number}",
        content=content[(number - 1) * size : number * size],
        headers={**case_headers(case_id), **headers},
    )


async def send_part_and_drop(app, case_id, upload: dict, number: int, content: bytes) -> list:
    """Part `number` sent by a client whose connection drops after 3 MB of it."""
    size = upload["part_size"]
    part = content[(number - 1) * size : number * size]
    messages = [
        {"type": "http.request", "body": part[i : i + MIB], "more_body": True}
        for i in range(0, 3 * MIB, MIB)
    ]
    messages.append({"type": "http.disconnect"})
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    path = f"/v1/cases/{case_id}/uploads/{upload['id']}/parts/{number}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("records", 80),
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"authorization", case_headers(case_id)["Authorization"].encode()),
            (b"content-length", str(len(part)).encode()),
        ],
    }
    await app(scope, receive, send)
    return sent


async def test_a_study_in_parts_resumes_after_a_dropped_part_and_becomes_one_document(api, runtime):
    from referrals_records.main import create_app

    app = create_app(runtime=runtime)
    app.state.runtime = runtime
    case_id = uuid.uuid4()
    content = dicom(20 * MIB)  # three parts of 8 MB: 8, 8 and 4
    r = await start(api, case_id, content)
    assert r.status_code == 201, r.text
    upload = r.json()
    assert (upload["parts_total"], upload["next_part"], upload["received_bytes"]) == (3, 1, 0)
    assert r.headers["Upload-Offset"] == "0"
    assert (await put_part(api, case_id, upload, 1, content)).status_code == 200

    await send_part_and_drop(app, case_id, upload, 2, content)

    # The client comes back and asks where to resume: after part 1, nothing of part 2 kept.
    status = await api.head(
        f"/v1/cases/{case_id}/uploads/{upload['id']}", headers=case_headers(case_id)
    )
    assert status.status_code == 200
    assert status.headers["Upload-Offset"] == str(upload["part_size"])
    view = (
        await api.get(f"/v1/cases/{case_id}/uploads/{upload['id']}", headers=case_headers(case_id))
    ).json()
    assert (view["received_parts"], view["next_part"]) == ([1], 2)
    for number in (2, 3):
        r = await put_part(api, case_id, upload, number, content)
        assert r.status_code == 200, r.text
    assert r.json()["received_bytes"] == len(content)

    done = await api.post(
        f"/v1/cases/{case_id}/uploads/{upload['id']}/complete", headers=case_headers(case_id)
    )
    assert done.status_code == 201, done.text
    document = done.json()
    assert document["media_type"] == "application/dicom"
    assert document["size_bytes"] == len(content)
    assert document["sha256"] == hashlib.sha256(content).hexdigest()
    assert document["file_name"] == "КТ_грудної_клітки.dcm"

    # Completing again (a lost answer) is the same document, never a second one.
    again = await api.post(
        f"/v1/cases/{case_id}/uploads/{upload['id']}/complete", headers=case_headers(case_id)
    )
    assert again.status_code == 200
    assert again.json()["id"] == document["id"]
    stored = await rows(
        runtime,
        "select payload from outbox where event_type = $1",
        "referrals.document.stored.v1",
    )
    assert [json.loads(s["payload"])["data"]["document_id"] for s in stored] == [document["id"]]

    # The bytes in MinIO are the file, whole.
    link = await api.post(
        f"/v1/cases/{case_id}/documents/{document['id']}/link", headers=case_headers(case_id)
    )
    body = await api.get(link.json()["url"])
    assert hashlib.sha256(body.content).hexdigest() == document["sha256"]
    key = f"cases/{case_id}/documents/{document['id']}"
    assert objects(runtime) == [key]
    store = runtime.records.store
    stat = store.client.stat_object(store.bucket, key)
    assert stat.metadata.get("X-Amz-Server-Side-Encryption") == "AES256"


async def test_parts_sent_again_out_of_order_or_of_the_wrong_size_change_nothing(api, runtime):
    case_id = uuid.uuid4()
    content = dicom(12 * MIB)
    upload = (await start(api, case_id, content)).json()
    base = f"/v1/cases/{case_id}/uploads/{upload['id']}"

    early = await put_part(api, case_id, upload, 2, content)
    assert early.status_code == 409
    assert early.json()["next_part"] == 1
    short = await api.put(f"{base}/parts/1", content=content[:1000], headers=case_headers(case_id))
    assert short.status_code == 422
    assert (await put_part(api, case_id, upload, 1, content)).status_code == 200

    replay = await put_part(api, case_id, upload, 1, content)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = bytearray(content[: upload["part_size"]])
    other[-1] ^= 0xFF
    differs = await api.put(f"{base}/parts/1", content=bytes(other), headers=case_headers(case_id))
    assert differs.status_code == 409
    assert differs.json()["type"].endswith("/upload-part-differs")

    incomplete = await api.post(f"{base}/complete", headers=case_headers(case_id))
    assert incomplete.status_code == 409
    assert incomplete.json()["missing_parts"] == [2]
    assert (await put_part(api, case_id, upload, 2, content)).status_code == 200
    done = await api.post(f"{base}/complete", headers=case_headers(case_id))
    assert done.status_code == 201
    assert done.json()["sha256"] == hashlib.sha256(content).hexdigest()


async def test_the_same_idempotency_key_opens_one_upload(api, runtime):
    case_id = uuid.uuid4()
    content = dicom(6 * MIB)
    first = await start(api, case_id, content, key="upload-key-0001")
    again = await start(api, case_id, content, key="upload-key-0001")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await start(api, case_id, dicom(7 * MIB), key="upload-key-0001")
    assert other.status_code == 422
    assert other.json()["errors"][0]["code"] == "key_reused"
    assert len(await rows(runtime, "select id from upload_sessions")) == 1


async def test_parts_received_by_another_process_are_inspected_from_the_assembled_object(
    api, runtime
):
    case_id = uuid.uuid4()
    content = dicom(10 * MIB)
    upload = (await start(api, case_id, content)).json()
    assert (await put_part(api, case_id, upload, 1, content)).status_code == 200
    runtime.uploads.progress.items.clear()  # as if a restart came between the parts
    assert (await put_part(api, case_id, upload, 2, content)).status_code == 200
    done = await api.post(
        f"/v1/cases/{case_id}/uploads/{upload['id']}/complete", headers=case_headers(case_id)
    )
    assert done.status_code == 201, done.text
    assert done.json()["sha256"] == hashlib.sha256(content).hexdigest()


async def test_a_first_part_of_a_type_records_refuses_ends_the_upload(api, runtime):
    case_id = uuid.uuid4()
    content = b"MZ" + os.urandom(6 * MIB)  # a Windows program
    r = await start(api, case_id, content, kind="other", file_name="scan.dcm")
    upload = r.json()
    refused = await put_part(api, case_id, upload, 1, content)
    assert refused.status_code == 415
    assert refused.json()["reason"] == "unsupported_type"
    view = await api.get(
        f"/v1/cases/{case_id}/uploads/{upload['id']}", headers=case_headers(case_id)
    )
    assert (view.json()["state"], view.json()["refusal"]) == ("refused", "unsupported_type")
    later = await put_part(api, case_id, upload, 2, content)
    assert later.status_code == 409
    [rejected] = await rows(
        runtime,
        "select payload from outbox where event_type = $1",
        "referrals.document.rejected.v1",
    )
    assert json.loads(rejected["payload"])["data"]["reason"] == "unsupported_type"
    assert objects(runtime) == []


async def test_a_declared_size_over_the_types_limit_is_refused_at_the_first_part(api, runtime):
    # Records here takes PDFs up to 2 MB (and DICOM up to 40 MB): 6 MB declared, a PDF inside.
    case_id = uuid.uuid4()
    pdf = pdf_bytes()
    content = pdf + b"\n" * (6 * MIB - len(pdf))
    upload = (await start(api, case_id, content, kind="pathology_report", file_name="a.pdf")).json()
    r = await put_part(api, case_id, upload, 1, content)
    assert r.status_code == 413
    assert r.json()["reason"] == "too_large"
    too_big = await start(api, case_id, b"x" * (41 * MIB))
    assert too_big.status_code == 413
    assert too_big.json()["type"].endswith("/upload-too-large")


async def test_an_abandoned_upload_expires_and_its_parts_are_aborted(api, runtime):
    case_id = uuid.uuid4()
    content = dicom(9 * MIB)
    upload = (await start(api, case_id, content)).json()
    assert (await put_part(api, case_id, upload, 1, content)).status_code == 200
    assert await runtime.uploads.expire_uploads(utcnow()) == 0  # not yet
    later = utcnow() + runtime.uploads.ttl + timedelta(seconds=1)
    assert await runtime.uploads.expire_uploads(later) == 1

    gone = await api.get(
        f"/v1/cases/{case_id}/uploads/{upload['id']}", headers=case_headers(case_id)
    )
    assert gone.status_code == 410
    assert gone.json()["type"].endswith("/upload-expired")
    assert (await put_part(api, case_id, upload, 2, content)).status_code == 410
    [session] = await rows(
        runtime,
        "select object_key, storage_upload_id from upload_sessions where id = $1",
        uuid.UUID(upload["id"]),
    )

    async def one_byte():
        yield b"x"

    with pytest.raises(MultipartFailed) as aborted:
        await runtime.uploads.multipart.put_part(
            session["object_key"], session["storage_upload_id"], 3, one_byte(), 1
        )
    assert aborted.value.code == "NoSuchUpload"
    assert await rows(runtime, "select * from upload_parts") == []
    assert objects(runtime) == []
