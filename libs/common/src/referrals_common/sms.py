"""Text messages through a Twilio-compatible HTTP API: one provider interface, one real
implementation, shared by notifications (case updates) and the web app (sign-in codes).

`SmsProvider` is the seam: an SMS gateway is swapped by writing another class with `send_sms`.
`TwilioSmsProvider` speaks the Twilio Messages REST API (also offered by Twilio-compatible
gateways): a form POST to `{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json` with
HTTP basic auth (account SID and auth token). `base_url` is configurable, so tests and the local
stack's SMS sink (`devstack.smssink`) stand in for the provider.

Every request goes through the platform's outbound guard (`referrals_common.outbound`): the
provider's host is resolved before each message and must be public, the request connects to the
checked address, follows no redirect, and HTTPS is required outside development. A provider on
loopback (the SMS sink) is reachable only as an explicit `host:port` entry of the allow-list
(`REFERRALS_OUTBOUND_ALLOWED_TARGETS`), as for webhooks. The auth token therefore never goes to
an address nobody checked.

Numbers are E.164 (`+380671234567`); anything else is refused before any request. A failure is
an `SmsError` that says, once, whether trying again may help (`transient`) and why (`failure`),
so callers never look at HTTP statuses or Twilio's error codes.
"""

from __future__ import annotations

import base64
import re
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, Field, HttpUrl, SecretStr, model_validator

from referrals_common.outbound import OutboundPolicy, TargetRefused, classify
from referrals_common.webhooks.policy import RETRYABLE_STATUSES, is_retryable_status

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

TWILIO_INVALID_RECIPIENT_CODES = frozenset({21211, 21614})
"""Twilio's error codes for "not a valid phone number" and "not a mobile number"."""

TRANSIENT_HTTP_STATUSES = RETRYABLE_STATUSES
"""4xx statuses that mean "not now" rather than "never"; every 5xx is transient too (the
platform's one retry policy: `referrals_common.webhooks.policy`)."""


def is_e164(number: str) -> bool:
    """Whether `number` is an E.164 phone number (`+` and 7 to 15 digits, no spaces)."""
    return bool(E164.match(number))


class SmsFailure(StrEnum):
    """Why a text message was not accepted by the provider, coarsely."""

    INVALID_RECIPIENT = "invalid_recipient"
    """Not an E.164 number, or the provider says it is not a valid or mobile number."""
    REJECTED = "rejected"
    """The provider refused the message for good (credentials, body, a 4xx)."""
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    """The provider could not be reached or answered 429/5xx."""
    ADDRESS_REFUSED = "address_refused"
    """The outbound guard refused the provider's address (non-public, not allowed, no HTTPS)."""
    OTHER = "other"


class SmsError(Exception):
    """The provider did not accept a message; `transient` says whether a later try may work."""

    def __init__(
        self,
        failure: SmsFailure,
        detail: str,
        *,
        transient: bool,
        status_code: int | None = None,
    ) -> None:
        super().__init__(f"{failure}: {detail}")
        self.failure = failure
        self.detail = detail
        self.transient = transient
        self.status_code = status_code


class SmsProvider(Protocol):
    """Sends one text to one phone number; returns the provider's message id."""

    async def send_sms(self, to: str, body: str) -> str | None:
        """Raises `SmsError` when the provider does not accept the message."""
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


def classify_status(status: int, error_code: int | None, detail: str) -> SmsError:
    """The error for a provider's unsuccessful answer (a 3xx is a refusal: never followed)."""
    if status == 400 and error_code in TWILIO_INVALID_RECIPIENT_CODES:
        return SmsError(SmsFailure.INVALID_RECIPIENT, detail, transient=False, status_code=status)
    if status == 408:
        return SmsError(SmsFailure.TIMEOUT, detail, transient=True, status_code=status)
    if is_retryable_status(status):
        return SmsError(SmsFailure.UNAVAILABLE, detail, transient=True, status_code=status)
    return SmsError(SmsFailure.REJECTED, detail, transient=False, status_code=status)


def classify_exception(exc: httpx.HTTPError) -> SmsError:
    """The error for a request that got no answer at all."""
    if isinstance(exc, httpx.TimeoutException):
        return SmsError(SmsFailure.TIMEOUT, f"no answer in time: {exc!r}", transient=True)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return SmsError(SmsFailure.OTHER, f"not an HTTP(S) address: {exc!r}", transient=False)
    if isinstance(exc, httpx.TransportError):
        return SmsError(
            SmsFailure.UNAVAILABLE, f"could not reach the provider: {exc!r}", transient=True
        )
    return SmsError(SmsFailure.OTHER, f"the request failed: {exc!r}", transient=False)


class TwilioSmsProvider:
    """`SmsProvider` over the Twilio Messages API, with httpx, through the outbound guard."""

    def __init__(
        self,
        settings: TwilioSettings,
        client: httpx.AsyncClient | None = None,
        *,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or OutboundPolicy(require_https=True)
        """Where the provider may be (default: public HTTPS addresses only)."""
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

    def _headers(self) -> dict[str, str]:
        s = self.settings
        pair = f"{s.account_sid}:{s.auth_token.get_secret_value()}".encode()
        return {
            "Authorization": "Basic " + base64.b64encode(pair).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }

    async def send_sms(self, to: str, body: str) -> str | None:
        """Hands one text to the provider; returns its message id (`sid`). Raises `SmsError`
        (and nothing else): a number that is not E.164 before any request."""
        if not is_e164(to):
            raise SmsError(
                SmsFailure.INVALID_RECIPIENT, "not an E.164 phone number", transient=False
            )
        settings = self.settings
        try:
            response = await self.policy.post(
                self._client,
                settings.messages_url,
                content=urlencode(self._form(to, body)).encode("utf-8"),
                headers=self._headers(),
                timeout=settings.timeout,
            )
        except TargetRefused as refused:
            raise SmsError(
                SmsFailure.ADDRESS_REFUSED,
                f"{classify(refused)}: {refused.reason}",
                transient=False,
            ) from None
        except httpx.HTTPError as exc:
            raise classify_exception(exc) from exc
        if response.is_success:
            return _json_field(response, "sid")
        error_code = _json_field(response, "code")
        raise classify_status(
            response.status_code,
            _as_int(error_code),
            f"SMS provider answered {response.status_code} (code {error_code})",
        )


def _json_field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _as_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


__all__ = [
    "E164",
    "SmsError",
    "SmsFailure",
    "SmsProvider",
    "TwilioSettings",
    "TwilioSmsProvider",
    "classify_exception",
    "classify_status",
    "is_e164",
]
