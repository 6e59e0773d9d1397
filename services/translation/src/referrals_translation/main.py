"""Bootstrap: translation's parts from settings, once per process (nothing at import).

Translation has no HTTP API of its own: it is a consumer (reading documents, writing verdicts
through its outbox) and an outbox relay, each its own process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minio import Minio

from referrals_common.db import Database
from referrals_translation.config import TranslationSettings
from referrals_translation.service import Translation

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: TranslationSettings
    db: Database
    translation: Translation
    checker: Any
    """The pool of reading worker processes; `close()` stops them."""

    async def close(self) -> None:
        self.checker.close()
        await self.db.dispose()


def build_runtime(settings: TranslationSettings) -> Runtime:
    from referrals_translation.acceptance import acceptable_languages
    from referrals_translation.reader import FileChecker, ObjectReader

    s3 = settings.s3
    client = Minio(
        s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.secure,
        region=s3.region,
    )
    checker = FileChecker(settings)
    db = Database(settings.postgres)
    reader = ObjectReader(client, settings.bucket, checker.check)
    return Runtime(
        settings=settings,
        db=db,
        translation=Translation(reader, acceptable_languages),
        checker=checker,
    )


async def run_consumer(settings: TranslationSettings) -> None:
    """The consumer process: until SIGTERM or SIGINT."""
    from referrals_common.messaging.consumer import serve_consumer
    from referrals_translation import consumers

    rt = build_runtime(settings)
    try:
        await asyncio.to_thread(rt.checker.start)
        await serve_consumer(
            "translation",
            settings.kafka,
            consumers.SUBSCRIBED_TOPICS,
            lambda dead: consumers.build_consumer(rt.translation, rt.db, dead),
            lanes=consumers.lanes(settings),
        )
    finally:
        await rt.close()
