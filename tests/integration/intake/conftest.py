"""Intake over real PostgreSQL (and Kafka where a test asks for it): the API in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from referrals_common.auth.case_tokens import generate_private_key_pem
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_intake.bootstrap import Runtime, build_runtime
from referrals_intake.clients import register_client
from referrals_intake.config import IntakeSettings, TokenSettings
from referrals_intake.main import MIGRATIONS, create_app


@pytest.fixture
async def intake_dsn(new_database) -> str:
    dsn = await new_database("intake")
    await upgrade_async(dsn, MIGRATIONS)
    return dsn


# Notifications' key pair: intake seals contact details with the public half.
NOTIFICATIONS_PRIVATE, NOTIFICATIONS_PUBLIC = SealedBox.generate_keypair_base64()
# Partners' key pair: intake seals the insurance policy with the public half.
PARTNERS_PRIVATE, PARTNERS_PUBLIC = SealedBox.generate_keypair_base64()


def intake_settings(dsn: str, kafka_bootstrap: str) -> IntakeSettings:
    """Intake's settings for a test: its database at `dsn`, fresh keys."""
    return IntakeSettings(
        postgres=PostgresSettings(dsn=dsn),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        tokens=TokenSettings(signing_key_pem=generate_private_key_pem().decode()),
        field_encryption_key=FieldCipher.generate_key_base64(),
        public_base_url="https://intake.example.org",
        notifications_public_key=NOTIFICATIONS_PUBLIC,
        partners_public_key=PARTNERS_PUBLIC,
    )


@pytest.fixture
async def runtime(intake_dsn, kafka_bootstrap) -> AsyncIterator[Runtime]:
    rt = build_runtime(intake_settings(intake_dsn, kafka_bootstrap))
    yield rt
    await rt.db.dispose()


@pytest.fixture
async def api(runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    app.state.runtime = runtime  # httpx's ASGI transport does not run the lifespan
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield client


async def new_client_key(runtime: Runtime, name: str = "Kyiv partner clinic") -> str:
    async with runtime.db.unit_of_work() as uow:
        key = await register_client(uow, name, runtime.pepper)
        await uow.commit()
    return key


@pytest.fixture
async def api_key(runtime) -> str:
    return await new_client_key(runtime)


def case_body(**overrides) -> dict:
    body = {
        "diagnosis": {
            "icd10": "C50.9",
            "text": "Carcinoma of the left breast",
            "histology": "Invasive ductal carcinoma, G2",
        },
        "stage": {"tnm": "cT2N1M0", "group": "IIB"},
        "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
        "questions": ["Is breast-conserving surgery possible after chemotherapy?"],
        "destination": {"preference": "countries", "countries": ["DE"]},
        "locale": "uk",
        "date_of_birth": "1979-04-12",
        "contact": {"email": "olena.petrenko@example.org", "phone": "+380501234567"},
    }
    body.update(overrides)
    return body


async def open_case(api: httpx.AsyncClient, api_key: str, **overrides) -> tuple[str, dict]:
    """(case id, auth headers for that case)."""
    r = await api.post("/v1/cases", json=case_body(**overrides), headers={"X-Api-Key": api_key})
    assert r.status_code == 201, r.text
    data = r.json()
    return data["case"]["id"], {"Authorization": f"Bearer {data['access_token']}"}


def unique_key() -> str:
    return str(uuid.uuid4())
