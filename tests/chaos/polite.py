"""HTTP calls that wait out an outage, as a real front end or center system would.

A connection refused or reset, a timeout, 429 or a 5xx is retried with capped exponential
backoff and jitter until the call's deadline; any other answer is returned to the caller, who
judges it. Every retry is counted, so a test can show how hard its clients had to try.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class GaveUp(RuntimeError):
    """The call kept failing until its deadline."""


class Retries:
    """How often calls were retried, and why (`"POST /v1/cases: ConnectError"` → count)."""

    def __init__(self) -> None:
        self.by_cause: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_cause.values())


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    retries: Retries,
    deadline: float,
    label: str = "",
    **kwargs: Any,
) -> httpx.Response:
    """`client.request(method, url, **kwargs)`, retried politely until `deadline` (a
    `time.monotonic()` value); returns the first answer that is not worth retrying."""
    backoff = 0.25
    what = label or f"{method} {url}"
    while True:
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            cause = type(exc).__name__
        else:
            if response.status_code not in RETRIED_STATUSES:
                return response
            cause = str(response.status_code)
        retries.by_cause[f"{what}: {cause}"] += 1
        if time.monotonic() + backoff > deadline:
            raise GaveUp(f"{what}: still failing ({cause}) at the deadline")
        await asyncio.sleep(backoff * random.uniform(0.6, 1.0))
        backoff = min(backoff * 2, 3.0)


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    """The response if its status is one of `statuses`, else an error naming the call."""
    if response.status_code not in statuses:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} → {response.status_code}: "
            f"{response.text[:300]}"
        )
    return response
