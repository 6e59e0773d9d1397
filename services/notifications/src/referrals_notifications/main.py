"""Notifications' processes, on the parts `bootstrap` builds: the consumer (events → delivery
rows) and the sender (rows → e-mail, SMS, webhooks); the outbox relay (`notification.sent`,
`notification.failed`, `notification.webhook_attempted`) is the platform's own
(`referrals-notifications relay`). Notifications has no HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from referrals_common.telemetry import untraced
from referrals_common.webhooks.retention import LogPruner
from referrals_notifications.bootstrap import build_runtime, build_sender
from referrals_notifications.config import NotificationsSettings

if TYPE_CHECKING:
    from referrals_notifications.sender import DueSignal, Sender

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


async def run_sender_loop(
    sender: Sender,
    interval: float,
    stop: asyncio.Event,
    pruner: LogPruner | None = None,
    *,
    due: DueSignal | None = None,
    idle_interval: float = 5.0,
) -> None:
    """Until `stop` is set: send what is due, and (every `pruner`'s interval) prune the front
    ends' webhook delivery log. The next round comes when `due` says a delivery was planned (not
    sooner than `interval` seconds after a round that sent something), when a row the sender put
    off comes due, or after `idle_interval` seconds; without `due`, or while it cannot listen,
    or after a failed round, every `interval` seconds."""
    while not stop.is_set():
        if due is not None:
            due.clear()
        idle, failed = False, False
        try:
            # Polling is not traced; each message sent continues its event's trace.
            with untraced():
                idle = await sender.send_due() == 0
                if pruner is not None:
                    await pruner.prune_if_due()
        except Exception:  # the database may be restarting: log, wait, try again
            log.exception("sender round failed; retrying")
            failed = True  # tried again after `interval`, as before
        if not failed and due is not None and await due.listening():
            if not idle:  # a busy spell's messages gather for `interval`, as they did
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
            await due.wait(_until_due(sender, idle_interval), stop)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def _until_due(sender: Sender, idle_interval: float) -> float:
    """Seconds until a row the sender put off comes due, at most `idle_interval`."""
    if sender.next_due is None:
        return idle_interval
    return max(0.0, min(idle_interval, (sender.next_due - sender.clock()).total_seconds()))


async def run_sender(settings: NotificationsSettings) -> None:
    """The sender role, until SIGTERM or SIGINT."""
    from referrals_common import shutdown
    from referrals_notifications.sender import DueSignal, webhook_log_pruner

    rt = build_runtime(settings)
    sender = build_sender(settings, rt.db)
    due = DueSignal(settings.postgres.asyncpg_dsn())
    stop = shutdown.requested()
    try:
        await run_sender_loop(
            sender,
            settings.sender_interval_seconds,
            stop,
            pruner=webhook_log_pruner(rt.db, settings.webhook_log),
            due=due,
            idle_interval=settings.sender_idle_interval_seconds,
        )
    finally:
        await sender.aclose()
        await due.close()
        await rt.db.dispose()


async def run_consumer(settings: NotificationsSettings) -> None:
    """The consumer process: until SIGTERM or SIGINT."""
    from referrals_common.messaging.consumer import serve_consumer
    from referrals_notifications import consumers

    rt = build_runtime(settings)
    try:
        await serve_consumer(
            "notifications",
            settings.kafka,
            consumers.SUBSCRIBED_TOPICS,
            lambda dead: consumers.build_consumer(rt.notifications, rt.db, dead),
        )
    finally:
        await rt.db.dispose()
