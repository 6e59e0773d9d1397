"""Records accepts exactly the center keys partners issued and has not revoked, as partners'
events on `referrals.center-credentials.v1` tell it; records issues, registers and stores no key.

Real PostgreSQL, MinIO and Kafka; records' own consumer (`consumers.build_consumer`) reads the
events, published as partners' relay publishes them (its topic, keyed by the key's stream key),
some of them twice as a redelivery would.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from referrals_common.auth.api_keys import generate_api_key, key_digest
from referrals_common.contracts import (
    CenterCredentialIssued,
    CenterCredentialRevoked,
    credential_key,
    new_event,
)
from referrals_common.messaging.schema import inbox_table
from referrals_records.models import CenterCredential

from ..conftest import publish, wait_for
from .test_center_before_grant import records_consumer

pytestmark = pytest.mark.integration

CHARITE, WARSAW = "charite-berlin", "nio-warsaw"


def issued(key, center: str = CHARITE):
    return new_event(
        CenterCredentialIssued(
            case_id=credential_key(key.key_id),
            center_code=center,
            key_id=key.key_id,
            key_sha256=key_digest(key.secret),
            issued_at=datetime.now(UTC),
        )
    )


def revoked(key, center: str = CHARITE):
    return new_event(
        CenterCredentialRevoked(
            case_id=credential_key(key.key_id),
            center_code=center,
            key_id=key.key_id,
            revoked_at=datetime.now(UTC),
        )
    )


async def status(api, key) -> int:
    """What records answers the key on a referral nobody offered: 401 if it refuses the key,
    409 `referral-not-known-yet` if it accepts it."""
    response = await api.get(
        f"/v1/referrals/{uuid.uuid4()}/documents", headers={"X-Api-Key": key.display}
    )
    return response.status_code


async def row(runtime, key) -> CenterCredential | None:
    async with runtime.db.unit_of_work() as uow:
        return await uow.session.get(CenterCredential, key.key_id)


async def test_records_follows_partners_issue_and_revocation(api, runtime):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    key, stranger = generate_api_key("ccr"), generate_api_key("ccr")
    async with records_consumer(runtime):
        assert await status(api, key) == 401  # not issued yet

        await publish(bootstrap, issued(key), times=2)
        await wait_for(lambda: row(runtime, key), timeout=60)
        assert await status(api, key) == 409
        stored = await row(runtime, key)
        assert stored is not None and stored.center_code == CHARITE
        # Neither the key nor its digest is stored: only records' own hash of the digest.
        assert stored.secret_hash not in (key.secret, key_digest(key.secret))
        assert key.secret not in stored.model_dump_json()

        # The same key id claimed for another center moves nothing.
        await publish(bootstrap, issued(key, WARSAW))
        assert await status(api, stranger) == 401  # a key partners never issued
        assert (await row(runtime, key)).center_code == CHARITE  # type: ignore[union-attr]

        await publish(bootstrap, revoked(key), times=2)

        async def refused() -> bool:
            return await status(api, key) == 401

        started = asyncio.get_running_loop().time()
        await wait_for(refused, timeout=30)
        print(
            f"\nrevocation read -> refused in {asyncio.get_running_loop().time() - started:.2f} s"
        )

        # A later issue (a redelivery, a replay from the start of the topic) never revives it.
        await publish(bootstrap, issued(key))
        await asyncio.sleep(runtime.settings.center_key_cache_seconds + 1)
        assert await status(api, key) == 401
        assert (await row(runtime, key)).revoked_at is not None  # type: ignore[union-attr]


async def test_a_revocation_read_before_its_issue_keeps_the_key_refused(api, runtime):
    """Compaction keeps only a key's last event, so records may learn a revocation first."""
    bootstrap = runtime.settings.kafka.bootstrap_servers
    key = generate_api_key("ccr")
    async with records_consumer(runtime):
        await publish(bootstrap, revoked(key))
        await wait_for(lambda: row(runtime, key), timeout=60)
        late = issued(key)
        await publish(bootstrap, late)

        async def applied() -> bool:  # records' consumer has read the late issue (its inbox)
            async with runtime.db.unit_of_work() as uow:
                found = await uow.session.execute(
                    select(inbox_table.c.event_id).where(inbox_table.c.event_id == late.id)
                )
                return found.first() is not None

        await wait_for(applied, timeout=60)
        assert await status(api, key) == 401
        stored = await row(runtime, key)
        assert stored is not None and stored.revoked_at is not None and stored.secret_hash is None
