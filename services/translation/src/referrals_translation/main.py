"""Translation's processes: the consumer (reading documents, writing verdicts through its
outbox) runs here on the runtime `bootstrap` builds; the outbox relay is the platform's own
(`referrals-translation relay`). Translation has no HTTP API: nobody calls it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from referrals_translation.bootstrap import build_runtime
from referrals_translation.config import TranslationSettings

MIGRATIONS = Path(__file__).parent / "migrations"


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
