"""Translation's wiring: its parts from settings, once per process (nothing at import).

`build_runtime` makes the database, the pool of reading workers (not started: the consumer
process starts it) and the use cases over a MinIO reader; `main` runs the processes on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from referrals_common.db import Database
from referrals_translation.config import TranslationSettings
from referrals_translation.service import Translation

if TYPE_CHECKING:
    from referrals_translation.reader import FileChecker


@dataclass
class Runtime:
    settings: TranslationSettings
    db: Database
    translation: Translation
    checker: FileChecker
    """The pool of reading worker processes; `close()` stops them."""

    async def close(self) -> None:
        self.checker.close()
        await self.db.dispose()


def build_runtime(settings: TranslationSettings) -> Runtime:
    from referrals_translation.acceptance import acceptable_languages
    from referrals_translation.reader import FileChecker, ObjectReader

    client = settings.s3.client()
    checker = FileChecker(settings)
    db = Database(settings.postgres)
    reader = ObjectReader(client, settings.bucket, checker.check)
    return Runtime(
        settings=settings,
        db=db,
        translation=Translation(reader, acceptable_languages),
        checker=checker,
    )
