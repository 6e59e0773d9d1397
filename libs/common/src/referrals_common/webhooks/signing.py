"""Signed webhooks: how the platform POSTs an event to a receiver's HTTPS endpoint, and how the
receiver checks it came from us, unaltered and recently.

The signature is HMAC-SHA256 over `"{timestamp}.{body}"` with the receiver's own secret, sent as

    X-Referrals-Timestamp: 1763730000
    X-Referrals-Signature: sha256=5d6e…

so a receiver rejects a body changed in transit, a wrong secret, and a replay older than the
tolerance (five minutes by default). Every webhook of the platform is signed so (partners' offers
to centers, notifications' case updates to front ends: `referrals_common.webhooks.delivery`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-Referrals-Signature"
TIMESTAMP_HEADER = "X-Referrals-Timestamp"
EVENT_ID_HEADER = "X-Referrals-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The webhook's signature does not verify; the message says why (never the expected MAC)."""


def new_secret() -> str:
    """A fresh signing secret to give a receiver once."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The headers to send with `body`."""
    timestamp = int(now if now is not None else time.time())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def verify(
    secret: str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise InvalidSignature unless the headers sign `body` with `secret` within `tolerance`."""
    if not timestamp_header or not signature_header:
        raise InvalidSignature("the signature or timestamp header is missing")
    # Unix seconds in ASCII digits only: int() would also take "+1", " 1" or other scripts' digits.
    if not (timestamp_header.isascii() and timestamp_header.isdigit()):
        raise InvalidSignature("the timestamp is not an integer")
    timestamp = int(timestamp_header)
    current = now if now is not None else time.time()
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature("the timestamp is outside the tolerance (a replay?)")
    expected = signature(secret, timestamp, body).encode()
    # Bytes on both sides: a header with non-ASCII characters is a bad signature, not an error.
    if not hmac.compare_digest(expected, signature_header.strip().encode("utf-8", "replace")):
        raise InvalidSignature("the signature does not match the body")
