"""Delivery channels (e-mail, SMS, webhook) and the retry helper; see `base` for the contract."""

from .base import (
    Channel,
    DeliveryError,
    DeliveryReceipt,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from .email import EmailChannel, SmtpSettings, SmtpTls
from .retry import DeliveryOutcome, RetryPolicy, deliver_with_retry
from .sms import SmsChannel, SmsProvider, TwilioSettings, TwilioSmsProvider
from .webhook import WebhookChannel, WebhookSettings, WebhookTarget, verify_signature

__all__ = [
    "Channel",
    "DeliveryError",
    "DeliveryOutcome",
    "DeliveryReceipt",
    "EmailChannel",
    "PermanentDeliveryError",
    "RetryPolicy",
    "SmsChannel",
    "SmsProvider",
    "SmtpSettings",
    "SmtpTls",
    "TransientDeliveryError",
    "TwilioSettings",
    "TwilioSmsProvider",
    "WebhookChannel",
    "WebhookSettings",
    "WebhookTarget",
    "deliver_with_retry",
    "verify_signature",
]
