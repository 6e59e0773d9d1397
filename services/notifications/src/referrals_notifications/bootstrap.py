"""Notifications' wiring: its parts from settings, once per process (nothing at import).

`build_runtime` makes the database and the consumer's use cases; `build_sender` the sender with
its channels (e-mail, SMS when a provider is configured, webhooks through the outbound guard)
and the key that opens the contacts intake seals. `main` runs the processes on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from referrals_common.crypto import SealedBox
from referrals_common.db import Database
from referrals_notifications.config import NotificationsSettings
from referrals_notifications.repository import NotificationsRepository
from referrals_notifications.service import Notifications

if TYPE_CHECKING:
    from referrals_notifications.sender import Sender


@dataclass
class Runtime:
    settings: NotificationsSettings
    db: Database
    notifications: Notifications


def build_runtime(settings: NotificationsSettings) -> Runtime:
    db = Database(settings.postgres)
    return Runtime(
        settings=settings,
        db=db,
        # The consumer's writes through asyncpg, in the inbox's transaction.
        notifications=Notifications(
            frozenset(settings.front_end_webhooks), repository=NotificationsRepository.on(db)
        ),
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
        repository=NotificationsRepository.on(db),
    )
