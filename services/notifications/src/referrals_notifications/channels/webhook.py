"""Signed webhooks to the partner front end a case came from.

The body is the JSON made by `rendering.build_webhook_message`. The scheme is the platform's
(`referrals_common.webhooks`, which partners uses for centers too); each request carries

    X-Referrals-Timestamp: <unix seconds>
    X-Referrals-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>

Signing the timestamp with the body lets a receiver refuse a replayed request: `verify_signature`
(for receivers, and for our own tests) recomputes the HMAC over the exact bytes received, compares
in constant time and refuses a timestamp outside the tolerance. Redirects are not followed: a
signed request goes only where it was addressed. A 2xx answer is a delivery; 408, 425, 429 and 5xx
are retried; any other status is a permanent refusal. Before every request the front end's host
is resolved and must resolve to public addresses only, and the request goes to the address that
was checked (`referrals_common.outbound`): a configured URL never reaches internal services.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.outbound import OutboundPolicy, TargetRefused, classify
from referrals_common.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

from ..rendering import RenderedMessage
from .base import (
    DeliveryReceipt,
    PermanentDeliveryError,
    classify_http_exception,
    classify_http_status,
)

EVENT_HEADER = "X-Referrals-Event"


def compute_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as `referrals_common.webhooks` signs."""
    return signature(secret, int(timestamp), body)


def verify_signature(
    secret: str,
    timestamp: str | int | None,
    body: bytes,
    header: str | None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """Whether `header` signs `body` at `timestamp` with `secret`, and the timestamp is within
    `tolerance` seconds of now (either way: a clock ahead is as suspicious as a replay).

    Never raises: malformed input (a non-numeric timestamp, a header with non-ASCII characters,
    a missing header) is simply not a valid signature.
    """
    if timestamp is None or header is None:
        return False
    stamp = str(timestamp)
    if not stamp.isascii() or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    expected = compute_signature(secret, stamp, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


class WebhookTarget(BaseModel):
    """A partner front end's endpoint and the secret shared with it."""

    model_config = ConfigDict(frozen=True)

    url: HttpUrl
    secret: SecretStr = Field(min_length=16)


class WebhookSettings(BaseModel):
    timeout: float = Field(10.0, gt=0)
    user_agent: str = "referrals-notifications/0.1"


class WebhookChannel:
    """POSTs signed JSON bodies to partner front ends."""

    channel = NotificationChannel.WEBHOOK

    def __init__(
        self,
        settings: WebhookSettings | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self.settings = settings or WebhookSettings()
        self.policy = policy or OutboundPolicy(require_https=True)
        """Which receivers may be called (default: public HTTPS addresses only)."""
        self._client = client or httpx.AsyncClient(timeout=self.settings.timeout)
        self._owns_client = client is None
        self._clock = clock

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def signed_headers(self, target: WebhookTarget, body: bytes, event: str) -> dict[str, str]:
        timestamp = int(self._clock())
        signature = compute_signature(target.secret.get_secret_value(), timestamp, body)
        return {
            "Content-Type": "application/json",
            "User-Agent": self.settings.user_agent,
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature,
        }

    async def send(self, recipient: WebhookTarget, message: RenderedMessage) -> DeliveryReceipt:
        body = message.text.encode("utf-8")
        headers = self.signed_headers(recipient, body, message.subject)
        try:
            response = await self.policy.post(
                self._client,
                str(recipient.url),
                content=body,
                headers=headers,
                timeout=self.settings.timeout,
            )
        except TargetRefused as refused:
            raise PermanentDeliveryError(
                NotificationError.OTHER, f"{classify(refused)}: {refused.reason}"
            ) from None
        except httpx.HTTPError as exc:
            raise classify_http_exception(
                exc, unreachable_code=NotificationError.WEBHOOK_HTTP_ERROR
            ) from exc
        if not response.is_success:
            raise classify_http_status(
                response.status_code,
                f"webhook endpoint answered {response.status_code}",
                transient_code=NotificationError.WEBHOOK_HTTP_ERROR,
                permanent_code=NotificationError.REJECTED,
            )
        return DeliveryReceipt(
            self.channel,
            provider_id=response.headers.get("X-Request-Id"),
            status_code=response.status_code,
        )


__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "WebhookSettings",
    "WebhookTarget",
    "compute_signature",
    "verify_signature",
]
