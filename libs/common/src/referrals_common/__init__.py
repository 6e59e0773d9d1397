"""Shared building blocks of the referral platform services."""
