"""Notifications' settings: the shared ones plus channels, the contact key and retry rounds."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from referrals_common.settings import ServiceSettings
from referrals_common.sms import TwilioSettings
from referrals_common.webhooks import RetryPolicy, WebhookRetrySettings
from referrals_common.webhooks.retention import RetentionSettings
from referrals_notifications.channels.email import SmtpSettings, SmtpTls
from referrals_notifications.channels.webhook import WebhookTarget


class NotificationsSettings(ServiceSettings):
    service_name: ClassVar[str] = "notifications"

    # X25519 private key (base64) that opens the contact details intake seals for us.
    contact_private_key: SecretStr = SecretStr("")
    smtp: SmtpSettings = SmtpSettings(port=1025, tls=SmtpTls.NONE)
    sms: TwilioSettings | None = None
    # Partner front ends that take case updates by signed webhook, by front end (client) name.
    front_end_webhooks: dict[str, WebhookTarget] = Field(default_factory=dict)
    ops_email: str | None = None
    time_zone: str = "Europe/Kyiv"
    case_url_template: str | None = Field(
        None, description="link to the case page in the front end, with {case_id}"
    )
    # The platform's one retry policy (`referrals_common.webhooks.policy`), for every channel.
    quick_attempts: int = Field(3, ge=1, description="tries in a row before waiting a round")
    quick_backoff_seconds: float = Field(0.5, gt=0)
    max_rounds: int = Field(5, ge=1)
    round_backoff_seconds: float = Field(30.0, gt=0)
    max_retry_after_seconds: float = Field(
        3600.0, ge=0, description="the longest `Retry-After` a receiver may ask for"
    )
    webhook_log: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="how long settled front-end webhook deliveries are kept (30 days)",
    )
    contact_wait_seconds: float = Field(600.0, gt=0)
    sender_interval_seconds: float = Field(
        0.2, gt=0, description="between the sender's rounds while they find messages to send"
    )
    sender_idle_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="the longest an idle sender waits for a planned delivery's notification "
        "before it looks anyway (rows another sender put off, a notification missed)",
    )
    sender_concurrency: int = Field(16, ge=1, description="deliveries sent at the same time")

    def retry_policy(self) -> RetryPolicy:
        return WebhookRetrySettings(
            quick_attempts=self.quick_attempts,
            quick_backoff_seconds=self.quick_backoff_seconds,
            max_rounds=self.max_rounds,
            round_backoff_seconds=self.round_backoff_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds,
        ).policy()

    def _secrets(self) -> dict[str, str]:
        return {
            **super()._secrets(),
            "contact_private_key": self.contact_private_key.get_secret_value(),
        }
