"""Delivering a webhook: one signed POST through the outbound guard, recorded as an `Attempt`.

`WebhookPoster.post` signs the body (`signing`), resolves the receiver's host and refuses a
non-public address (`referrals_common.outbound`, before every request, connecting to the address
it checked, never following a redirect), and turns whatever happened into an `Attempt`: when,
the status the receiver answered (if it answered), the coarse error class (never the socket's
words), the `Retry-After` it asked for. `deliver` makes one round of attempts under the
`RetryPolicy`. Partners delivers offers to centers with it, notifications case updates to front
ends: the same request, the same retry rules, the same log record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from referrals_common.contracts.notifications import WebhookOutcome
from referrals_common.outbound import ErrorClass, OutboundPolicy, TargetRefused, classify
from referrals_common.webhooks.policy import (
    RetryPolicy,
    Sleep,
    is_retryable,
    retry_after_seconds,
    retry_round,
)
from referrals_common.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

USER_AGENT = "referrals-webhooks/0.1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request to a receiver, as the delivery log keeps it."""

    at: datetime
    status_code: int | None = None
    """The status the receiver answered; None when it did not answer."""
    error: ErrorClass | None = None
    """None: delivered (a 2xx)."""
    retry_after: float | None = None
    """The seconds the receiver asked to wait (`Retry-After`), if it asked."""
    request_id: str | None = None
    """The receiver's `X-Request-Id`, if it gave one."""
    refusal: str | None = None
    """Why the outbound guard refused the address, in words fit for the receiver's owner."""

    @property
    def delivered(self) -> bool:
        return self.error is None

    @property
    def retryable(self) -> bool:
        return is_retryable(self.status_code, self.error)


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """An attempt with what it meant when it was made: delivered; retrying (and when the next
    attempt is, or was); failed (the last one of a delivery given up)."""

    attempt: Attempt
    outcome: WebhookOutcome
    next_attempt_at: datetime | None


def log_entries(
    attempts: Sequence[Attempt], outcome: WebhookOutcome, next_attempt_at: datetime | None
) -> list[LoggedAttempt]:
    """The log entries of a round's `attempts`, the delivery settled as `outcome` (and, when
    retrying, due again at `next_attempt_at`): an attempt followed by another one says
    `retrying` with the time of the next; the last one says what became of the delivery."""
    entries = []
    for number, attempt in enumerate(attempts):
        if attempt.delivered:
            entries.append(LoggedAttempt(attempt, WebhookOutcome.DELIVERED, None))
        elif number + 1 < len(attempts):
            entries.append(LoggedAttempt(attempt, WebhookOutcome.RETRYING, attempts[number + 1].at))
        elif outcome is WebhookOutcome.FAILED:
            entries.append(LoggedAttempt(attempt, WebhookOutcome.FAILED, None))
        else:
            entries.append(LoggedAttempt(attempt, WebhookOutcome.RETRYING, next_attempt_at))
    return entries


class WebhookPoster:
    """POSTs signed bodies to receivers someone else chose, safely."""

    def __init__(
        self,
        outbound: OutboundPolicy,
        *,
        timeout: float = 10.0,
        user_agent: str = USER_AGENT,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbound = outbound
        self.timeout = timeout
        self.user_agent = user_agent
        self._client = client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._owns_client = client is None
        self._clock = clock

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def headers(
        self, secret: str, body: bytes, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The signed headers for `body`, now, with `extra` ones (an event id, an event name)."""
        return {
            **signed_headers(secret, body, now=self._clock()),
            "User-Agent": self.user_agent,
            **(extra or {}),
        }

    async def post(
        self, url: str, secret: str, body: bytes, *, headers: Mapping[str, str] | None = None
    ) -> Attempt:
        """One signed POST of `body` to `url`; never raises for what the receiver (or the
        network, or the guard) did: that is the `Attempt`."""
        at = datetime.fromtimestamp(self._clock(), UTC)
        try:
            response = await self.outbound.post(
                self._client,
                url,
                content=body,
                headers=self.headers(secret, body, headers),
                timeout=self.timeout,
            )
        except TargetRefused as refused:
            return Attempt(at, error=ErrorClass.ADDRESS_REFUSED, refusal=refused.reason)
        except httpx.HTTPError as exc:
            # The class only is kept: the socket's words would tell a receiver what listens where.
            log.info("webhook to %s: %r", httpx.URL(url).host, exc)
            return Attempt(at, error=classify(exc))
        request_id = response.headers.get("X-Request-Id")
        if response.is_success:
            return Attempt(at, status_code=response.status_code, request_id=request_id)
        return Attempt(
            at,
            status_code=response.status_code,
            error=classify(response),
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            request_id=request_id,
        )

    async def deliver(
        self,
        url: str,
        secret: str,
        body: bytes,
        *,
        policy: RetryPolicy,
        headers: Mapping[str, str] | None = None,
        sleep: Sleep | None = None,
    ) -> list[Attempt]:
        """One round of attempts (`retry_round`); every attempt made, the last one deciding."""
        made: list[Attempt] = []

        async def once() -> Attempt:
            attempt = await self.post(url, secret, body, headers=headers)
            made.append(attempt)
            return attempt

        await retry_round(
            once,
            policy,
            retryable=lambda a: a.retryable,
            retry_after=lambda a: a.retry_after,
            sleep=sleep,
        )
        return made


__all__ = ["USER_AGENT", "Attempt", "LoggedAttempt", "WebhookPoster", "log_entries"]
