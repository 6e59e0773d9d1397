"""The Alembic pattern every service reuses for its own database.

A service keeps `migrations/` (env.py + versions/) beside its code. Its env.py is two lines:

    from referrals_common.migrations import run_env
    from referrals_intake.models import metadata
    run_env(metadata)

and its first revision calls `create_messaging_schema(op)` (referrals_common.messaging.schema)
to get the outbox, the inbox and the relay's NOTIFY trigger. `upgrade(dsn, migrations_dir)`
applies every revision; services call it at start-up, tests on a fresh database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from referrals_common.messaging.schema import messaging_metadata
from referrals_common.settings import PostgresSettings


def alembic_config(migrations_dir: Path, dsn: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    # Percent signs would be read as interpolation by ConfigParser.
    url = PostgresSettings(dsn=dsn).async_url().replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(dsn: str, migrations_dir: Path, revision: str = "head") -> None:
    """Apply migrations up to `revision` (synchronously; call it off the event loop)."""
    command.upgrade(alembic_config(migrations_dir, dsn), revision)


async def upgrade_async(dsn: str, migrations_dir: Path, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, dsn, migrations_dir, revision)


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of a service's migrations/env.py: online migrations over asyncpg."""
    from alembic import context

    metadatas = [messaging_metadata] + ([target_metadata] if target_metadata is not None else [])

    def do_run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadatas,
            compare_type=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = async_engine_from_config(
            context.config.get_section(context.config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=metadatas,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())
