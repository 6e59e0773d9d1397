"""Records over real MinIO and PostgreSQL: upload, list, download, duplicates, every kind of bad
input, cut-off uploads, closed cases, authorization, centers, and publication over Kafka."""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
import zipfile

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from PIL import Image

from referrals_common.contracts import topics
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay

from .conftest import case_headers, center_key, pdf_bytes, png_bytes, upload

pytestmark = pytest.mark.integration


def objects(runtime) -> list[str]:
    store = runtime.records.store
    return [o.object_name for o in store.client.list_objects(store.bucket, recursive=True)]


async def rows(runtime, sql: str, *args):
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_a_document_is_stored_encrypted_listed_and_downloaded_through_a_link(api, runtime):
    case_id = uuid.uuid4()
    content = pdf_bytes(3)
    r = await upload(api, case_id, content)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["media_type"] == "application/pdf"
    assert doc["size_bytes"] == len(content)
    assert doc["file_name"] == "Виписка_Форма100.pdf"
    import hashlib

    assert doc["sha256"] == hashlib.sha256(content).hexdigest()

    listed = await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))
    assert [d["id"] for d in listed.json()] == [doc["id"]]
    meta = await api.get(
        f"/v1/cases/{case_id}/documents/{doc['id']}", headers=case_headers(case_id)
    )
    assert meta.json() == doc

    link = await api.post(
        f"/v1/cases/{case_id}/documents/{doc['id']}/link", headers=case_headers(case_id)
    )
    assert link.status_code == 200
    got = await api.get(link.json()["url"])  # the link is records' own, audited at each use
    assert got.status_code == 200
    assert got.content == content
    assert "filename*=UTF-8''" in got.headers["content-disposition"]

    store = runtime.records.store
    [key] = objects(runtime)
    assert key == f"cases/{case_id}/documents/{doc['id']}"
    stat = store.client.stat_object(store.bucket, key)
    assert stat.metadata.get("X-Amz-Server-Side-Encryption") == "AES256"


async def test_a_document_of_several_parts_sent_unsigned_comes_back_whole(api, runtime):
    # 36 MB: parts of 16, 16 and 4 MB, each a request with an unsigned payload
    # (storage.MultipartUploads); MinIO must take them and give back exactly the bytes sent.
    import hashlib

    from referrals_records.storage import PART_SIZE

    assert PART_SIZE == 16 * 1024 * 1024
    case_id = uuid.uuid4()
    content = b"\x00" * 128 + b"DICM" + os.urandom(36 * 1024 * 1024)
    r = await upload(api, case_id, content, name="CT_CHEST.dcm", kind="imaging_study")
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["sha256"] == hashlib.sha256(content).hexdigest()
    link = await api.post(
        f"/v1/cases/{case_id}/documents/{doc['id']}/link", headers=case_headers(case_id)
    )
    got = await api.get(link.json()["url"])
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == doc["sha256"]


async def test_a_one_part_put_is_signed_with_its_sha256_and_other_bytes_are_refused(runtime):
    # A file of one part goes in one PUT whose payload hash is the document's SHA-256
    # (storage.SignedPuts): MinIO hashes what arrives and stores nothing that differs from it.
    import hashlib

    from referrals_records.storage import MultipartFailed

    store = runtime.records.store
    content = pdf_bytes(2)
    digest = hashlib.sha256(content).hexdigest()
    half = len(content) // 2
    altered = [content[:half], content[half:-1] + b"?"]  # the pieces of a file as they arrived
    with pytest.raises(MultipartFailed) as refused:
        await store.put_object(
            "cases/c/documents/d", altered, media_type="text/plain", sha256=digest
        )
    assert (refused.value.status, refused.value.code) == (400, "XAmzContentSHA256Mismatch")
    assert objects(runtime) == []
    pieces = [content[:half], content[half:]]
    await store.put_object("cases/c/documents/d", pieces, media_type="text/plain", sha256=digest)
    assert objects(runtime) == ["cases/c/documents/d"]
    got = store.client.get_object(store.bucket, "cases/c/documents/d")
    try:
        assert got.read() == content
    finally:
        got.close()
        got.release_conn()
    stat = store.client.stat_object(store.bucket, "cases/c/documents/d")
    assert stat.metadata.get("X-Amz-Server-Side-Encryption") == "AES256"
    assert stat.content_type == "text/plain"


