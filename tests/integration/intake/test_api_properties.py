"""Property-based run (Schemathesis) against the running intake service: whatever the input,
never a server error. The service runs as its own process (uvicorn) on real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from devstack.process import free_port, stop_group
from referrals_common.auth.case_tokens import generate_private_key_pem
from referrals_common.crypto import FieldCipher, SealedBox

from .conftest import case_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def intake_server(local_stack, tmp_path_factory):
    name = f"intake_props_{uuid.uuid4().hex[:8]}"

    async def create_db() -> None:
        conn = await asyncpg.connect(local_stack.postgres_dsn)
        await conn.execute(f'create database "{name}"')
        await conn.close()

    asyncio.run(create_db())
    port = free_port()
    env = {
        **os.environ,
        "REFERRALS_INTAKE_POSTGRES__DSN": local_stack.postgres_dsn.rsplit("/", 1)[0] + f"/{name}",
        "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": local_stack.kafka_bootstrap,
        "REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM": generate_private_key_pem().decode(),
        "REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY": FieldCipher.generate_key_base64(),
        "REFERRALS_INTAKE_API_KEY_PEPPER": "a-test-pepper-of-32-characters!!",
        # Configured like a real intake: the keys it seals contacts, webhook secrets and
        # policies to (without them a subscription is a 503, which is not what is tested here).
        "REFERRALS_INTAKE_NOTIFICATIONS_PUBLIC_KEY": SealedBox.generate_keypair_base64()[1],
        "REFERRALS_INTAKE_PARTNERS_PUBLIC_KEY": SealedBox.generate_keypair_base64()[1],
        "REFERRALS_TELEMETRY__LOG_LEVEL": "WARNING",
    }
    log = tmp_path_factory.mktemp("intake") / "intake.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "referrals_intake.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        stop_group(proc.pid)
        raise AssertionError("intake did not start:\n" + log.read_text())
    key = (
        subprocess.run(
            [sys.executable, "-m", "referrals_intake.cli", "create-client", "Property tests"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    yield base, key, log
    stop_group(proc.pid)


@pytest.fixture(scope="module")
def real_cases(intake_server):
    base, key, _ = intake_server
    cases = []
    for _ in range(2):
        r = httpx.post(f"{base}/v1/cases", json=case_body(), headers={"X-Api-Key": key})
        assert r.status_code == 201, r.text
        cases.append((r.json()["case"]["id"], r.json()["access_token"]))
    return cases


def test_no_input_makes_the_service_fail(intake_server, real_cases):
    """Every operation of the OpenAPI document, with generated valid and invalid inputs, half
    of them aimed at real cases with valid credentials: no 5xx, ever."""
    base, key, log = intake_server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    calls = 0

    for operation in operations:

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            nonlocal calls
            case_id, token = random.choice(real_cases)
            if case.path_parameters and "case_id" in case.path_parameters and random.random() < 0.6:
                case.path_parameters["case_id"] = case_id
            headers = {"X-Api-Key": key, "Authorization": f"Bearer {token}"}
            try:
                case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=10)
            except Exception:
                print(log.read_text()[-4000:])
                raise
            calls += 1

        exercise()
    assert calls >= 9 * 20
