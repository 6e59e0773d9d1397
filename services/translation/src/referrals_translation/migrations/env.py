"""Alembic environment of translation's database (the shared pattern of referrals_common)."""

from referrals_common.migrations import run_env
from referrals_translation.models import metadata

run_env(metadata)
