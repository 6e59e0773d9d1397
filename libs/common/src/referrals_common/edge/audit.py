"""Failed authentications, counted in memory and written to the access audit as one row per
credential (or address) and window, not one row per attempt.

A flood of forged keys used to add a row per attempt to `access_audit`; now the API process
counts them per `(actor, source address)` and writes, once per window, one summary each:

    actor   center:4fTq9ZkLm2Xa                (what the service calls the presenter)
    action  failed_authentication x500 from 203.0.113.7
    outcome denied

Bounded whatever an attacker sends: past `max_actors_per_source` actors from one address (a
stream of made-up key ids) the rest of that address's window is counted under `<kind>:*`, and
past `max_entries` entries everything else under `<kind>:*` from `*`. Attempts refused while
locked out are summarised the same way (`refused_while_locked_out x<n> from <address>`). Denied
calls of *authenticated* callers (another case, another center) are not failures: they are still
audited per call by the services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

FAILED = "failed_authentication"
LOCKED_OUT = "refused_while_locked_out"
ACTION_MAX = 120


@dataclass(frozen=True)
class FailureSummary:
    """`count` attempts of one kind by `actor` from `source` between `first_at` and `last_at`."""

    actor: str
    source: str
    kind: str
    count: int
    first_at: datetime
    last_at: datetime

    @property
    def action(self) -> str:
        """The audit row's action: `failed_authentication x<count> from <source>`."""
        return f"{self.kind} x{self.count} from {self.source}"[:ACTION_MAX]


AuditSink = Callable[[Sequence[FailureSummary]], Awaitable[None]]
"""Writes summaries to a service's access audit (one row each), in one transaction."""


@dataclass
class _Tally:
    count: int
    first_at: datetime
    last_at: datetime


class FailedAuthentications:
    """Counts of failed authentications per `(actor, source, kind)` for the current window;
    `flush()` hands the finished windows (or, on shutdown, everything) to the sink."""

    def __init__(
        self,
        window_seconds: float,
        *,
        max_entries: int = 200,
        max_actors_per_source: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self.max_actors_per_source = max_actors_per_source
        self._clock = clock
        self._window_started = clock()
        self._current: dict[tuple[str, str, str], _Tally] = {}
        self._finished: list[FailureSummary] = []
        self.sink: AuditSink | None = None

    def _roll(self) -> None:
        if self._clock() - self._window_started < self.window_seconds:
            return
        self._finished.extend(self._summaries(self._current))
        self._current = {}
        self._window_started = self._clock()

    @staticmethod
    def _summaries(tallies: dict[tuple[str, str, str], _Tally]) -> list[FailureSummary]:
        return [
            FailureSummary(actor, source, kind, t.count, t.first_at, t.last_at)
            for (actor, source, kind), t in tallies.items()
        ]

    def _slot(self, actor: str, source: str, kind: str) -> tuple[str, str, str]:
        key = (actor, source, kind)
        if key in self._current:
            return key
        folded_actor = actor.split(":", 1)[0] + ":*"
        if len(self._current) >= self.max_entries:
            return (folded_actor, "*", kind)
        actors_here = sum(1 for a, s, _ in self._current if s == source)
        if actors_here >= self.max_actors_per_source:
            return (folded_actor, source, kind)
        return key

    def add(self, actor: str, source: str, kind: str = FAILED) -> None:
        """Count one attempt of `kind` by `actor` from `source`."""
        self._roll()
        now = datetime.now(UTC)
        key = self._slot(actor, source, kind)
        tally = self._current.get(key)
        if tally is None:
            self._current[key] = _Tally(1, now, now)
        else:
            tally.count += 1
            tally.last_at = now

    @property
    def due(self) -> bool:
        """Whether a finished window waits to be written."""
        self._roll()
        return bool(self._finished)

    def take(self, *, everything: bool = False) -> list[FailureSummary]:
        """The finished windows' summaries (with `everything`, the current one's too), which
        are forgotten here."""
        self._roll()
        taken, self._finished = self._finished, []
        if everything:
            taken.extend(self._summaries(self._current))
            self._current = {}
            self._window_started = self._clock()
        return taken

    def give_back(self, summaries: Sequence[FailureSummary]) -> None:
        """Keep summaries a sink could not write, for the next flush (at most `max_entries`)."""
        self._finished = (list(summaries) + self._finished)[: self.max_entries]

    async def flush(self, *, everything: bool = False) -> int:
        """Write the finished windows (with `everything`, all counts) through the sink; the
        number of rows written. Nothing is lost when the sink fails: it is tried again."""
        if self.sink is None:
            return 0
        summaries = self.take(everything=everything)
        if not summaries:
            return 0
        try:
            await self.sink(summaries)
        except Exception:
            log.warning("failed authentications not audited yet; retried later", exc_info=True)
            self.give_back(summaries)
            return 0
        return len(summaries)
