"""One-time sign-in codes: 6 digits by e-mail (or, for a patient, by text message), stored as
an HMAC with the server's secret, good for `login_code_minutes` and `login_code_attempts` tries,
once. Patients (a code per case) and center staff (a code per staff member) sign in the same
way, each with a store and a namespace of their own, so one's code never opens the other."""

from __future__ import annotations

import secrets
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from referrals_web.models import utcnow
from referrals_web.repository import LoginCode, LoginCodeStore
from referrals_web.sessions import Sessions


class Verdict(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    """Not the code (or no code was sent for these details)."""
    EXPIRED = "expired"
    TOO_MANY = "too_many"


async def issue(
    store: LoginCodeStore, sessions: Sessions, owner_id: UUID, *, namespace: str, minutes: int
) -> str:
    """A new code for `owner_id`, replacing any earlier one (and its tries)."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    await store.put(
        LoginCode(
            owner_id=owner_id,
            code_hash=sessions.keyed_hash(namespace, str(owner_id), code),
            expires_at=utcnow() + timedelta(minutes=minutes),
            attempts=0,
        )
    )
    return code


async def check(
    store: LoginCodeStore,
    sessions: Sessions,
    owner_id: UUID | None,
    typed: str,
    *,
    namespace: str,
    attempts: int,
) -> Verdict:
    """Whether `typed` is the owner's code; each try counts, a right code works once."""
    stored = await store.get(owner_id) if owner_id else None
    if stored is None:
        return Verdict.WRONG
    tries = await store.count_attempt(stored.owner_id)
    if stored.expires_at <= utcnow():
        return Verdict.EXPIRED
    if tries > attempts:
        return Verdict.TOO_MANY
    if not secrets.compare_digest(
        stored.code_hash, sessions.keyed_hash(namespace, str(stored.owner_id), typed)
    ):
        return Verdict.TOO_MANY if attempts - tries <= 0 else Verdict.WRONG
    await store.delete(stored.owner_id)
    return Verdict.OK


class SendLimit:
    """At most `per_hour` codes sent to one owner in any hour (a moving window, in this
    process's memory, like the edge's limits): a text message costs money, and neither a
    patient's phone nor inbox is flooded by someone who knows their details. What happens
    past the limit is the caller's silence, never a different page."""

    def __init__(self, per_hour: int) -> None:
        self._item = parse(f"{per_hour}/hour")
        self._windows = MovingWindowRateLimiter(MemoryStorage())

    def spend(self, owner_id: UUID) -> bool:
        """Count one code for `owner_id`; False (and nothing counted) when its hour is full."""
        return self._windows.hit(self._item, "login-code", str(owner_id))
