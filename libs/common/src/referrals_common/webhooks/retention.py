"""Retention of webhook delivery logs: settled rows older than a configurable age are deleted,
in bounded batches, by the long-running process that already does periodic work (partners'
scheduler, notifications' sender; intake's consumer as the front end's log grows).

Only what is over is ever deleted: each log says which of its rows are settled (delivered, given
up, cancelled, skipped), and a row still pending a retry is never touched, however old. Each
batch is its own short transaction (`DELETE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP
LOCKED)`), so pruning a large backlog never holds many locks nor one long transaction, and two
processes pruning side by side skip each other's rows. What was deleted is counted in
`referrals_webhook_log_pruned_total{service, log}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from referrals_common.db import Database
from referrals_common.metrics import WEBHOOK_LOG_PRUNED, service_name

log = logging.getLogger(__name__)


class RetentionSettings(BaseModel):
    """How long settled delivery-log rows are kept, and how the pruning goes."""

    retention_days: float = Field(
        30.0, gt=0, description="settled delivery-log rows older than this are deleted"
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="rows deleted per transaction")
    max_batches: int = Field(
        20, ge=1, description="batches per pruning round (the rest waits for the next round)"
    )
    interval_seconds: float = Field(300.0, gt=0, description="how often a process prunes")

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)


async def delete_batch(
    session: AsyncSession,
    model: Any,
    *,
    settled: ColumnElement[bool],
    age: Any,
    older_than: datetime,
    limit: int,
) -> int:
    """Delete up to `limit` rows of `model` that are `settled` and whose `age` column is before
    `older_than` (oldest first, skipping rows another transaction holds); how many."""
    table = model.__table__
    (key,) = table.primary_key.columns
    victims = (
        select(key)
        .where(settled, age < older_than)
        .order_by(age)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    # A DELETE's result is a cursor result (it has a row count).
    result = cast(
        "CursorResult[Any]",
        await session.execute(delete(table).where(key.in_(victims.scalar_subquery()))),
    )
    return int(result.rowcount or 0)


class LogPruner:
    """Prunes one delivery log at most every `interval_seconds`, in bounded batches."""

    def __init__(
        self,
        db: Database,
        model: Any,
        *,
        name: str,
        settled: ColumnElement[bool],
        age: Any,
        settings: RetentionSettings | None = None,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.model = model
        self.name = name
        self.settled = settled
        self.age = age
        self.settings = settings or RetentionSettings()
        self.clock = clock
        self._monotonic = monotonic
        self._last: float | None = None

    async def prune(self) -> int:
        """Delete settled rows older than the retention, batch after batch (each committed),
        until a batch comes back short or `max_batches` were made; how many in all."""
        cutoff = self.clock() - self.settings.retention
        total = 0
        for _ in range(self.settings.max_batches):
            async with self.db.unit_of_work() as uow:
                deleted = await delete_batch(
                    uow.session,
                    self.model,
                    settled=self.settled,
                    age=self.age,
                    older_than=cutoff,
                    limit=self.settings.batch_size,
                )
                await uow.commit()
            total += deleted
            if deleted:
                WEBHOOK_LOG_PRUNED.labels(service_name(), self.name).inc(deleted)
            if deleted < self.settings.batch_size:
                break
        if total:
            log.info("pruned %d rows of the %s older than %s", total, self.name, cutoff)
        return total

    async def prune_if_due(self) -> int:
        """`prune` when `interval_seconds` passed since the last time (at once the first time)."""
        now = self._monotonic()
        if self._last is not None and now - self._last < self.settings.interval_seconds:
            return 0
        self._last = now
        return await self.prune()


__all__ = ["LogPruner", "RetentionSettings", "delete_batch"]
