"""A refused upload is explained to the patient in the case's language: intake puts the case's
language into the case token it issues (`loc`), records reads it from the verified token. Over
real PostgreSQL, MinIO and Kafka, with intake's API issuing the tokens and records trusting the
JWKS intake publishes. The problem's type, status and machine fields stay as they were; a token
without `loc` falls back to `Accept-Language`, then English; a center's refusal stays English."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_intake.main import MIGRATIONS as INTAKE_MIGRATIONS
from referrals_intake.main import build_runtime as build_intake
from referrals_intake.main import create_app as intake_app
from referrals_records.bootstrap import build_runtime
from referrals_records.config import RecordsSettings
from referrals_records.main import MIGRATIONS, create_app
from referrals_records.models import utcnow
from tests.integration.intake.conftest import case_body, intake_settings, new_client_key

from .conftest import ISSUER, case_headers, center_key, upload

pytestmark = pytest.mark.integration

MIB = 2**20
CYRILLIC = re.compile("[а-яіїєґ]", re.IGNORECASE)
GIF = b"GIF89a" + bytes(64)


@pytest.fixture
async def intake(new_database, kafka_bootstrap) -> AsyncIterator[httpx.AsyncClient]:
    dsn = await new_database("intake")
    await upgrade_async(dsn, INTAKE_MIGRATIONS)
    runtime = build_intake(intake_settings(dsn, kafka_bootstrap))
    app = intake_app(runtime=runtime)
    app.state.runtime = runtime
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as client:
        client.headers["X-Api-Key"] = await new_client_key(runtime)
        yield client
    await runtime.db.dispose()


@pytest.fixture
async def records(
    intake, new_database, local_stack, new_bucket, service_s3
) -> AsyncIterator[httpx.AsyncClient]:
    """Records trusting the JWKS intake publishes (its 2 MB limit for PDFs and images)."""
    jwks = await intake.get("/v1/.well-known/jwks.json")
    assert jwks.status_code == 200, jwks.text
    dsn = await new_database("records")
    await upgrade_async(dsn, MIGRATIONS)
    bucket = new_bucket("documents")
    runtime = build_runtime(
        RecordsSettings(
            postgres=PostgresSettings(dsn=dsn),
            kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
            s3=service_s3(bucket)["records"],
            bucket=bucket,
            max_upload_mb=2,
            max_imaging_mb=40,
            case_token_jwks=json.dumps(jwks.json()),
        )
    )
    app = create_app(runtime=runtime)
    app.state.runtime = runtime
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://records"
    ) as client:
        yield client
    await runtime.db.dispose()


async def open_case(intake: httpx.AsyncClient, locale: str) -> tuple[str, dict[str, str]]:
    r = await intake.post("/v1/cases", json=case_body(locale=locale))
    assert r.status_code == 201, r.text
    data = r.json()
    return data["case"]["id"], {"Authorization": f"Bearer {data['access_token']}"}


def big_pdf(size: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size) + b"\nstartxref\n0\n%%EOF\n"


async def test_a_ukrainian_case_s_refused_upload_is_explained_in_ukrainian(intake, records):
    case_id, headers = await open_case(intake, "uk")

    r = await upload(records, case_id, GIF, name="скан.gif", headers=headers)

    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["content-language"] == "uk"
    problem = r.json()
    assert problem["type"].endswith("/upload-unsupported-type")
    assert (problem["status"], problem["reason"]) == (415, "unsupported_type")
    assert "application/pdf" in problem["accepted_media_types"]
    assert problem["language"] == "uk"
    assert problem["detail"].startswith("Такий тип файлу не приймаємо: зображення GIF.")
    assert "Приймаємо такі типи файлів: PDF (.pdf)" in problem["detail"]

    # Over the size limit, the limit in Ukrainian words and numbers.
    too_big = await upload(records, case_id, big_pdf(3 * MIB), name="висновок.pdf", headers=headers)
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["reason"] == "too_large"
    assert too_big.json()["detail"] == "Файл більший за дозволені 2 МБ."


async def test_an_english_case_s_refused_upload_is_explained_in_english(intake, records):
    case_id, headers = await open_case(intake, "en")

    r = await upload(records, case_id, GIF, name="scan.gif", headers=headers)

    assert r.status_code == 415, r.text
    assert r.headers["content-language"] == "en"
    problem = r.json()
    assert problem["type"].endswith("/upload-unsupported-type")
    assert problem["language"] == "en"
    assert problem["detail"].startswith("The file is a GIF image, which records does not accept.")
    assert not CYRILLIC.search(problem["detail"])


async def test_a_resumable_upload_refused_at_its_start_is_explained_in_the_case_s_language(
    intake, records
):
    case_id, headers = await open_case(intake, "uk")

    r = await records.post(
        f"/v1/cases/{case_id}/uploads",
        json={"kind": "imaging_study", "file_name": "КТ.dcm", "size_bytes": 41 * MIB},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )

    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("/upload-too-large")
    assert r.headers["content-language"] == "uk"
    assert r.json()["detail"] == "Файл більший за дозволені 40 МБ."


async def test_a_token_without_the_case_s_language_falls_back_to_accept_language_then_english(
    api,
):
    # Tokens signed as intake signed them before `loc`: no language in them.
    case_id = uuid.uuid4()
    old = case_headers(case_id)

    plain = await upload(api, case_id, GIF, name="scan.gif", headers=old)
    asked = await upload(
        api, case_id, GIF, name="scan.gif", headers={**old, "Accept-Language": "uk-UA,uk;q=0.9"}
    )
    neither = await upload(
        api, case_id, GIF, name="scan.gif", headers={**old, "Accept-Language": "pl, de;q=0.5"}
    )

    assert plain.status_code == asked.status_code == neither.status_code == 415
    assert plain.json()["reason"] == asked.json()["reason"] == "unsupported_type"
    assert plain.headers["content-language"] == neither.headers["content-language"] == "en"
    assert plain.json()["detail"].startswith("The file is a GIF image")
    assert neither.json()["detail"] == plain.json()["detail"]
    assert asked.headers["content-language"] == "uk"
    assert asked.json()["detail"].startswith("Такий тип файлу не приймаємо: зображення GIF.")


async def test_a_token_naming_the_case_s_language_is_read_without_accept_language(api):
    case_id = uuid.uuid4()
    token = ISSUER.issue(case_id, "kyiv-clinic", locale="uk").token

    r = await upload(
        api, case_id, b"", name="empty.pdf", headers={"Authorization": f"Bearer {token}"}
    )

    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "empty"
    assert r.json()["detail"] == "Файл порожній."


async def test_a_center_s_refused_upload_stays_in_english(api, runtime):
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
        await uow.commit()
    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_referral_accepted(uow, referral_id, case_id, "charite-berlin")
        await uow.commit()
    key = await center_key(runtime, "charite-berlin")

    r = await api.post(
        f"/v1/referrals/{referral_id}/opinion",
        files={"file": ("opinion.gif", GIF, "application/octet-stream")},
        headers={"X-Api-Key": key, "Accept-Language": "uk"},
    )

    assert r.status_code == 415, r.text
    assert r.json()["detail"].startswith("The file is a GIF image, which records does not accept.")
    assert "language" not in r.json()
    assert "content-language" not in r.headers


async def test_a_front_end_may_ask_for_the_other_language(intake, records):
    case_id, headers = await open_case(intake, "uk")

    r = await upload(
        records, case_id, GIF, name="scan.gif", headers={**headers, "Accept-Language": "en"}
    )

    assert r.status_code == 415, r.text
    assert r.headers["content-language"] == "en"
    assert r.json()["detail"].startswith("The file is a GIF image")


async def test_a_closed_case_and_an_expired_upload_are_told_in_the_case_s_language(api, runtime):
    case_id = uuid.uuid4()
    uk = {"Authorization": f"Bearer {ISSUER.issue(case_id, 'kyiv-clinic', locale='uk').token}"}
    dicom = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + os.urandom(9 * MIB)
    started = await api.post(
        f"/v1/cases/{case_id}/uploads",
        json={"kind": "imaging_study", "file_name": "КТ.dcm", "size_bytes": len(dicom)},
        headers={**uk, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert started.status_code == 201, started.text
    later = utcnow() + runtime.uploads.ttl + timedelta(seconds=1)
    assert await runtime.uploads.expire_uploads(later) == 1

    gone = await api.get(f"/v1/cases/{case_id}/uploads/{started.json()['id']}", headers=uk)

    assert gone.status_code == 410, gone.text
    assert gone.json()["type"].endswith("/upload-expired")
    assert (gone.json()["state"], gone.json()["language"]) == ("expired", "uk")
    assert gone.headers["content-language"] == "uk"
    assert gone.json()["detail"].endswith("Почніть нове завантаження.")

    async with runtime.db.unit_of_work() as uow:
        await runtime.records.on_case_status(uow, case_id, "withdrawn")
        await uow.commit()
    closed = await upload(api, case_id, GIF, name="scan.gif", headers=uk)
    english = await upload(api, case_id, GIF, name="scan.gif", headers=case_headers(case_id))

    assert closed.status_code == english.status_code == 409, closed.text
    assert closed.json()["type"] == english.json()["type"]
    assert closed.json()["detail"] == "Справу закрито: вона більше не приймає документів."
    assert closed.headers["content-language"] == "uk"
    assert "withdrawn" in english.json()["detail"]
