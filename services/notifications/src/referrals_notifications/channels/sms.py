"""The SMS channel: the renderer's `sms.txt` to an E.164 number, through the platform's shared
SMS provider (`referrals_common.sms`: the Twilio-compatible API behind the outbound guard, also
used by the web app for sign-in codes).

The SMS text is a reference and "see your e-mail / the app", never a medical detail. The
provider's `SmsError` is translated here, once, into the channel contract's delivery errors
(`base`): transient stays transient, and its reason becomes `notification.failed`'s code.
"""

from __future__ import annotations

from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.sms import (
    E164,
    SmsError,
    SmsFailure,
    SmsProvider,
    TwilioSettings,
    TwilioSmsProvider,
    is_e164,
)

from ..rendering import RenderedMessage
from .base import DeliveryError, DeliveryReceipt, PermanentDeliveryError, TransientDeliveryError

FAILURE_CODES = {
    SmsFailure.INVALID_RECIPIENT: NotificationError.INVALID_RECIPIENT,
    SmsFailure.REJECTED: NotificationError.REJECTED,
    SmsFailure.TIMEOUT: NotificationError.TIMEOUT,
    SmsFailure.UNAVAILABLE: NotificationError.PROVIDER_UNAVAILABLE,
    SmsFailure.ADDRESS_REFUSED: NotificationError.OTHER,
    SmsFailure.OTHER: NotificationError.OTHER,
}
"""What `notification.failed` says for each reason the provider gives."""


def delivery_error(error: SmsError) -> DeliveryError:
    """The channel contract's error for a provider's `SmsError`."""
    kind = TransientDeliveryError if error.transient else PermanentDeliveryError
    return kind(FAILURE_CODES[error.failure], error.detail, status_code=error.status_code)


class SmsChannel:
    """Sends the SMS text of rendered messages to E.164 phone numbers through a provider."""

    channel = NotificationChannel.SMS

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    async def aclose(self) -> None:
        """Close the provider's kept connections (its HTTP client), if it keeps any."""
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        if not is_e164(recipient):
            raise PermanentDeliveryError(
                NotificationError.INVALID_RECIPIENT, "the recipient is not an E.164 phone number"
            )
        try:
            provider_id = await self.provider.send_sms(recipient, message.text)
        except SmsError as error:
            raise delivery_error(error) from error
        return DeliveryReceipt(self.channel, provider_id=provider_id)


__all__ = [
    "E164",
    "SmsChannel",
    "SmsProvider",
    "TwilioSettings",
    "TwilioSmsProvider",
    "delivery_error",
]
