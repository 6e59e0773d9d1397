"""The registry in the database: loading the versioned seed, inbox topics, and API keys.

Partners owns the centers' keys: it issues them (shown once), keeps their peppered hashes and
revokes them, and tells records each issue and revocation (`referrals.center-credentials.v1`,
key id and `key_digest`, never the key), in the same transaction, through the outbox.

The seed file is the starting point, not the truth: on start-up the consumer adds the seed's
centers that are not in the database yet and never overwrites a center ops changed through the
API (pause, capacity, deadline). Every center gets its own inbox topic,
`referrals.partner-inbox.<code>.v1`, created when the center is added (brokers do not
auto-create topics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from referrals_common.auth.api_keys import generate_api_key, hash_secret, key_digest
from referrals_common.contracts import (
    CenterCredentialIssued,
    CenterCredentialRevoked,
    credential_key,
    new_event,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.settings import KafkaSettings
from referrals_partners.models import ApiClient, utcnow
from referrals_partners.registry import Center, CenterStatus, Registry, load_registry
from referrals_partners.repository import PartnersRepository

log = logging.getLogger(__name__)

CENTER_KEY_PREFIX = "ccr"
OPS_KEY_PREFIX = "ops"


@dataclass(frozen=True)
class KeyHolder:
    """Who holds a valid partners key: a center (`role` center, `center_code` its code) or an
    operator (`role` ops)."""

    key_id: str
    role: str
    center_code: str | None

    @classmethod
    def of(cls, key_id: str, row: ApiClient) -> KeyHolder:
        return cls(key_id=key_id, role=row.role, center_code=row.center_code)

    @property
    def is_center(self) -> bool:
        return self.role == "center" and self.center_code is not None

    @property
    def is_operator(self) -> bool:
        return self.role == "ops"


class CenterRowValues(TypedDict):
    code: str
    profile: dict[str, Any]
    active: bool


def center_row_values(center: Center) -> CenterRowValues:
    return {
        "code": center.code,
        "profile": center.model_dump(mode="json"),
        "active": center.status is CenterStatus.ACTIVE,
    }


async def load_seed(db: Database, path: str | Path | None = None) -> Registry:
    """Add the seed's centers that the database does not have; returns the seed registry."""
    registry = load_registry(path)
    # A start-up step of the consumer process, not a use case: it is its own caller.
    async with db.unit_of_work() as uow:
        repo = PartnersRepository(uow.session)
        added = 0
        for center in registry.centers:
            values = {
                **center_row_values(center),
                "seed_version": registry.version,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
            added += await repo.add_seed_center(values)
        await uow.commit()
    log.info(
        "registry seed v%s (%s): %d centers, %d new",
        registry.version,
        "sample data" if registry.sample_data else "real data",
        len(registry.centers),
        added,
    )
    return registry


async def ensure_inbox_topics(db: Database, kafka: KafkaSettings | str) -> list[str]:
    """Create the inbox topic (one partition: a center reads its offers in order) of every
    registered center that has none, replicated as the platform's topics are."""
    from referrals_common.messaging.kafka import ensure_topics, kafka_settings

    kafka = kafka_settings(kafka)
    async with db.unit_of_work() as uow:
        codes = await PartnersRepository(uow.session).center_codes()
    return await ensure_topics(
        kafka,
        [topics.partner_inbox(code) for code in codes],
        partitions=1,
        replication_factor=kafka.topic_replication_factor,
    )


async def issue_key(
    uow: UnitOfWork,
    pepper: bytes,
    *,
    role: str,
    name: str,
    center_code: str | None = None,
    repository: Callable[[Any], PartnersRepository] = PartnersRepository,
) -> str:
    """A new API key for a center (`role` center) or an operator (`role` ops), shown once. A
    center's key is announced to records in the same transaction: it works there too once
    records has read the event (within seconds)."""
    key = generate_api_key(CENTER_KEY_PREFIX if role == "center" else OPS_KEY_PREFIX)
    row = ApiClient(
        key_id=key.key_id,
        role=role,
        center_code=center_code,
        name=name,
        secret_hash=hash_secret(key.secret, pepper),
    )
    repository(uow.session).add(row)
    if role == "center":
        assert center_code is not None, "a center's key names its center"
        await uow.outbox.add(
            new_event(
                CenterCredentialIssued(
                    case_id=credential_key(key.key_id),
                    center_code=center_code,
                    key_id=key.key_id,
                    key_sha256=key_digest(key.secret),
                    issued_at=row.created_at,
                )
            )
        )
    return key.display


async def revoke_key(
    uow: UnitOfWork,
    key_id: str,
    *,
    repository: Callable[[Any], PartnersRepository] = PartnersRepository,
) -> ApiClient | None:
    """Revoke the key `key_id` (None: there is no such key). The first revocation of a center's
    key is announced to records in the same transaction; revoking again changes nothing."""
    row = await repository(uow.session).api_key(key_id, lock=True)
    if row is None or row.revoked_at is not None:
        return row
    row.revoked_at = utcnow()
    if row.role == "center" and row.center_code is not None:
        await uow.outbox.add(
            new_event(
                CenterCredentialRevoked(
                    case_id=credential_key(row.key_id),
                    center_code=row.center_code,
                    key_id=row.key_id,
                    revoked_at=row.revoked_at,
                )
            )
        )
    return row
