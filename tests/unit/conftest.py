"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `REFERRALS_*` variable of the machine reaches the settings under test."""
    for key in list(os.environ):
        if key.startswith("REFERRALS_"):
            monkeypatch.delenv(key)
