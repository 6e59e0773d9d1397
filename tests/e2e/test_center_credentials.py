"""One owner of the centers' keys: partners issues and revokes them, records only learns them.

On the real platform (every service role its own process, real Kafka and PostgreSQL): a key
partners' operator issues works at records within seconds (partners' outbox relay publishes
`referrals.center.credential_issued.v1`, records' consumer keeps its digest), a key revoked in
partners is refused by records within seconds (`credential_revoked.v1`, then at most records'
`center_key_cache_seconds`), and a key partners never issued is refused, however well formed.
Nobody writes to records' database: there is no other way in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from referrals_common.auth.api_keys import generate_api_key

pytestmark = pytest.mark.e2e

WITHIN_SECONDS = 15.0
"""Issue or revocation reaching records: the relay (woken by NOTIFY), the consumer, the cache."""


def _documents_path() -> str:
    # A referral nobody offered: a key records accepts gets 404 or 409 (not known yet), never
    # 401; a key it refuses gets 401 before the referral is even looked at.
    return f"/v1/referrals/{uuid.uuid4()}/documents"


async def _status_at_records(records: httpx.AsyncClient, key: str) -> int:
    response = await records.get(_documents_path(), headers={"X-Api-Key": key})
    return response.status_code


async def _seconds_until(
    records: httpx.AsyncClient, key: str, accepted: bool, budget: float = 60.0
) -> float:
    """Seconds until records accepts (or refuses) `key`; fails past `budget`."""
    started = time.monotonic()
    while True:
        status = await _status_at_records(records, key)
        if (status != 401) == accepted:
            return time.monotonic() - started
        assert time.monotonic() - started < budget, f"records still says {status}"
        await asyncio.sleep(0.1)


async def test_a_key_lives_and_dies_in_partners_and_records_follows_within_seconds(
    running_platform: tuple[Any, Any],
) -> None:
    _, platform = running_platform
    keys = platform.keys()
    ops = {"X-Api-Key": str(keys["ops"])}
    centers: dict[str, str] = keys["centers"]  # type: ignore[assignment]
    code = sorted(centers)[0]
    async with (
        httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30) as partners,
        httpx.AsyncClient(base_url=platform.apis["records"], timeout=30) as records,
    ):
        # The keys devstack provisioned were issued in partners only; records learnt them.
        for provisioned in centers.values():
            await _seconds_until(records, provisioned, accepted=True)

        # A well-formed key partners never issued: refused, and stays refused.
        stranger = generate_api_key("ccr").display
        assert await _status_at_records(records, stranger) == 401

        issued = await partners.post(
            f"/v1/ops/centers/{code}/keys",
            headers={**ops, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert issued.status_code == 201, issued.text
        key = issued.json()["key"]
        key_id = key.split("_")[1]
        reached = await _seconds_until(records, key, accepted=True)
        print(f"\nissued in partners -> accepted by records in {reached:.2f} s")
        assert reached < WITHIN_SECONDS, reached
        answer = await records.get(_documents_path(), headers={"X-Api-Key": key})
        assert answer.status_code in (404, 409), answer.text

        # Revoked by the operator in partners, nowhere else.
        revoked = await partners.delete(f"/v1/ops/keys/{key_id}", headers=ops)
        assert revoked.status_code == 204, revoked.text
        gone = await _seconds_until(records, key, accepted=False)
        print(f"revoked in partners -> refused by records in {gone:.2f} s")
        assert gone < WITHIN_SECONDS, gone
        for _ in range(3):  # and it stays refused (no cache, no replica brings it back)
            assert await _status_at_records(records, key) == 401
            await asyncio.sleep(0.5)
        assert await _status_at_records(records, stranger) == 401
        # The center's other keys are untouched.
        assert await _status_at_records(records, centers[code]) != 401