async def test_a_download_link_expires_and_opens_only_its_own_document(api, runtime):
    case_id = uuid.uuid4()
    first = (await upload(api, case_id, pdf_bytes(note="a"))).json()
    await upload(api, case_id, pdf_bytes(note="b"), name="lab.pdf", kind="lab_results")
    link = (
        await api.post(
            f"/v1/cases/{case_id}/documents/{first['id']}/link", headers=case_headers(case_id)
        )
    ).json()
    url = link["url"]
    header, claims, signature = url.rsplit("/", 1)[1].split(".")
    # Another document named in the token, the signature kept: refused, nothing is sent.
    other = (await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))).json()
    second = next(d["id"] for d in other if d["id"] != first["id"])
    import base64
    import json

    raw = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(raw | {"doc": second}).encode()).rstrip(b"=")
    tampered = url.rsplit("/", 1)[0] + f"/{header}.{forged.decode()}.{signature}"
    refused = await api.get(tampered)
    assert refused.status_code == 403, "a link opens its own document only"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await api.get(url)).status_code == 200
    await asyncio.sleep(runtime.settings.link_ttl_seconds + 1.5)
    expired = await api.get(url)
    assert expired.status_code == 410, "an expired link opens nothing"
    assert expired.json()["type"].endswith("/link-expired")


async def test_the_same_file_twice_is_one_document(api, runtime):
    case_id = uuid.uuid4()
    content = pdf_bytes()
    first = await upload(api, case_id, content)
    again = await upload(api, case_id, content, name="copy.pdf")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(objects(runtime)) == 1
    elsewhere = await upload(api, uuid.uuid4(), content)
    assert elsewhere.status_code == 201, "another case is another document"


def zip_bytes(*names: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in names:
            z.writestr(name, "<x/>")
    return out.getvalue()


BAD_UPLOADS = [
    (
        "a ZIP archive",
        zip_bytes("scan1.jpg"),
        "scans.zip",
        "discharge_summary",
        415,
        "unsupported_type",
    ),
    (
        "a spreadsheet",
        zip_bytes("[Content_Types].xml", "xl/workbook.xml"),
        "labs.xlsx",
        "lab_results",
        415,
        "unsupported_type",
    ),
    (
        "an executable",
        b"MZ\x90\x00" + b"\x00" * 4000,
        "report.pdf",
        "other",
        415,
        "unsupported_type",
    ),
    ("a PNG named .pdf", png_bytes(), "pathology.pdf", "pathology_report", 415, "unsupported_type"),
    ("an empty file", b"", "empty.pdf", "other", 422, "empty"),
    ("a truncated PDF", pdf_bytes()[:-40], "cut.pdf", "pathology_report", 422, "corrupt"),
    ("a path in the name", pdf_bytes(), "../../etc/passwd.pdf", "other", 422, "bad_name"),
    (
        "a disguised extension in the name",
        pdf_bytes(),
        "scan\u202efdp.exe",
        "other",
        422,
        "bad_name",
    ),
    (
        "a file over the limit",
        b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024),
        "big.pdf",
        "imaging_report",
        413,
        "too_large",
    ),
]


@pytest.mark.parametrize(
    ("what", "content", "name", "kind", "status", "reason"),
    BAD_UPLOADS,
    ids=[b[0] for b in BAD_UPLOADS],
)
async def test_bad_input_is_refused_clearly_and_leaves_nothing(
    api, runtime, what, content, name, kind, status, reason
):
    case_id = uuid.uuid4()
    r = await upload(api, case_id, content, name=name, kind=kind)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["reason"] == reason
    assert problem["detail"]
    if reason == "unsupported_type":
        assert "application/pdf" in problem["accepted_media_types"]
    assert objects(runtime) == []
    assert await rows(runtime, "select id from documents") == []
    [rejected] = await rows(
        runtime,
        "select payload from outbox where event_type = $1",
        "referrals.document.rejected.v1",
    )
    assert json.loads(rejected["payload"])["data"]["reason"] == reason


