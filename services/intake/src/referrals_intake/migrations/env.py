"""Alembic environment of intake's database (the shared pattern of referrals_common)."""

from referrals_common.migrations import run_env
from referrals_intake.models import metadata

run_env(metadata)
