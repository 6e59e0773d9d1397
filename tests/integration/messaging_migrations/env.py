"""Migrations of the test database the messaging tests use: the same pattern as a service's."""

from referrals_common.migrations import run_env

run_env()
