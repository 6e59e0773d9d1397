"""The platform's one webhook component (referrals_common.webhooks): the signature receivers
verify, the outbound guard before every request, the one retry policy (which failures are
retried, how long to wait, `Retry-After`, when to give up) and the delivery log's record."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from referrals_common.outbound import ErrorClass, IPAddress, OutboundPolicy
from referrals_common.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Attempt,
    InvalidSignature,
    RetryPolicy,
    WebhookOutcome,
    WebhookPoster,
    WebhookRetrySettings,
    is_retryable,
    log_entries,
    retry_after_seconds,
    retry_round,
    signature,
    verify,
)

pytestmark = pytest.mark.unit

NOW = 1_776_250_800
SECRET = "whsec_" + "k" * 40
BODY = b'{"type":"referrals.referral.offered.v1","data":{"x":"\xd1\x97"}}'
PUBLIC = ipaddress.ip_address("93.184.215.14")


# --- the signature -------------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """Byte for byte what receivers already verify: changing it would break every receiver."""
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, NOW, BODY) == f"sha256={expected}"
    verify(SECRET, BODY, str(NOW), f"sha256={expected}", now=NOW + 1)


@pytest.mark.parametrize("timestamp", ["+1776250800", " 1776250800", "١٧٧٦٢٥٠٨٠٠", "1776250800.0"])
def test_a_timestamp_that_is_not_plain_ascii_digits_is_refused(timestamp: str) -> None:
    with pytest.raises(InvalidSignature, match="not an integer"):
        verify(SECRET, BODY, timestamp, signature(SECRET, NOW, BODY), now=NOW)


def test_a_changed_body_or_an_old_timestamp_is_refused() -> None:
    header = signature(SECRET, NOW, BODY)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(SECRET, BODY + b" ", str(NOW), header, now=NOW)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(SECRET, BODY, str(NOW), header, now=NOW + 301)


# --- which failures are retried ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (None, ErrorClass.CONNECT_FAILED, True),
        (None, ErrorClass.TIMEOUT, True),
        (None, ErrorClass.TLS_ERROR, True),
        (None, ErrorClass.PROTOCOL_ERROR, True),
        (None, ErrorClass.ADDRESS_REFUSED, False),
        (408, ErrorClass.HTTP_4XX, True),
        (425, ErrorClass.HTTP_4XX, True),
        (429, ErrorClass.HTTP_4XX, True),
        (500, ErrorClass.HTTP_5XX, True),
        (503, ErrorClass.HTTP_5XX, True),
        (400, ErrorClass.HTTP_4XX, False),
        (401, ErrorClass.HTTP_4XX, False),
        (410, ErrorClass.HTTP_4XX, False),
        (307, ErrorClass.HTTP_3XX, False),  # redirects are never followed
        (204, None, False),  # delivered: nothing to retry
    ],
)
def test_which_failures_are_retried(
    status: int | None, error: ErrorClass | None, retryable: bool
) -> None:
    assert is_retryable(status, error) is retryable


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Sun, 06 Dec 2026 12:02:00 GMT", now=now) == 120.0
    assert retry_after_seconds("Sun, 06 Dec 2026 11:00:00 GMT", now=now) == 0.0  # past
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(unreadable, now=now) is None


# --- rounds and giving up ------------------------------------------------------------------------


def test_rounds_back_off_doubling_then_give_up() -> None:
    policy = RetryPolicy(attempts=3, rounds=5, round_backoff=30)
    waits = []
    for attempts in (3, 6, 9, 12):
        settled = policy.settle(attempts=attempts, delivered=False, retryable=True)
        assert settled.outcome is WebhookOutcome.RETRYING
        waits.append(settled.delay)
    assert waits == [30, 60, 120, 240]
    last = policy.settle(attempts=15, delivered=False, retryable=True)
    assert last.outcome is WebhookOutcome.FAILED and last.delay is None


def test_a_permanent_failure_gives_up_at_once_and_a_success_is_delivered() -> None:
    policy = RetryPolicy()
    assert policy.settle(attempts=1, delivered=False, retryable=False).outcome is (
        WebhookOutcome.FAILED
    )
    assert policy.settle(attempts=7, delivered=True, retryable=False).outcome is (
        WebhookOutcome.DELIVERED
    )


def test_a_round_cut_short_counts_as_a_round() -> None:
    policy = RetryPolicy(attempts=3, rounds=2)
    assert policy.rounds_done(1) == 1 and policy.rounds_done(3) == 1 and policy.rounds_done(4) == 2
    assert policy.settle(attempts=4, delivered=False, retryable=True).outcome is (
        WebhookOutcome.FAILED
    )


def test_the_next_round_is_not_before_retry_after_which_is_capped() -> None:
    policy = RetryPolicy(round_backoff=30, max_retry_after=600)
    asked = policy.settle(attempts=3, delivered=False, retryable=True, retry_after=90)
    assert asked.delay == 90
    shorter = policy.settle(attempts=3, delivered=False, retryable=True, retry_after=5)
    assert shorter.delay == 30  # never sooner than the policy's own wait
    greedy = policy.settle(attempts=3, delivered=False, retryable=True, retry_after=86_400)
    assert greedy.delay == 600  # a receiver cannot park a delivery for a day


def test_the_settings_make_the_policy() -> None:
    policy = WebhookRetrySettings(
        quick_attempts=2, quick_backoff_seconds=0.1, max_rounds=4, round_backoff_seconds=10
    ).policy()
    assert policy == RetryPolicy(
        attempts=2, base_delay=0.1, max_delay=0.8, rounds=4, round_backoff=10, max_retry_after=3600
    )


# --- one round (tenacity) -------------------------------------------------------------------------


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def answers(*results: Attempt):  # type: ignore[no-untyped-def]
    queue = list(results)
    calls: list[Attempt] = []

    async def attempt() -> Attempt:
        calls.append(queue.pop(0))
        return calls[-1]

    return attempt, calls


def failed(status: int | None, error: ErrorClass, retry_after: float | None = None) -> Attempt:
    return Attempt(datetime.now(UTC), status, error, retry_after)


OK = Attempt(datetime.now(UTC), 204)


async def _round(attempt, policy: RetryPolicy, sleeps: Sleeps) -> tuple[Attempt, int]:  # type: ignore[no-untyped-def]
    return await retry_round(
        attempt,
        policy,
        retryable=lambda a: a.retryable,
        retry_after=lambda a: a.retry_after,
        sleep=sleeps,
    )


async def test_a_round_retries_a_retryable_failure_until_it_is_delivered() -> None:
    attempt, calls = answers(failed(503, ErrorClass.HTTP_5XX), failed(None, ErrorClass.TIMEOUT), OK)
    sleeps = Sleeps()
    last, made = await _round(attempt, RetryPolicy(attempts=3, base_delay=0.5), sleeps)
    assert last is OK and made == 3 and len(calls) == 3
    assert len(sleeps.waits) == 2 and 0.5 <= sleeps.waits[0] <= 1.0


async def test_a_round_stops_at_a_permanent_failure_and_after_its_attempts() -> None:
    refused = failed(410, ErrorClass.HTTP_4XX)
    attempt, _ = answers(failed(500, ErrorClass.HTTP_5XX), refused, OK)
    last, made = await _round(attempt, RetryPolicy(attempts=5), Sleeps())
    assert last is refused and made == 2
    busy = [failed(500, ErrorClass.HTTP_5XX) for _ in range(4)]
    attempt, _ = answers(*busy)
    last, made = await _round(attempt, RetryPolicy(attempts=3), Sleeps())
    assert last is busy[2] and made == 3


async def test_a_round_waits_as_long_as_the_receiver_asks() -> None:
    attempt, _ = answers(failed(429, ErrorClass.HTTP_4XX, retry_after=3), OK)
    sleeps = Sleeps()
    last, made = await _round(attempt, RetryPolicy(attempts=3, base_delay=0.1, max_delay=4), sleeps)
    assert last is OK and made == 2 and sleeps.waits == [3]


async def test_a_wait_longer_than_a_quick_retry_ends_the_round() -> None:
    later = failed(503, ErrorClass.HTTP_5XX, retry_after=120)
    attempt, _ = answers(later, OK)
    sleeps = Sleeps()
    last, made = await _round(attempt, RetryPolicy(attempts=3, max_delay=4), sleeps)
    assert last is later and made == 1 and sleeps.waits == []  # the next round, not a sleep


async def test_a_bug_in_an_attempt_propagates_unretried() -> None:
    calls = 0

    async def broken() -> Attempt:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await _round(broken, RetryPolicy(attempts=5), Sleeps())
    assert calls == 1


# --- the request: signed, guarded, recorded ------------------------------------------------------


async def _public(host: str, port: int) -> list[IPAddress]:
    return [PUBLIC]


async def _loopback(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("127.0.0.1")]


def poster(
    statuses: list[int], seen: list[httpx.Request], *, resolve=_public, headers=None
) -> WebhookPoster:  # type: ignore[no-untyped-def]
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(statuses.pop(0), headers=headers or {})

    return WebhookPoster(
        OutboundPolicy(require_https=True, resolve=resolve),
        transport=httpx.MockTransport(answer),
        clock=lambda: NOW,
    )


async def test_a_post_is_signed_and_goes_to_the_checked_address() -> None:
    seen: list[httpx.Request] = []
    made = await poster([204], seen).post(
        "https://hooks.center.example/offers", SECRET, BODY, headers={EVENT_ID_HEADER: "e-1"}
    )
    assert made.delivered and made.status_code == 204 and not made.retryable
    assert made.at == datetime.fromtimestamp(NOW, UTC)
    (request,) = seen
    assert str(request.url) == f"https://{PUBLIC}/offers"
    assert request.headers["Host"] == "hooks.center.example"
    assert request.headers[EVENT_ID_HEADER] == "e-1"
    assert request.content == BODY
    verify(
        SECRET,
        request.content,
        request.headers[TIMESTAMP_HEADER],
        request.headers[SIGNATURE_HEADER],
        now=NOW,
    )


async def test_an_internal_address_is_refused_without_a_request_and_not_retried() -> None:
    seen: list[httpx.Request] = []
    made = await poster([204], seen, resolve=_loopback).post(
        "https://hooks.center.example/offers", SECRET, BODY
    )
    assert seen == []
    assert made.error is ErrorClass.ADDRESS_REFUSED and not made.retryable
    assert made.refusal and "public" in made.refusal


async def test_a_busy_receiver_is_recorded_with_its_retry_after() -> None:
    seen: list[httpx.Request] = []
    made = await poster([503], seen, headers={"Retry-After": "7"}).post(
        "https://hooks.center.example/offers", SECRET, BODY
    )
    assert made.error is ErrorClass.HTTP_5XX and made.status_code == 503
    assert made.retryable and made.retry_after == 7


async def test_no_answer_is_a_coarse_class_not_the_socket_words() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    sender = WebhookPoster(
        OutboundPolicy(require_https=True, resolve=_public), transport=httpx.MockTransport(refuse)
    )
    made = await sender.post("https://hooks.center.example/offers", SECRET, BODY)
    assert made.error is ErrorClass.CONNECT_FAILED and made.status_code is None
    assert made.retryable
    assert "Errno" not in repr(made)


async def test_deliver_makes_one_round_and_keeps_every_attempt() -> None:
    seen: list[httpx.Request] = []
    sender = poster([503, 502, 204], seen)
    made = await sender.deliver(
        "https://hooks.center.example/offers",
        SECRET,
        BODY,
        policy=RetryPolicy(attempts=3, base_delay=0, max_delay=0),
        sleep=Sleeps(),
    )
    assert [a.status_code for a in made] == [503, 502, 204]
    assert made[-1].delivered and len(seen) == 3


# --- the delivery log's entries ------------------------------------------------------------------


def test_log_entries_say_what_each_attempt_meant() -> None:
    t0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    first = Attempt(t0, 503, ErrorClass.HTTP_5XX)
    second = Attempt(t0 + timedelta(seconds=1), None, ErrorClass.TIMEOUT)
    next_round = t0 + timedelta(seconds=31)
    retrying = log_entries([first, second], WebhookOutcome.RETRYING, next_round)
    assert [(e.outcome, e.next_attempt_at) for e in retrying] == [
        (WebhookOutcome.RETRYING, second.at),
        (WebhookOutcome.RETRYING, next_round),
    ]
    given_up = log_entries([first, second], WebhookOutcome.FAILED, None)
    assert given_up[-1].outcome is WebhookOutcome.FAILED and given_up[-1].next_attempt_at is None
    done = log_entries([first, Attempt(t0, 204)], WebhookOutcome.DELIVERED, None)
    assert [e.outcome for e in done] == [WebhookOutcome.RETRYING, WebhookOutcome.DELIVERED]
