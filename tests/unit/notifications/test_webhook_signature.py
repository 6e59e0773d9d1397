"""Webhook signatures: what a receiver accepts and what it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from referrals_common import webhooks
from referrals_notifications.channels.webhook import compute_signature, verify_signature

pytestmark = pytest.mark.unit

SECRET = "whsec-0123456789abcdef"
BODY = b'{"case_id":"3f0f6c7d-0000-4000-8000-000000000000","trigger":"case_ready"}'
NOW = 1_776_250_800  # 2026-04-15 11:00 UTC


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == f"sha256={expected}"
    assert compute_signature(SECRET, str(NOW), BODY) == f"sha256={expected}"


def test_the_scheme_is_the_platforms() -> None:
    """Receivers may verify with referrals_common.webhooks (partners' centers already do)."""
    header = compute_signature(SECRET, NOW, BODY)
    webhooks.verify(SECRET, BODY, str(NOW), header, now=NOW)
    assert verify_signature(SECRET, NOW, BODY, webhooks.signature(SECRET, NOW, BODY), now=NOW)


def test_a_good_signature_verifies() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, header, now=NOW + 10)
    assert verify_signature(SECRET, NOW, BODY, header, tolerance=300, now=NOW - 10)


def test_a_tampered_body_is_refused() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    tampered = BODY.replace(b"case_ready", b"case_withdrawn")
    assert not verify_signature(SECRET, NOW, tampered, header, now=NOW)
    assert not verify_signature(SECRET, NOW, BODY + b" ", header, now=NOW)


def test_a_wrong_secret_is_refused() -> None:
    header = compute_signature("another-secret-altogether", NOW, BODY)
    assert not verify_signature(SECRET, NOW, BODY, header, now=NOW)


def test_a_moved_timestamp_is_refused() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, NOW + 1, BODY, header, now=NOW)


def test_a_stale_timestamp_is_refused_even_with_a_good_signature() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert verify_signature(SECRET, NOW, BODY, header, tolerance=300, now=NOW + 300)
    assert not verify_signature(SECRET, NOW, BODY, header, tolerance=300, now=NOW + 301)


def test_a_timestamp_from_the_future_is_refused() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, NOW, BODY, header, tolerance=300, now=NOW - 301)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        (None, "sha256=00"),
        (str(NOW), None),
        ("", "sha256=00"),
        ("12.5", "sha256=00"),
        ("-1", "sha256=00"),
        ("١٢٣", "sha256=00"),  # digits, but not ASCII ones
        (str(NOW), ""),
        (str(NOW), "md5=abc"),
        (str(NOW), "sha256=zzzz"),
        (str(NOW), "sha256=é"),
    ],
)
def test_malformed_input_is_refused(timestamp: str | None, header: str | None) -> None:
    assert not verify_signature(SECRET, timestamp, BODY, header, now=NOW)


def test_the_bare_hex_digest_without_the_scheme_is_refused() -> None:
    header = compute_signature(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, NOW, BODY, header.removeprefix("sha256="), now=NOW)
