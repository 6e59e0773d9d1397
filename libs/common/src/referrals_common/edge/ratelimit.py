"""Who may send how much: rate limits per caller and per address, and lockout after failed
authentications, counted with the `limits` library's moving windows in this process's memory.

    limits = RateLimits(settings.rate_limit)
    limits.locked_out("203.0.113.7", "key:4fTq9ZkLm2Xa")   # seconds to wait, or None
    limits.failed("203.0.113.7", "key:4fTq9ZkLm2Xa")       # a failed authentication

Every method answers `None` when the request may go on, or the whole seconds the caller must
wait (`Retry-After`): until the oldest request of the full window leaves it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from referrals_common.settings import RateLimitSettings


class _SweptInline(MemoryStorage):
    """The `limits` library's memory storage, its expired entries swept in the caller's thread at
    most once a second, instead of by a new timer thread after (almost) every request.

    The library (pinned) starts a `threading.Timer` of 10 ms whenever one is not running, so an
    API serving requests more than 10 ms apart started a thread per request, and that thread
    scanned every key: measured, 600-1,000 µs of CPU a request (5 to 200 keys, one request every
    12 ms) against ~200 here. The sweep only gives memory back: a window's decision reads the
    entries' own times, expired or not (`acquire_entry`, `get_moving_window`). The hook is the
    library's private `__schedule_expiry`, which every counting method calls; a test fails if
    a version stops calling it or a hit starts a thread again."""

    SWEEP_EVERY_S = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY_S
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class RateLimits:
    """The moving windows of one API process: requests per caller (`per_client`), requests
    per address that do not authenticate (`per_ip`), failed authentications per address and
    per credential and address (lockout).

    A credential is `key:<key id>` (the public part of an API key) or `case:<case id>` (a
    case token's subject). Lockout of a credential is counted per address: an attacker who
    hammers a victim's key id locks that key id out for the attacker's address only, and the
    victim, calling from its own address, is never refused for it.
    """

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._windows = MovingWindowRateLimiter(_SweptInline())
        self._per_client: RateLimitItem = parse(settings.per_client)
        self._per_ip: RateLimitItem = parse(settings.per_ip)
        self._failures_per_ip: RateLimitItem = parse(settings.failed_authentications_per_ip)
        self._failures_per_credential: RateLimitItem = parse(
            settings.failed_authentications_per_credential
        )

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _wait(self, item: RateLimitItem, *identifiers: str) -> int:
        reset_at = self._windows.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset_at - time.time()))

    def _test(self, item: RateLimitItem, *identifiers: str) -> int | None:
        if not self.enabled or self._windows.test(item, *identifiers):
            return None
        return self._wait(item, *identifiers)

    def _hit(self, item: RateLimitItem, *identifiers: str) -> int | None:
        if not self.enabled or self._windows.hit(item, *identifiers):
            return None
        return self._wait(item, *identifiers)

    # ------------------------------------------------------------------ lockout
    def locked_out(self, ip: str, credential: str | None = None) -> int | None:
        """Seconds `ip` must wait before trying again, after too many failed authentications
        from it, or naming `credential` from it; None when it is not locked out."""
        wait = self._test(self._failures_per_ip, "failed-ip", ip)
        if wait is None and credential is not None:
            wait = self._test(self._failures_per_credential, "failed-credential", credential, ip)
        return wait

    def failed(self, ip: str, credential: str | None = None) -> None:
        """Count one failed authentication from `ip` (naming `credential`, if it named one)."""
        self._hit(self._failures_per_ip, "failed-ip", ip)
        if credential is not None:
            self._hit(self._failures_per_credential, "failed-credential", credential, ip)

    # -------------------------------------------------------------- request rate
    def client_exhausted(self, credential: str) -> int | None:
        """Seconds to wait if `credential` has spent its requests (nothing is spent)."""
        return self._test(self._per_client, "client", credential)

    def spend_client(self, credential: str) -> int | None:
        """Spend one request of authenticated `credential`; seconds to wait when none is left."""
        return self._hit(self._per_client, "client", credential)

    def ip_exhausted(self, ip: str) -> int | None:
        """Seconds to wait if `ip` has spent its unauthenticated requests (nothing is spent)."""
        return self._test(self._per_ip, "ip", ip)

    def spend_ip(self, ip: str) -> int | None:
        """Spend one unauthenticated request of `ip`; seconds to wait when none is left."""
        return self._hit(self._per_ip, "ip", ip)
