"""Fetching a stored object for reading: into a private temporary file the checker reads, removed
once read, and removed too when the download fails."""

from __future__ import annotations

import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from minio.error import S3Error

from referrals_translation.reader import ObjectReader, StorageUnavailable
from referrals_translation.service import ObjectGone, Reading


class FakeResponse:
    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = self.released = False

    def stream(self, amount: int) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_after:
                raise ConnectionResetError("connection lost")
            yield chunk

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True


class FakeMinio:
    def __init__(self, objects: dict[str, FakeResponse]) -> None:
        self.objects = objects

    def get_object(self, bucket: str, key: str) -> FakeResponse:
        if key not in self.objects:
            raise S3Error(None, "NoSuchKey", "gone", key, "r", "h")  # type: ignore[arg-type]
        return self.objects[key]


def look(path: Path) -> dict[str, Any]:
    return {"data": path.read_bytes(), "mode": stat.S_IMODE(path.stat().st_mode)}


def files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


async def test_an_object_is_read_from_a_private_file_removed_afterwards(temp_dir: Path) -> None:
    seen: dict[str, Any] = {}

    async def check_file(path: Path, media_type: str) -> Reading:
        seen.update(look(path), type=media_type)
        return Reading(outcome="text", main_language="en", seconds=0.5)

    response = FakeResponse([b"%PDF-1.7 ", b"rest"])
    reader = ObjectReader(FakeMinio({"k": response}), "documents", check_file)  # type: ignore[arg-type]
    reading = await reader.read("k", "application/pdf")
    assert (reading.main_language, reading.seconds) == ("en", 0.5)
    assert seen == {"data": b"%PDF-1.7 rest", "mode": 0o600, "type": "application/pdf"}
    assert (response.closed, response.released) == (True, True)
    assert files(temp_dir) == []


async def test_a_failed_download_leaves_no_file(temp_dir: Path) -> None:
    async def check_file(path: Path, media_type: str) -> Reading:
        raise AssertionError("nothing to read")

    objects = {"broken": FakeResponse([b"a", b"b"], fail_after=1)}
    reader = ObjectReader(FakeMinio(objects), "documents", check_file)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        await reader.read("broken", "application/pdf")
    with pytest.raises(ObjectGone):
        await reader.read("deleted", "application/pdf")
    assert files(temp_dir) == []