async def test_a_decompression_bomb_is_refused(api, runtime):
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    r = await upload(api, uuid.uuid4(), bomb.getvalue(), name="scan.png", kind="imaging_report")
    assert r.status_code == 422
    assert r.json()["reason"] == "decompression_bomb"
    assert objects(runtime) == []


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(runtime):
    """Ten of twelve megabytes (more than one multipart part) then the client is gone."""
    from referrals_records.main import create_app

    app = create_app(runtime=runtime)
    app.state.runtime = runtime
    case_id = uuid.uuid4()
    boundary = "----cutoff"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n'
        f'imaging_study\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="IM00001"\r\nContent-Type: application/dicom\r\n\r\n'
    ).encode()
    dicom_start = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 500
    chunks = [head + dicom_start] + [os.urandom(1024 * 1024) for _ in range(10)]
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.disconnect"})
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/cases/{case_id}/documents",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("records", 80),
        "headers": [
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"authorization", case_headers(case_id)["Authorization"].encode()),
            (b"content-length", str(12 * 1024 * 1024).encode()),
        ],
    }
    await app(scope, receive, send)
    assert objects(runtime) == []
    store = runtime.records.store
    uploads = store.client._list_multipart_uploads(store.bucket)
    assert list(uploads.uploads) == [], "the multipart upload was aborted"
    assert await rows(runtime, "select id from documents") == []


async def test_a_closed_case_refuses_uploads_and_a_submitted_one_refuses_deletion(api, runtime):
    case_id = uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_case_status(uow, case_id, "submitted")
        await uow.commit()
    gone = await api.delete(
        f"/v1/cases/{case_id}/documents/{doc['id']}", headers=case_headers(case_id)
    )
    assert gone.status_code == 409
    more = await upload(api, case_id, pdf_bytes(), name="later.pdf", kind="lab_results")
    assert more.status_code == 201, "a submitted case still takes documents"
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_case_status(uow, case_id, "withdrawn")
        await uow.commit()
    refused = await upload(api, case_id, pdf_bytes(), name="late.pdf")
    assert refused.status_code == 409
    assert "withdrawn" in refused.json()["detail"]
    assert len(objects(runtime)) == 2


async def test_a_case_status_is_one_row_per_case_and_a_withdrawal_stays_whatever_comes_late(
    runtime,
):
    case_id = uuid.uuid4()
    for status in ("submitted", "ready", "referred", "withdrawn", "referred"):
        async with runtime.db.unit_of_work() as uow:
            await runtime.records.on_case_status(uow, case_id, status)
            await uow.commit()
    states = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert [tuple(row) for row in states] == [("withdrawn",)]


async def test_an_offer_is_one_row_kept_as_first_heard_and_born_closed_after_a_withdrawal(
    runtime,
):
    open_case, withdrawn_case = uuid.uuid4(), uuid.uuid4()
    offered, late = uuid.uuid4(), uuid.uuid4()
    records = runtime.records
    async with runtime.db.unit_of_work() as uow:
        await records.on_case_status(uow, withdrawn_case, "withdrawn")
        await records.on_referral_offered(uow, offered, open_case, "charite-berlin")
        await records.on_referral_accepted(uow, offered, open_case, "charite-berlin")
        await records.on_referral_offered(uow, offered, open_case, "nio-warsaw")  # redelivered
        await records.on_referral_offered(uow, late, withdrawn_case, "charite-berlin")
        await uow.commit()
    found = {
        row["referral_id"]: row
        for row in await rows(
            runtime,
            "select referral_id, center_code, accepted_at, closed_at, closed_reason"
            " from center_referrals where case_id = any($1::uuid[])",
            [open_case, withdrawn_case],
        )
    }
    assert found[offered]["center_code"] == "charite-berlin"
    assert found[offered]["accepted_at"] is not None and found[offered]["closed_at"] is None
    assert found[late]["closed_reason"] == "withdrawn" and found[late]["closed_at"] is not None


