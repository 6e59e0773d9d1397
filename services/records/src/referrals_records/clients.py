"""Cancer centers as API clients of records: keys created by an operator, stored hashed."""

from __future__ import annotations

from referrals_common.auth.api_keys import generate_api_key, hash_secret
from referrals_common.db import Database, UnitOfWork
from referrals_records.config import RecordsSettings
from referrals_records.models import CenterClient

KEY_PREFIX = "ccr"


async def register_center(uow: UnitOfWork, center_code: str, pepper: bytes) -> str:
    key = generate_api_key(KEY_PREFIX)
    uow.session.add(
        CenterClient(
            key_id=key.key_id, center_code=center_code, secret_hash=hash_secret(key.secret, pepper)
        )
    )
    return key.display


async def create_center_key(settings: RecordsSettings, center_code: str) -> str:
    db = Database(settings.postgres)
    try:
        async with db.unit_of_work() as uow:
            key = await register_center(
                uow, center_code, settings.api_key_pepper.get_secret_value().encode()
            )
            await uow.commit()
        return key
    finally:
        await db.dispose()
