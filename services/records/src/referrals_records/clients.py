"""Cancer centers as API clients of records: keys created by an operator, stored hashed."""

from __future__ import annotations

from referrals_common.auth.api_keys import generate_api_key, hash_secret, parse_api_key
from referrals_common.db import Database, UnitOfWork
from referrals_records.config import RecordsSettings
from referrals_records.models import CenterClient

KEY_PREFIX = "ccr"


async def register_center(
    uow: UnitOfWork, center_code: str, pepper: bytes, existing_key: str | None = None
) -> str:
    """Register a center's API key: a new one, or `existing_key`, the key partners issued to the
    center, so that the center uses one key for both services."""
    if existing_key is not None:
        _, key_id, secret = parse_api_key(existing_key, expected_prefix=KEY_PREFIX)
        display = existing_key
    else:
        key = generate_api_key(KEY_PREFIX)
        key_id, secret, display = key.key_id, key.secret, key.display
    uow.session.add(
        CenterClient(
            key_id=key_id, center_code=center_code, secret_hash=hash_secret(secret, pepper)
        )
    )
    return display


async def create_center_key(
    settings: RecordsSettings, center_code: str, existing_key: str | None = None
) -> str:
    db = Database(settings.postgres)
    try:
        async with db.unit_of_work() as uow:
            key = await register_center(
                uow, center_code, settings.api_key_pepper.get_secret_value().encode(), existing_key
            )
            await uow.commit()
        return key
    finally:
        await db.dispose()