async def test_events_of_one_transaction_see_each_others_case_and_referral_rows(runtime):
    # A consumer may apply a partition's batch in one transaction: a referral's end heard of
    # before its offer, and a case read before its withdrawal, are not missed by what follows.
    case_id, ended, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    records = runtime.records
    async with runtime.db.unit_of_work() as uow:
        await records.on_case_status(uow, case_id, "referred")
        await uow.commit()
    async with runtime.db.unit_of_work() as uow:
        await records.on_referral_closed(uow, ended, case_id, "charite-berlin", "declined")
        await records.on_referral_offered(uow, ended, case_id, "charite-berlin")
        await records.on_case_status(uow, case_id, "withdrawn")
        await records.on_referral_closed(uow, later, case_id, "nio-warsaw", "expired")
        await uow.commit()
    found = {
        row["referral_id"]: row["closed_reason"]
        for row in await rows(
            runtime,
            "select referral_id, closed_reason from center_referrals where case_id = $1",
            case_id,
        )
    }
    assert found == {ended: "declined", later: "withdrawn"}


async def test_a_draft_document_can_be_deleted_and_its_object_goes_with_it(api, runtime):
    case_id = uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    r = await api.delete(
        f"/v1/cases/{case_id}/documents/{doc['id']}", headers=case_headers(case_id)
    )
    assert r.status_code == 204
    assert objects(runtime) == []
    assert (
        await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))
    ).json() == []


async def test_a_translation_must_name_an_original_of_the_same_case(api, runtime):
    case_id = uuid.uuid4()
    original = (await upload(api, case_id, pdf_bytes())).json()
    ok = await upload(
        api,
        case_id,
        pdf_bytes(note="de"),
        name="Entlassungsbrief_DE.pdf",
        kind="translation",
        translation_of=original["id"],
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["translation_of"] == original["id"]
    orphan = await upload(
        api,
        case_id,
        pdf_bytes(note="x"),
        name="t.pdf",
        kind="translation",
        translation_of=uuid.uuid4(),
    )
    assert orphan.status_code == 422
    unnamed = await upload(api, case_id, pdf_bytes(note="y"), name="t.pdf", kind="translation")
    assert unnamed.status_code == 422


async def test_another_cases_token_reads_nothing(api, runtime):
    case_id, intruder = uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, case_id, pdf_bytes())).json()
    wrong = case_headers(intruder)
    for method, path in [
        ("GET", ""),
        ("GET", f"/{doc['id']}"),
        ("POST", f"/{doc['id']}/link"),
        ("DELETE", f"/{doc['id']}"),
    ]:
        r = await api.request(method, f"/v1/cases/{case_id}/documents{path}", headers=wrong)
        assert r.status_code == 404, (method, path)
    r = await upload(api, case_id, pdf_bytes(note="z"), headers=wrong)
    assert r.status_code == 404
    assert (await api.get(f"/v1/cases/{case_id}/documents")).status_code == 401
    assert len(objects(runtime)) == 1


async def test_a_center_reads_only_documents_of_cases_offered_to_it(api, runtime):
    offered, other_case = uuid.uuid4(), uuid.uuid4()
    doc = (await upload(api, offered, pdf_bytes())).json()
    hidden = (await upload(api, other_case, pdf_bytes(note="h"))).json()
    referral, foreign_referral = uuid.uuid4(), uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_offered(uow, referral, offered, "charite-berlin")
        await runtime.records.on_referral_offered(uow, foreign_referral, other_case, "nio-warsaw")
        await uow.commit()
    charite = {"X-Api-Key": await center_key(runtime, "charite-berlin")}

    listed = await api.get(f"/v1/referrals/{referral}/documents", headers=charite)
    assert [d["id"] for d in listed.json()] == [doc["id"]]
    link = await api.get(f"/v1/referrals/{referral}/documents/{doc['id']}", headers=charite)
    assert link.status_code == 200
    assert (await api.get(link.json()["url"])).status_code == 200

    assert (
        await api.get(f"/v1/referrals/{foreign_referral}/documents", headers=charite)
    ).status_code == 404
    assert (
        await api.get(f"/v1/referrals/{referral}/documents/{hidden['id']}", headers=charite)
    ).status_code == 404
    assert (await api.get(f"/v1/referrals/{referral}/documents")).status_code == 401
    audit = await rows(
        runtime,
        "select actor, action, outcome from access_audit where actor like 'center:%' order by id",
    )
    assert ("center:charite-berlin", "download_link", "ok") in [tuple(a) for a in audit]
    assert sum(a["outcome"] == "denied" for a in audit) >= 2


