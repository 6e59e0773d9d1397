"""Intake whose database is away answers 503 with `Retry-After`, not 500: a real connection
refused by a port nobody listens on, against the real service in process."""

from __future__ import annotations

import httpx
import pytest

from devstack.process import free_port
from referrals_intake.bootstrap import build_runtime
from referrals_intake.main import create_app

from ..unavailable import assert_unavailable
from .conftest import case_body, intake_settings

pytestmark = pytest.mark.integration


async def test_intake_without_its_database_answers_503_not_500(kafka_bootstrap):
    nobody = f"postgresql://intake:pw@127.0.0.1:{free_port()}/intake"
    rt = build_runtime(intake_settings(nobody, kafka_bootstrap))
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
