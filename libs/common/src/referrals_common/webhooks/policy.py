"""The one retry policy of every webhook (and of every notification channel): when to try again,
how long to wait, when to give up.

A delivery is tried in **rounds**. Within a round, a retryable failure is tried again at once a
few times (`attempts`, waits `base_delay * 2**(n-1)` plus a jitter of up to `base_delay`, capped
at `max_delay`: tenacity's `wait_exponential_jitter`), which rides out a blip. A round that ends
in a retryable failure leaves the delivery pending for the next round, `round_backoff * 2**(r-1)`
seconds later (30 s, 60 s, 120 s, 240 s by default); after `rounds` rounds it is given up.

Retryable: no answer at all (a timeout, a refused or dropped connection, a broken TLS handshake,
a protocol error) and the statuses 408, 425, 429 and every 5xx. Anything else (another 4xx, a
3xx: redirects are never followed, an address the outbound guard refuses) fails at once: trying
again cannot help.

A receiver that answers with `Retry-After` (seconds, or an HTTP date) is not called again before
it: a wait it asks for that is longer than a quick retry ends the round, and the next round is
not before it either (capped at `max_retry_after`, so a receiver cannot park a delivery forever).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypedDict, TypeVar

from pydantic import BaseModel, Field
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    wait_exponential_jitter,
)

from referrals_common.contracts.notifications import WebhookOutcome
from referrals_common.outbound import ErrorClass

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


class _SleepOption(TypedDict, total=False):
    """`AsyncRetrying`'s `sleep`, passed only when given (else tenacity's own)."""

    sleep: Sleep


RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx statuses that mean "not now" rather than "never"; every 5xx is retryable too."""

RETRYABLE_ERRORS = frozenset(
    {
        ErrorClass.CONNECT_FAILED,
        ErrorClass.TIMEOUT,
        ErrorClass.TLS_ERROR,
        ErrorClass.PROTOCOL_ERROR,
    }
)
"""Failures without an answer that may pass; a refused address or a 3xx/4xx will not."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth retrying: 408, 425, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or status >= 500


def is_retryable(status_code: int | None, error: ErrorClass | None) -> bool:
    """Whether a failed attempt (its status if it got an answer, its error class) may be
    retried; a delivered one (no error) is not a failure."""
    if error is None:
        return False
    if status_code is not None:
        return is_retryable_status(status_code)
    return error in RETRYABLE_ERRORS


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP
    date), never negative; None when there is none or it cannot be read."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What becomes of a delivery after a round: delivered, retrying in `delay` seconds, or
    failed for good."""

    outcome: WebhookOutcome
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: `attempts` in a row per round (1 = no quick retry), waits from
    `base_delay` seconds capped at `max_delay`; `rounds` rounds, `round_backoff` seconds after
    the first, doubling; a receiver's `Retry-After` honoured up to `max_retry_after`."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 4.0
    rounds: int = 5
    round_backoff: float = 30.0
    max_retry_after: float = 3600.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.rounds < 1:
            raise ValueError("attempts and rounds must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.round_backoff <= 0 or self.max_retry_after < 0:
            raise ValueError("need round_backoff > 0 and max_retry_after >= 0")

    def rounds_done(self, attempts: int) -> int:
        """The rounds `attempts` attempts made (a round cut short still counts as one)."""
        return math.ceil(max(attempts, 0) / self.attempts)

    def round_delay(self, rounds_done: int, retry_after: float | None = None) -> float:
        """The wait before the next round after `rounds_done` rounds, and not before the
        receiver's `Retry-After` (capped)."""
        delay: float = self.round_backoff * 2 ** max(rounds_done - 1, 0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def settle(
        self,
        *,
        attempts: int,
        delivered: bool,
        retryable: bool,
        retry_after: float | None = None,
    ) -> Settlement:
        """The delivery's fate after its latest round, `attempts` attempts in all."""
        if delivered:
            return Settlement(WebhookOutcome.DELIVERED)
        rounds = self.rounds_done(attempts)
        if not retryable or rounds >= self.rounds:
            return Settlement(WebhookOutcome.FAILED)
        return Settlement(WebhookOutcome.RETRYING, self.round_delay(rounds, retry_after))


class WebhookRetrySettings(BaseModel):
    """The retry policy as configuration (environment variables `…__QUICK_ATTEMPTS` etc.)."""

    quick_attempts: int = Field(3, ge=1, description="tries in a row before waiting a round")
    quick_backoff_seconds: float = Field(0.5, gt=0, description="first quick wait, doubling")
    max_rounds: int = Field(5, ge=1, description="rounds before the delivery is given up")
    round_backoff_seconds: float = Field(30.0, gt=0, description="first round's wait, doubling")
    max_retry_after_seconds: float = Field(
        3600.0, ge=0, description="the longest `Retry-After` a receiver may ask for"
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.quick_attempts,
            base_delay=self.quick_backoff_seconds,
            max_delay=self.quick_backoff_seconds * 8,
            rounds=self.max_rounds,
            round_backoff=self.round_backoff_seconds,
            max_retry_after=self.max_retry_after_seconds,
        )


async def retry_round(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[T], bool],
    retry_after: Callable[[T], float | None] = lambda _: None,
    sleep: Sleep | None = None,
    on_retry: Callable[[int, T, float], None] | None = None,
) -> tuple[T, int]:
    """One round: call `attempt` until its result is not `retryable`, `policy.attempts` calls
    were made, or the receiver asked to wait longer than a quick retry. Returns the last result
    and the number of calls. An exception `attempt` raises is not an outcome (a bug): it
    propagates, unretried.

    `sleep` replaces `asyncio.sleep` (tests record the waits); `on_retry` hears each failed
    attempt before its wait (its number, its result, the seconds to wait)."""
    jittered = wait_exponential_jitter(
        multiplier=policy.base_delay, max=policy.max_delay, jitter=policy.base_delay
    )

    def asked(state: RetryCallState) -> float | None:
        if state.outcome is None or state.outcome.failed:
            return None
        return retry_after(state.outcome.result())

    def wait(state: RetryCallState) -> float:
        return max(jittered(state), asked(state) or 0.0)

    def stop(state: RetryCallState) -> bool:
        wanted = asked(state)
        return state.attempt_number >= policy.attempts or (
            wanted is not None and wanted > policy.max_delay
        )

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.outcome.result(), state.next_action.sleep)

    options: _SleepOption = {} if sleep is None else {"sleep": sleep}
    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_result(retryable),
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
        **options,
    )
    calls = 0

    async def counted() -> T:
        nonlocal calls
        calls += 1
        return await attempt()

    result: T = await retrying(counted)
    return result, calls


__all__ = [
    "RETRYABLE_ERRORS",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "Settlement",
    "WebhookRetrySettings",
    "is_retryable",
    "is_retryable_status",
    "retry_after_seconds",
    "retry_round",
]