async def test_document_stored_is_published_once_per_stored_document(api, runtime, kafka_bootstrap):
    case_id = uuid.uuid4()
    content = pdf_bytes()
    await upload(api, case_id, content)
    await upload(api, case_id, content)  # the same file again: no second event
    await upload(api, case_id, png_bytes(), name="scan.png", kind="imaging_report")
    await ensure_topics(kafka_bootstrap, [topics.DOCUMENTS])
    relay = OutboxRelay(runtime.settings.postgres.asyncpg_dsn(), kafka_bootstrap)
    await relay.start()
    try:
        assert await relay.publish_batch() == 2
    finally:
        await relay.stop()
    consumer = AIOKafkaConsumer(
        topics.DOCUMENTS,
        bootstrap_servers=kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                found += [json.loads(r.value) for r in records if r.key == str(case_id).encode()]
    finally:
        await consumer.stop()
    assert sorted(e["data"]["kind"] for e in found) == ["discharge_summary", "imaging_report"]
    assert all(e["type"] == "referrals.document.stored.v1" for e in found)
    assert all("Виписка" not in json.dumps(e) for e in found), "no file names in events"


async def test_another_centers_opinion_is_readable_only_while_the_patient_shares_it(api, runtime):
    """A further opinion (issue 21 §6): the next center reads the first center's opinion only
    for the round the patient shared it in; not before, and not after a round without consent
    (even through a link it was given while shared)."""
    case_id = uuid.uuid4()
    patients = (await upload(api, case_id, pdf_bytes())).json()
    first, second = uuid.uuid4(), uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_offered(uow, first, case_id, "charite-berlin")
        await uow.commit()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_accepted(uow, first, case_id, "charite-berlin")
        await uow.commit()
    charite = {"X-Api-Key": await center_key(runtime, "charite-berlin")}
    stored = await api.post(
        f"/v1/referrals/{first}/opinion",
        files={"file": ("opinion.pdf", pdf_bytes(note="opinion"), "application/pdf")},
        headers=charite,
    )
    assert stored.status_code == 201, stored.text
    opinion = stored.json()["id"]
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_closed(uow, first, case_id, "charite-berlin", "completed")
        await uow.commit()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_offered(uow, second, case_id, "nio-warsaw")
        await uow.commit()
    warsaw = {"X-Api-Key": await center_key(runtime, "nio-warsaw")}

    async def listed() -> list[str]:
        r = await api.get(f"/v1/referrals/{second}/documents", headers=warsaw)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()]

    assert await listed() == [patients["id"]]
    path = f"/v1/referrals/{second}/documents/{opinion}"
    assert (await api.get(path, headers=warsaw)).status_code == 404

    async def share(ids: list[str]) -> None:
        async with runtime.db.unit_of_work() as uow:
            await runtime.records.on_opinions_shared(uow, case_id, [uuid.UUID(i) for i in ids])
            await uow.commit()

    await share([opinion])
    assert await listed() == [patients["id"], opinion]
    link = await api.get(path, headers=warsaw)
    assert link.status_code == 200, link.text
    assert (await api.get(link.json()["url"])).status_code == 200

    await share([])  # a later round without the patient's consent
    assert await listed() == [patients["id"]]
    assert (await api.get(path, headers=warsaw)).status_code == 404
    assert (await api.get(link.json()["url"])).status_code == 410
