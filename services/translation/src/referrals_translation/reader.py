"""Fetch a stored document from MinIO into a private temporary file, then read it.

The object is streamed to disk in 1 MiB chunks (a 2 GB imaging study never sits in memory); the
file is readable only by this process's user and removed as soon as the reading ends. Reading
itself (text layer, OCR, language) runs in a separate, killable process with a time limit, so a
pathological file ends as an "unreadable" verdict instead of stalling or crashing the consumer.

A storage fault (MinIO down, network) is raised as `StorageUnavailable`, an `OSError`: the
consumer treats it as an infrastructure fault and retries the event later instead of
dead-lettering it. An object that no longer exists (a draft document deleted after it was
stored) is `ObjectGone`: there is nothing left to judge.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from minio import Minio
from minio.error import S3Error

from referrals_translation.config import TranslationSettings
from referrals_translation.outcome import Outcome
from referrals_translation.service import ObjectGone, Reading

CHUNK = 1024 * 1024
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})

CheckFile = Callable[[Path, str], Awaitable[Reading]]


class StorageUnavailable(OSError):
    """Object storage could not be reached or failed: retry later."""


class ObjectReader:
    def __init__(self, client: Minio, bucket: str, check_file: CheckFile) -> None:
        self.client = client
        self.bucket = bucket
        self.check_file = check_file

    async def read(self, object_key: str, media_type: str) -> Reading:
        path = await asyncio.to_thread(self._download, object_key)
        try:
            started = time.perf_counter()
            reading = await self.check_file(path, media_type)
            if not reading.seconds:
                reading = Reading(**{**reading.__dict__, "seconds": time.perf_counter() - started})
            return reading
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    def _download(self, object_key: str) -> Path:
        """The object in a new private temporary file (removed again if the download fails)."""
        fd, name = tempfile.mkstemp(prefix="referrals-doc-")
        try:
            with os.fdopen(fd, "wb") as out:
                self._write(object_key, out)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    def _write(self, object_key: str, out: BinaryIO) -> None:
        try:
            response = self.client.get_object(self.bucket, object_key)
        except S3Error as exc:
            if exc.code in MISSING_CODES:
                raise ObjectGone(object_key) from exc
            raise StorageUnavailable(f"object storage refused {object_key}: {exc.code}") from exc
        except Exception as exc:  # urllib3 connection and protocol errors
            raise StorageUnavailable(f"object storage unreachable: {exc!r}") from exc
        try:
            for chunk in response.stream(CHUNK):
                out.write(chunk)
        except Exception as exc:
            raise StorageUnavailable(f"reading {object_key} from object storage failed") from exc
        finally:
            response.close()
            response.release_conn()


class FileChecker:
    """Reads a local file in the killable worker pool and turns the outcome into a `Reading`."""

    def __init__(self, settings: TranslationSettings) -> None:
        from referrals_translation.checking import DocumentChecker
        from referrals_translation.outcome import Limits

        self.limits = Limits(timeout_s=settings.check_timeout_seconds, max_pages=settings.max_pages)
        self.checker = DocumentChecker(workers=settings.workers, limits=self.limits)

    async def check(self, path: Path, media_type: str) -> Reading:
        outcome = await self.checker.check_async(path, media_type, self.limits)
        return reading_of(outcome)

    def start(self) -> None:
        """Start the workers now: checks Tesseract is installed and loads the language models
        (seconds) before the first document rather than during it."""
        self.checker.start()

    def close(self) -> None:
        self.checker.close()


def reading_of(outcome: Outcome) -> Reading:
    return Reading(
        outcome=outcome.kind,
        main_language=outcome.main_language,
        languages=tuple((share.language, share.share) for share in outcome.languages),
        confidence=outcome.confidence,
        pages=outcome.pages,
        method=str(outcome.method) if outcome.method else None,
        reason=str(outcome.reason) if outcome.reason else None,
        detail=outcome.detail,
        seconds=outcome.seconds,
    )
