"""Bootstrap: notifications' parts from settings, once per process (nothing at import).

Notifications runs three processes: the consumer (events → delivery rows), the sender (rows →
e-mail, SMS, webhooks) and the outbox relay (`notification.sent` / `notification.failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from referrals_common.crypto import SealedBox
from referrals_common.db import Database
from referrals_common.telemetry import untraced
from referrals_common.webhooks.retention import LogPruner
from referrals_notifications.config import NotificationsSettings
from referrals_notifications.service import Notifications

if TYPE_CHECKING:
    from referrals_notifications.sender import Sender

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: NotificationsSettings
    db: Database
    notifications: Notifications


def build_runtime(settings: NotificationsSettings) -> Runtime:
    return Runtime(
        settings=settings,
        db=Database(settings.postgres),
        notifications=Notifications(frozenset(settings.front_end_webhooks)),
    )


def build_sender(settings: NotificationsSettings, db: Database) -> Sender:
    """The sender with every configured channel (SMS only with a provider)."""
    from referrals_common.outbound import OutboundPolicy
    from referrals_common.sms import TwilioSmsProvider
    from referrals_notifications.channels.email import EmailChannel
    from referrals_notifications.channels.sms import SmsChannel
    from referrals_notifications.channels.webhook import WebhookChannel
    from referrals_notifications.rendering import Renderer
    from referrals_notifications.sender import Channels, Sender, SenderSettings

    key = settings.contact_private_key.get_secret_value()
    if not key:
        raise RuntimeError(
            "REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY is not set: notifications cannot open "
            "the contact details intake seals (make a key pair with `referrals-notifications "
            "keygen`, give intake the public half)"
        )
    # Webhooks and the SMS provider are called through the same outbound guard.
    outbound = OutboundPolicy.for_environment(
        settings.environment, settings.outbound_allowed_targets
    )
    sms = TwilioSmsProvider(settings.sms, policy=outbound) if settings.sms else None
    channels = Channels(
        email=EmailChannel(settings.smtp),
        webhook=WebhookChannel(policy=outbound),
        sms=SmsChannel(sms) if sms is not None else None,
        front_ends=dict(settings.front_end_webhooks),
        ops_email=settings.ops_email,
    )
    return Sender(
        db,
        Renderer(),
        SealedBox(private_key_b64=key),
        channels,
        SenderSettings(
            policy=settings.retry_policy(),
            contact_wait=settings.contact_wait_seconds,
            time_zone=settings.time_zone,
            case_url_template=settings.case_url_template,
            concurrency=settings.sender_concurrency,
        ),
    )


async def run_sender_loop(
    sender: Sender, interval: float, stop: asyncio.Event, pruner: LogPruner | None = None
) -> None:
    """Until `stop` is set: send what is due, and (every `pruner`'s interval) prune the front
    ends' webhook delivery log."""
    while not stop.is_set():
        try:
            # Polling is not traced; each message sent continues its event's trace.
            with untraced():
                await sender.send_due()
                if pruner is not None:
                    await pruner.prune_if_due()
        except Exception:  # the database may be restarting: log, wait, try again
            log.exception("sender round failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run_sender(settings: NotificationsSettings) -> None:
    """The sender process, until SIGTERM or SIGINT."""
    import signal

    from referrals_notifications.sender import webhook_log_pruner

    rt = build_runtime(settings)
    sender = build_sender(settings, rt.db)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await run_sender_loop(
            sender,
            settings.sender_interval_seconds,
            stop,
            pruner=webhook_log_pruner(rt.db, settings.webhook_log),
        )
    finally:
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
