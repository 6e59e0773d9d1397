"""Shared fixtures of the translation tests: the fixture documents, their manifest, a checker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from referrals_translation.checking import DocumentChecker

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "translation"


def manifest() -> dict[str, Any]:
    """tests/fixtures/translation/expected.json: what each fixture document must come out as."""
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def checker() -> Iterator[DocumentChecker]:
    """Two killable workers with the default limits, shared by the tests that read documents."""
    with DocumentChecker(workers=2) as pool:
        pool.start()
        yield pool
