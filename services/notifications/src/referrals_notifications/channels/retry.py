"""Retrying a delivery: transient failures again, with exponential backoff and jitter.

`deliver_with_retry` runs one delivery attempt after another (tenacity) until it succeeds, fails
permanently, or the attempts run out, and reports how many attempts were made and the last error:
what `notification.sent` / `notification.failed` (`attempts`, `error_code`) need. The wait before
attempt n+1 is `base_delay * 2**(n-1)` plus a random jitter of up to `base_delay`, capped at
`max_delay`, so many failing notifications do not retry in lockstep.

Only `DeliveryError`s are outcomes. Any other exception is a bug in a channel and propagates
untouched, unretried, to the caller (whose own retry and dead-letter handling then apply).

Retries here are short and in-process: they ride out a blip (a greylisting SMTP server, a provider
restarting). Longer outages are the consumer's business: the failed notification is recorded and
the event is not lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .base import DeliveryError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, DeliveryError, float], None]
"""Called before each wait with the attempt that failed, its error and the seconds to wait."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: `attempts` in all (1 = no retry), waits from `base_delay` seconds."""

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")


@dataclass(frozen=True, slots=True)
class DeliveryOutcome(Generic[T]):
    """What came of a delivery: the result, or the last error; and the attempts it took."""

    attempts: int
    result: T | None = None
    error: DeliveryError | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.transient


def _report(on_retry: OnRetry | None) -> Callable[[RetryCallState], None] | None:
    if on_retry is None:
        return None

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(error, DeliveryError):
            on_retry(state.attempt_number, error, wait)

    return before_sleep


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
    policy = policy or RetryPolicy()
    options: dict[str, object] = {}
    if sleep is not None:
        options["sleep"] = sleep
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential_jitter(
            multiplier=policy.base_delay, max=policy.max_delay, jitter=policy.base_delay
        ),
        retry=retry_if_exception(_transient),
        before_sleep=_report(on_retry),
        reraise=True,
        **options,  # type: ignore[arg-type]
    )
    attempts = 0
    result: T | None = None
    try:
        async for trial in retrying:
            with trial:
                attempts = trial.retry_state.attempt_number
                result = await attempt()
    except DeliveryError as error:
        return DeliveryOutcome(attempts=attempts, error=error)
    return DeliveryOutcome(attempts=attempts, result=result)


__all__ = ["DeliveryOutcome", "RetryPolicy", "deliver_with_retry"]
