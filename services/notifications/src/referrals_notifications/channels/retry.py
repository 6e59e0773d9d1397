"""Retrying a delivery: transient failures again, with exponential backoff and jitter.

`deliver_with_retry` makes one round of attempts of any channel (e-mail, SMS, webhook) under the
platform's one retry policy (`referrals_common.webhooks.policy`: `RetryPolicy`, `retry_round`,
over tenacity), and reports how many attempts were made and the last error: what
`notification.sent` / `notification.failed` (`attempts`, `error_code`) need. The wait before
attempt n+1 is `base_delay * 2**(n-1)` plus a random jitter of up to `base_delay`, capped at
`max_delay`, so many failing notifications do not retry in lockstep; a receiver's `Retry-After`
is honoured (one longer than a quick retry ends the round).

Only `DeliveryError`s are outcomes. Any other exception is a bug in a channel and propagates
untouched, unretried, to the caller (whose own retry and dead-letter handling then apply).

Retries here are short and in-process: they ride out a blip (a greylisting SMTP server, a provider
restarting). Longer outages are the sender's rounds (`RetryPolicy.settle`): the failed
notification stays pending and the event is not lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from referrals_common.webhooks import RetryPolicy, retry_round
from referrals_common.webhooks.policy import Sleep

from .base import DeliveryError

T = TypeVar("T")

OnRetry = Callable[[int, DeliveryError, float], None]
"""Called before each wait with the attempt that failed, its error and the seconds to wait."""


@dataclass(frozen=True, slots=True)
class DeliveryOutcome(Generic[T]):
    """What came of a delivery: the result, or the last error; and the attempts it took."""

    attempts: int
    result: T | None = None
    error: DeliveryError | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


def _transient(outcome: object) -> bool:
    return isinstance(outcome, DeliveryError) and outcome.transient


def _retry_after(outcome: object) -> float | None:
    return outcome.retry_after if isinstance(outcome, DeliveryError) else None


async def deliver_with_retry(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy | None = None,
    *,
    sleep: Sleep | None = None,
    on_retry: OnRetry | None = None,
) -> DeliveryOutcome[T]:
    """Runs `attempt` until it succeeds, fails permanently or `policy.attempts` are used up.

    `sleep` replaces `asyncio.sleep` (tests pass one that records the waits).
    """

    async def caught() -> T | DeliveryError:
        try:
            return await attempt()
        except DeliveryError as error:
            return error

    def heard(number: int, outcome: T | DeliveryError, wait: float) -> None:
        if on_retry is not None and isinstance(outcome, DeliveryError):
            on_retry(number, outcome, wait)

    # The first attempt alone: almost every message goes at once, and the round's machinery
    # (tenacity's retrying object, its call state, its strategies: ~40 us) is only needed once
    # it did not. The round then starts from that attempt's outcome, as if it had made it.
    first = await caught()
    if not _transient(first):
        if isinstance(first, DeliveryError):
            return DeliveryOutcome(attempts=1, error=first)
        return DeliveryOutcome(attempts=1, result=first)
    made = False

    async def again() -> T | DeliveryError:
        nonlocal made
        if not made:
            made = True
            return first
        return await caught()

    last, attempts = await retry_round(
        again,
        policy or RetryPolicy(),
        retryable=_transient,
        retry_after=_retry_after,
        sleep=sleep,
        on_retry=heard,
    )
    if isinstance(last, DeliveryError):
        return DeliveryOutcome(attempts=attempts, error=last)
    return DeliveryOutcome(attempts=attempts, result=last)


__all__ = ["DeliveryOutcome", "RetryPolicy", "deliver_with_retry"]
