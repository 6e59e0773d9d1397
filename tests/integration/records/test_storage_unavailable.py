"""Records whose object store is away answers 503 with `Retry-After`, keeps nothing, and
accepts the same upload once MinIO is back: real connections refused by a port nobody listens
on, against the real service in process."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from devstack.process import free_port
from referrals_records.storage import MultipartUploads, SignedPuts

from ..unavailable import assert_unavailable
from .conftest import case_headers, pdf_bytes, upload

pytestmark = pytest.mark.integration


async def test_records_without_minio_answers_503_and_keeps_no_row(api, runtime):
    store = runtime.records.store
    working = store.client, store.multipart, store.puts
    away = runtime.settings.s3.model_copy(update={"endpoint": f"127.0.0.1:{free_port()}"})
    store.client = away.client(away.http_pool())
    store.multipart = MultipartUploads(store.client, store.bucket)
    store.puts = SignedPuts(away, store.bucket)
    case_id = uuid.uuid4()
    try:
        assert_unavailable(await upload(api, case_id, pdf_bytes(2)))
    finally:
        store.client, store.multipart, store.puts = working
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        assert (
            await conn.fetchval("select count(*) from documents where case_id = $1", case_id) == 0
        )
    finally:
        await conn.close()
    listed = await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))
    assert listed.json() == []
    # MinIO back: the same upload is accepted.
    assert (await upload(api, case_id, pdf_bytes(2))).status_code == 201
