"""Alembic environment of notifications' database (the shared pattern of referrals_common)."""

from referrals_common.migrations import run_env
from referrals_notifications.models import metadata

run_env(metadata)
