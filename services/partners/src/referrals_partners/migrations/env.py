"""Alembic environment of partners' database (the shared pattern of referrals_common)."""

from referrals_common.migrations import run_env
from referrals_partners.models import metadata

run_env(metadata)
