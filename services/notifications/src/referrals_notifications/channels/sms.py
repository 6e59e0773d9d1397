"""SMS through a provider's HTTP API: one provider interface, one real implementation.

`SmsProvider` is the seam: an SMS gateway is swapped by writing another class with `send_sms`.
`TwilioSmsProvider` speaks the Twilio Messages REST API (also offered by Twilio-compatible
gateways): a form POST to `{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json` with
HTTP basic auth (account SID and auth token). `base_url` is configurable, so tests and the dev
stack point it at a local server.

The SMS text is the renderer's `sms.txt`: a reference and "see your e-mail / the app", never a
medical detail. Numbers are E.164 (`+380671234567`); anything else is refused before any request.
"""

from __future__ import annotations

import re
from typing import Protocol

import httpx
from pydantic import BaseModel, Field, HttpUrl, SecretStr, model_validator

from referrals_common.contracts.notifications import NotificationChannel, NotificationError

from ..rendering import RenderedMessage
from .base import (
    DeliveryReceipt,
    PermanentDeliveryError,
    classify_http_exception,
    classify_http_status,
)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

TWILIO_INVALID_RECIPIENT_CODES = frozenset({21211, 21614})
"""Twilio's error codes for "not a valid phone number" and "not a mobile number"."""


class SmsProvider(Protocol):
    """Sends one text to one phone number; returns the provider's message id."""

    async def send_sms(self, to: str, body: str) -> str | None:
        """Raises `DeliveryError` when the provider does not accept the message."""
        ...


class TwilioSettings(BaseModel):
    """A Twilio (or Twilio-compatible) account: who sends, and from which number or service."""

    base_url: HttpUrl = HttpUrl("https://api.twilio.com")
    account_sid: str = Field(pattern=r"^[A-Za-z0-9]{2,64}$")
    auth_token: SecretStr
    from_number: str | None = Field(default=None, pattern=E164.pattern)
    messaging_service_sid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{2,64}$")
    timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _one_sender(self) -> TwilioSettings:
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        return self

    @property
    def messages_url(self) -> str:
        base = str(self.base_url).rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


class TwilioSmsProvider:
    """`SmsProvider` over the Twilio Messages API, with httpx."""

    def __init__(self, settings: TwilioSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _form(self, to: str, body: str) -> dict[str, str]:
        form = {"To": to, "Body": body}
        if self.settings.from_number is not None:
            form["From"] = self.settings.from_number
        else:
            form["MessagingServiceSid"] = str(self.settings.messaging_service_sid)
        return form

    async def send_sms(self, to: str, body: str) -> str | None:
        settings = self.settings
        try:
            response = await self._client.post(
                settings.messages_url,
                data=self._form(to, body),
                auth=(settings.account_sid, settings.auth_token.get_secret_value()),
                timeout=settings.timeout,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise classify_http_exception(
                exc, unreachable_code=NotificationError.PROVIDER_UNAVAILABLE
            ) from exc
        if response.is_success:
            return _json_field(response, "sid")
        error_code = _json_field(response, "code")
        detail = f"SMS provider answered {response.status_code} (code {error_code})"
        if response.status_code == 400 and _as_int(error_code) in TWILIO_INVALID_RECIPIENT_CODES:
            raise PermanentDeliveryError(NotificationError.INVALID_RECIPIENT, detail)
        raise classify_http_status(
            response.status_code,
            detail,
            transient_code=NotificationError.PROVIDER_UNAVAILABLE,
            permanent_code=NotificationError.REJECTED,
        )


def _json_field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _as_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


class SmsChannel:
    """Sends the SMS text of rendered messages to E.164 phone numbers through a provider."""

    channel = NotificationChannel.SMS

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        if not E164.match(recipient):
            raise PermanentDeliveryError(
                NotificationError.INVALID_RECIPIENT, "the recipient is not an E.164 phone number"
            )
        provider_id = await self.provider.send_sms(recipient, message.text)
        return DeliveryReceipt(self.channel, provider_id=provider_id)


__all__ = [
    "E164",
    "SmsChannel",
    "SmsProvider",
    "TwilioSettings",
    "TwilioSmsProvider",
]
