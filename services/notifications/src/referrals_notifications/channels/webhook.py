"""Signed webhooks to the partner front end a case came from.

The body is the JSON made by `rendering.build_webhook_message`. The request is the platform's one
webhook component's (`referrals_common.webhooks`, which partners uses for centers too): signed

    X-Referrals-Timestamp: <unix seconds>
    X-Referrals-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the shared secret>

so a receiver refuses a changed body or a replayed request (`verify_signature`, for receivers and
our own tests, is the component's `verify`); sent only after the front end's host resolved to
public addresses, to the address that was checked, redirects never followed
(`referrals_common.outbound`). What the front end answered is an `Attempt` of the delivery log;
this channel only words it as a delivery error: a 2xx is a delivery; no answer, 408, 425, 429
and 5xx are transient; anything else is a permanent refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.outbound import ErrorClass, OutboundPolicy
from referrals_common.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Attempt,
    InvalidSignature,
    WebhookPoster,
    signature,
    verify,
)

from ..rendering import RenderedMessage
from .base import (
    DeliveryError,
    DeliveryReceipt,
    PermanentDeliveryError,
    TransientDeliveryError,
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
    try:
        verify(
            secret,
            body,
            None if timestamp is None else str(timestamp),
            header,
            tolerance=tolerance,
            now=now,
        )
    except InvalidSignature:
        return False
    return True


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
        self.poster = WebhookPoster(
            self.policy,
            timeout=self.settings.timeout,
            user_agent=self.settings.user_agent,
            client=client,
            clock=clock,
        )

    async def aclose(self) -> None:
        await self.poster.aclose()

    async def send(self, recipient: WebhookTarget, message: RenderedMessage) -> DeliveryReceipt:
        attempt = await self.poster.post(
            str(recipient.url),
            recipient.secret.get_secret_value(),
            message.text.encode("utf-8"),
            headers={EVENT_HEADER: message.subject},
        )
        if not attempt.delivered:
            raise delivery_error(attempt)
        return DeliveryReceipt(
            self.channel,
            provider_id=attempt.request_id,
            status_code=attempt.status_code,
            attempt=attempt,
        )


def delivery_error(attempt: Attempt) -> DeliveryError:
    """A failed attempt as the delivery error `notification.failed` reports."""
    kind = TransientDeliveryError if attempt.retryable else PermanentDeliveryError
    code = attempt.status_code
    if attempt.error is ErrorClass.ADDRESS_REFUSED:
        detail = f"{attempt.error}: {attempt.refusal}"
        error_code = NotificationError.OTHER
    elif code is not None:
        detail = f"webhook endpoint answered {code}"
        if code == 408:
            error_code = NotificationError.TIMEOUT
        elif attempt.retryable:
            error_code = NotificationError.WEBHOOK_HTTP_ERROR
        else:
            error_code = NotificationError.REJECTED
    elif attempt.error is ErrorClass.TIMEOUT:
        detail, error_code = "no answer in time", NotificationError.TIMEOUT
    else:
        detail = f"could not reach the endpoint: {attempt.error}"
        error_code = NotificationError.WEBHOOK_HTTP_ERROR
    return kind(
        error_code,
        detail,
        status_code=code,
        retry_after=attempt.retry_after,
        attempt=attempt,
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
