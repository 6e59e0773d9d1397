"""Partner front ends as API clients: keys created by an operator, stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from referrals_common.auth.api_keys import generate_api_key, hash_secret
from referrals_common.db import Database, UnitOfWork
from referrals_intake.config import IntakeSettings
from referrals_intake.models import ApiClient

KEY_PREFIX = "rfk"


@dataclass(frozen=True)
class Client:
    """A partner front end calling with its API key (the principal of its routes)."""

    key_id: str
    name: str

    @property
    def actor(self) -> str:
        return f"client:{self.key_id}"


async def register_client(
    uow: UnitOfWork, name: str, pepper: bytes, *, takes_webhooks: bool = False
) -> str:
    """Store a new client in the caller's transaction; return the full key (shown once).
    `takes_webhooks`: the front end takes its cases' updates by webhook."""
    key = generate_api_key(KEY_PREFIX)
    uow.session.add(
        ApiClient(
            key_id=key.key_id,
            name=name,
            secret_hash=hash_secret(key.secret, pepper),
            takes_webhooks=takes_webhooks,
        )
    )
    return key.display


async def create_client(
    settings: IntakeSettings, name: str, *, takes_webhooks: bool = False
) -> str:
    db = Database(settings.postgres)
    try:
        async with db.unit_of_work() as uow:
            key = await register_client(
                uow,
                name,
                settings.api_key_pepper.get_secret_value().encode(),
                takes_webhooks=takes_webhooks,
            )
            await uow.commit()
        return key
    finally:
        await db.dispose()
