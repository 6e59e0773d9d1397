"""Alembic environment of the web application's database (referrals_common's pattern)."""

from referrals_common.migrations import run_env
from referrals_web.models import metadata

run_env(metadata)
