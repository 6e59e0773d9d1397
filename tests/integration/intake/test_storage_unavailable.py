"""Intake whose database is away answers 503 with `Retry-After`, not 500: a real connection
refused by a port nobody listens on, against the real service in process."""

from __future__ import annotations

import httpx
import pytest

from devstack.process import free_port
from referrals_common.auth.case_tokens import generate_private_key_pem
from referrals_common.crypto import FieldCipher
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_intake.config import IntakeSettings, TokenSettings
from referrals_intake.main import build_runtime, create_app

from ..unavailable import assert_unavailable
from .conftest import NOTIFICATIONS_PUBLIC, case_body

pytestmark = pytest.mark.integration


async def test_intake_without_its_database_answers_503_not_500(kafka_bootstrap):
    settings = IntakeSettings(
        postgres=PostgresSettings(dsn=f"postgresql://intake:pw@127.0.0.1:{free_port()}/intake"),
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        tokens=TokenSettings(signing_key_pem=generate_private_key_pem().decode()),
        field_encryption_key=FieldCipher.generate_key_base64(),
        public_base_url="https://intake.example.org",
        notifications_public_key=NOTIFICATIONS_PUBLIC,
    )
    rt = build_runtime(settings)
    app = create_app(runtime=rt)
    app.state.runtime = rt
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as api:
            created = await api.post(
                "/v1/cases",
                json=case_body(),
                headers={"X-Api-Key": "rfk_AAAAAAAAAAAA_" + "x" * 43, "Idempotency-Key": "k-1"},
            )
            assert_unavailable(created)
    finally:
        await rt.db.dispose()
