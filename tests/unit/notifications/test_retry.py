"""The retry helper: transient errors again with growing, jittered waits; permanent ones never."""

from __future__ import annotations

import pytest

from referrals_common.contracts.notifications import NotificationError
from referrals_notifications.channels.base import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from referrals_notifications.channels.retry import RetryPolicy, deliver_with_retry

pytestmark = pytest.mark.unit


class Flaky:
    """An attempt that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def busy() -> TransientDeliveryError:
    return TransientDeliveryError(NotificationError.PROVIDER_UNAVAILABLE, "451 try later")


async def test_success_at_once_is_one_attempt() -> None:
    attempt, sleeps = Flaky(), Sleeps()
    outcome = await deliver_with_retry(attempt, RetryPolicy(attempts=3), sleep=sleeps)
    assert outcome.delivered and outcome.result == "ok"
    assert outcome.attempts == 1 and attempt.calls == 1
    assert outcome.error is None and sleeps.waits == []


async def test_transient_errors_are_retried_until_success() -> None:
    attempt, sleeps = Flaky(busy(), busy()), Sleeps()
    outcome = await deliver_with_retry(attempt, RetryPolicy(attempts=5), sleep=sleeps)
    assert outcome.delivered and outcome.result == "ok"
    assert outcome.attempts == 3 and attempt.calls == 3
    assert len(sleeps.waits) == 2


async def test_a_permanent_error_is_not_retried() -> None:
    refused = PermanentDeliveryError(NotificationError.INVALID_RECIPIENT, "550 no such user")
    attempt, sleeps = Flaky(busy(), refused, busy()), Sleeps()
    outcome = await deliver_with_retry(attempt, RetryPolicy(attempts=5), sleep=sleeps)
    assert not outcome.delivered and outcome.result is None
    assert outcome.attempts == 2 and attempt.calls == 2
    assert outcome.error is refused
    assert outcome.error.code is NotificationError.INVALID_RECIPIENT


async def test_when_attempts_run_out_the_last_error_is_reported() -> None:
    last = TransientDeliveryError(NotificationError.TIMEOUT, "third")
    attempt, sleeps = Flaky(busy(), busy(), last, busy()), Sleeps()
    outcome = await deliver_with_retry(attempt, RetryPolicy(attempts=3), sleep=sleeps)
    assert not outcome.delivered
    assert outcome.attempts == 3 and attempt.calls == 3
    assert outcome.error is last and outcome.error.code is NotificationError.TIMEOUT
    assert len(sleeps.waits) == 2


async def test_one_attempt_means_no_retry() -> None:
    attempt, sleeps = Flaky(busy()), Sleeps()
    outcome = await deliver_with_retry(attempt, RetryPolicy(attempts=1), sleep=sleeps)
    assert outcome.attempts == 1 and not outcome.delivered and sleeps.waits == []


async def test_waits_grow_exponentially_with_bounded_jitter() -> None:
    attempt, sleeps = Flaky(busy(), busy(), busy(), busy()), Sleeps()
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=60)
    await deliver_with_retry(attempt, policy, sleep=sleeps)
    assert len(sleeps.waits) == 4
    for n, wait in enumerate(sleeps.waits):
        floor = 0.5 * 2**n
        assert floor <= wait <= floor + 0.5, (n, wait)


async def test_waits_are_capped() -> None:
    attempt, sleeps = Flaky(*[busy() for _ in range(6)]), Sleeps()
    await deliver_with_retry(
        attempt, RetryPolicy(attempts=7, base_delay=1, max_delay=3), sleep=sleeps
    )
    assert all(wait <= 3 for wait in sleeps.waits)
    assert sleeps.waits[-1] == 3


async def test_jitter_spreads_the_waits() -> None:
    firsts = set()
    for _ in range(20):
        sleeps = Sleeps()
        await deliver_with_retry(Flaky(busy()), RetryPolicy(attempts=2), sleep=sleeps)
        firsts.add(sleeps.waits[0])
    assert len(firsts) > 1


async def test_on_retry_hears_each_failed_attempt() -> None:
    heard: list[tuple[int, NotificationError, float]] = []
    attempt, sleeps = Flaky(busy(), busy()), Sleeps()
    await deliver_with_retry(
        attempt,
        RetryPolicy(attempts=4),
        sleep=sleeps,
        on_retry=lambda n, error, wait: heard.append((n, error.code, wait)),
    )
    assert [(n, code) for n, code, _ in heard] == [
        (1, NotificationError.PROVIDER_UNAVAILABLE),
        (2, NotificationError.PROVIDER_UNAVAILABLE),
    ]
    assert [wait for _, _, wait in heard] == sleeps.waits


async def test_a_bug_is_not_a_delivery_failure() -> None:
    attempt, sleeps = Flaky(busy(), KeyError("bug")), Sleeps()
    with pytest.raises(KeyError):
        await deliver_with_retry(attempt, RetryPolicy(attempts=5), sleep=sleeps)
    assert attempt.calls == 2


def test_delivery_errors_know_whether_to_retry() -> None:
    assert busy().transient is True
    assert PermanentDeliveryError(NotificationError.REJECTED, "no").transient is False
    assert isinstance(busy(), DeliveryError)


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"base_delay": -1}, {"base_delay": 10, "max_delay": 1}]
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"attempts|delay"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
