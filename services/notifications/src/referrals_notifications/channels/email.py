"""E-mail over SMTP with aiosmtplib: one connection per message, plain text and HTML.

A message is `multipart/alternative` with the plain-text part first and the HTML part last (mail
clients show the last part they can display), or, with attachments (the meeting's calendar file),
`multipart/mixed` with that alternative first and then each attachment. It is marked
`Auto-Submitted: auto-generated` (RFC 3834) so that out-of-office replies are not sent back. One
connection per message keeps the channel simple and stateless; notifications send a few messages
per case, not a mailing list.

SMTP replies are classified by their code: a 4xx reply or a broken connection is transient, a 5xx
reply is permanent (`invalid_recipient` when the server refused the recipient, `rejected`
otherwise). The patient's address is never logged or put in an error message.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum

import aiosmtplib
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from referrals_common.contracts.notifications import NotificationChannel, NotificationError

from ..rendering import Attachment, RenderedMessage
from .base import (
    DeliveryError,
    DeliveryReceipt,
    PermanentDeliveryError,
    TransientDeliveryError,
    utc_now,
)

tracer = trace.get_tracer("referrals_notifications.email")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")


class SmtpTls(StrEnum):
    """How the connection to the SMTP server is protected."""

    NONE = "none"
    """Plain text: only for a server on loopback (the dev mail sink)."""
    STARTTLS = "starttls"
    """Connect in plain text, then upgrade (port 587); refuse to go on if the server cannot."""
    TLS = "tls"
    """TLS from the first byte (implicit TLS, port 465)."""


class SmtpSettings(BaseModel):
    """Where and how e-mail is handed over."""

    host: str = "127.0.0.1"
    port: int = Field(587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: SmtpTls = SmtpTls.STARTTLS
    timeout: float = Field(30.0, gt=0, description="Seconds for connecting and for each reply")
    from_address: str = "no-reply@referrals.localhost"
    from_name: str | None = Field(default=None, max_length=100)

    @field_validator("from_address")
    @classmethod
    def _an_address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError("from_address is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _credentials_together(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


def _recipient_address(recipient: str) -> Address:
    if not _ADDRESS.match(recipient):
        raise PermanentDeliveryError(
            NotificationError.INVALID_RECIPIENT, "the recipient is not an e-mail address"
        )
    try:
        return Address(addr_spec=recipient)
    except (ValueError, IndexError) as exc:
        raise PermanentDeliveryError(
            NotificationError.INVALID_RECIPIENT, "the recipient is not an e-mail address"
        ) from exc


def build_email(settings: SmtpSettings, recipient: str, message: RenderedMessage) -> EmailMessage:
    """The MIME message: plain text, plus HTML as the preferred alternative when there is one,
    then the attachments, if any."""
    email = EmailMessage()
    email["From"] = Address(display_name=settings.from_name or "", addr_spec=settings.from_address)
    email["To"] = _recipient_address(recipient)
    email["Subject"] = message.subject
    email["Date"] = format_datetime(utc_now())
    domain = settings.from_address.rsplit("@", 1)[1]
    email["Message-ID"] = (
        f"<notification.{message.notification_id}@{domain}>"
        if message.notification_id is not None
        else make_msgid(domain=domain)
    )
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    if message.html is not None:
        email.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        _attach(email, attachment)
    return email


def _attach(email: EmailMessage, attachment: Attachment) -> None:
    """Adds one attachment (the message becomes `multipart/mixed`), base64-encoded so that its
    bytes arrive as they were made (a calendar file's CRLF line ends and folded lines); text is
    UTF-8, with its parameters (a calendar's `method`)."""
    maintype, subtype = attachment.media_type.split("/", 1)
    params = dict(attachment.parameters)
    if maintype == "text":
        params.setdefault("charset", "utf-8")
    email.add_attachment(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        filename=attachment.filename,
        params=params,
    )


def _code_error(code: int, detail: str, *, refused_recipient: bool = False) -> DeliveryError:
    if 400 <= code < 500:
        return TransientDeliveryError(NotificationError.PROVIDER_UNAVAILABLE, detail)
    if refused_recipient:
        return PermanentDeliveryError(NotificationError.INVALID_RECIPIENT, detail)
    return PermanentDeliveryError(NotificationError.REJECTED, detail)


def classify_smtp_error(exc: Exception) -> DeliveryError:
    """The delivery error for what aiosmtplib (or the network under it) raised."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        code = min(codes, default=550)  # a 4xx for any recipient: worth another try
        return _code_error(code, f"recipient refused ({code})", refused_recipient=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _code_error(exc.code, f"recipient refused ({exc.code})", refused_recipient=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _code_error(exc.code, f"{type(exc).__name__} ({exc.code}): {exc.message}")
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return TransientDeliveryError(NotificationError.TIMEOUT, f"SMTP timeout: {exc}")
    if isinstance(exc, ConnectionError | OSError):
        return TransientDeliveryError(
            NotificationError.PROVIDER_UNAVAILABLE, f"SMTP server unreachable: {exc!r}"
        )
    return PermanentDeliveryError(NotificationError.OTHER, f"SMTP failure: {exc!r}")


class EmailChannel:
    """Sends rendered messages to e-mail addresses through one SMTP server."""

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        email = build_email(self.settings, recipient, message)
        settings = self.settings
        password = settings.password.get_secret_value() if settings.password else None
        with tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT) as span:
            span.set_attribute("server.address", settings.host)
            span.set_attribute("server.port", settings.port)
            span.set_attribute("referrals.smtp.message_id", str(email["Message-ID"]))
            try:
                await self._send(email, password)
            except DeliveryError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
        return DeliveryReceipt(self.channel, provider_id=email["Message-ID"])

    async def _send(self, email: EmailMessage, password: str | None) -> None:
        settings = self.settings
        try:
            await aiosmtplib.send(
                email,
                hostname=settings.host,
                port=settings.port,
                username=settings.username,
                password=password,
                use_tls=settings.tls is SmtpTls.TLS,
                start_tls=settings.tls is SmtpTls.STARTTLS,
                timeout=settings.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify_smtp_error(exc) from exc


__all__ = ["EmailChannel", "SmtpSettings", "SmtpTls", "build_email", "classify_smtp_error"]
