"""Records over real MinIO and PostgreSQL (and Kafka where asked): the API in-process, case
tokens signed as intake signs them and verified offline from its JWKS."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from pypdf import PdfWriter

from referrals_common.auth.api_keys import generate_api_key, key_digest
from referrals_common.auth.case_tokens import CaseTokenIssuer, generate_private_key_pem, public_jwks
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_records.bootstrap import Runtime, build_runtime
from referrals_records.config import RecordsSettings
from referrals_records.main import MIGRATIONS, create_app
from referrals_records.models import utcnow
from referrals_records.service import on_credential_issued

KEY_PEM = generate_private_key_pem()
ISSUER = CaseTokenIssuer(KEY_PEM)


@pytest.fixture
async def runtime(new_database, local_stack, new_bucket, service_s3) -> AsyncIterator[Runtime]:
    dsn = await new_database("records")
    await upgrade_async(dsn, MIGRATIONS)
    # Records logs in as its own MinIO user, as on the platform: read-write on this bucket only.
    bucket = new_bucket("documents")
    settings = RecordsSettings(
        postgres=PostgresSettings(dsn=dsn),
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        s3=service_s3(bucket)["records"],
        bucket=bucket,
        max_upload_mb=2,
        max_imaging_mb=40,
        link_ttl_seconds=2,
        case_token_jwks=json.dumps(public_jwks(KEY_PEM)),
    )
    rt = build_runtime(settings)
    yield rt
    await rt.db.dispose()


@pytest.fixture
async def api(runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    app.state.runtime = runtime
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://records"
    ) as client:
        yield client


def case_headers(case_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(case_id, 'kyiv-clinic').token}"}


async def center_key(runtime: Runtime, code: str) -> str:
    """A key as partners issues it, told to records as partners' event tells it (records'
    consumer's use case; tests/integration/test_center_credentials.py runs the whole way)."""
    key = generate_api_key("ccr")
    async with runtime.db.unit_of_work() as uow:
        await on_credential_issued(
            uow,
            runtime.pepper,
            key_id=key.key_id,
            center_code=code,
            key_sha256=key_digest(key.secret),
            issued_at=utcnow(),
        )
        await uow.commit()
    return key.display


def pdf_bytes(pages: int = 1, note: str = "") -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": note or uuid.uuid4().hex})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_bytes(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


async def upload(
    api,
    case_id,
    content: bytes,
    name: str = "Виписка_Форма100.pdf",
    kind: str = "discharge_summary",
    translation_of=None,
    headers=None,
):
    data = {"kind": kind}
    if translation_of:
        data["translation_of"] = str(translation_of)
    return await api.post(
        f"/v1/cases/{case_id}/documents",
        data=data,
        files={"file": (name, content, "application/octet-stream")},
        headers=headers or case_headers(case_id),
    )
