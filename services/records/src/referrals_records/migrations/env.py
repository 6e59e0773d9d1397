"""Alembic environment of records' database (the shared pattern of referrals_common)."""

from referrals_common.migrations import run_env
from referrals_records.models import metadata

run_env(metadata)
