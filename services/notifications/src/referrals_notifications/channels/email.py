"""E-mail over SMTP with aiosmtplib: connections kept for the next message, plain text and HTML.

A message is `multipart/alternative` with the plain-text part first and the HTML part last (mail
clients show the last part they can display), or, with attachments (the meeting's calendar file),
`multipart/mixed` with that alternative first and then each attachment. It is marked
`Auto-Submitted: auto-generated` (RFC 3834) so that out-of-office replies are not sent back.

A connection that delivered a message is kept for the next one (`IDLE_CONNECTIONS` of them, each
for at most `REUSE_WITHIN` seconds of idleness and `MESSAGES_PER_CONNECTION` messages): connecting,
the greeting, EHLO (and STARTTLS, login) and QUIT cost both sides more CPU than sending the
message. A connection that failed in any way is closed, never used again; one the server dropped
while idle fails before the message went out and is replaced at once by a new one.

The bytes on the wire are composed directly (`email_bytes`), exactly as the `email` package
writes `build_email`'s message for aiosmtplib (same headers in the same order, folded and encoded
the same way, the same transfer encodings): the package's header objects parse and refold every
header, which cost more CPU than the rest of sending a message. A header the direct way cannot be
sure to write as the package would (non-ASCII, long, or anything unusual) is still folded by the
package, and a recipient address that is not a plain ASCII address goes the package's way whole.
Such a header that differs from message to message only in its ids and digits (the subject with
the case's reference, the Message-ID, a boundary) is folded by the package once per form, masked,
and the ids put back (`_folded_like`); quoted-printable is not tried on a text it cannot win for.
The name this host greets the server with is looked up once, not for every connection.

SMTP replies are classified by their code: a 4xx reply or a broken connection is transient, a 5xx
reply is permanent (`invalid_recipient` when the server refused the recipient, `rejected`
otherwise). The patient's address is never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import socket
import sys
import time
from dataclasses import dataclass
from email import policy as email_policy
from email import quoprimime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from functools import lru_cache

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
    email["Message-ID"] = _message_id(settings, message)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.text)
    if message.html is not None:
        email.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        _attach(email, attachment)
    return email


# --- the wire form, composed directly ---------------------------------------------------------

_WIRE = email_policy.SMTP
"""The policy aiosmtplib writes a message with (CRLF, 78-character lines, 8-bit bodies allowed)."""
_MAX_LINE: int = _WIRE.max_line_length or 78
_PLAIN_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
)
"""An address written the same whatever parses it: a dot-atom, ASCII, before and after the @."""
_PLAIN_VALUE = re.compile(r"^[!-~]+( [!-~]+)*$")
"""Printable ASCII words, one space between them: a header value nothing would refold."""
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def plain_address(recipient: str) -> bool:
    """Whether `email_bytes` can write a message to `recipient` (else `build_email` does)."""
    return _PLAIN_ADDRESS.match(recipient) is not None


def _header(name: str, value: str) -> bytes:
    """`name: value` as the `email` package folds it: written as it is when it is short, plain
    ASCII and holds nothing the package would encode (`=?`), else folded by the package."""
    line = f"{name}: {value}"
    if len(line) <= _MAX_LINE and "=?" not in value and _PLAIN_VALUE.match(value):
        return line.encode("ascii") + b"\r\n"
    return _folded_like(name, value)


_VARYING = re.compile(r"[0-9A-Za-z-]*[0-9][0-9A-Za-z-]*")
"""What changes from one message to the next in a header that is otherwise the same: a case's
reference in the subject, the notification's id, a boundary's digits (ASCII runs with a digit)."""
_MASK = "!"
"""What stands for each of their letters and digits (kept: the hyphens) in the folded form the
`email` package made once: an ASCII character of the same kind for it (not special, not
whitespace, written as it is in a `q` encoded word, one byte in a `b` one)."""
_ENCODED_WORD = re.compile(rb"=\?([^?*]+)\?([bBqQ])\?([^?]*)\?=")


def _folded_like(name: str, value: str) -> bytes:
    """`name: value` folded by the `email` package, from the fold of the same header with its
    varying runs masked (`_VARYING`, made once per trigger and language, not per message): the
    package folds and encodes by the kind and length of what it meets, never by which letter or
    digit it is, so each masked character is where the run's was, as it is or inside an encoded
    word (the masked subject's "Запит !!!!-!!!!: ..." one `b` word), and is put back there.
    A value that holds the mask's character or an encoded word's opening is folded by the
    package itself."""
    if _MASK in value or "=?" in value:
        return _fold(name, value)
    kept: list[str] = []

    def mask(run: re.Match[str]) -> str:
        kept.extend(char for char in run.group() if char != "-")
        return "".join("-" if char == "-" else _MASK for char in run.group())

    masked = _VARYING.sub(mask, value)
    if not kept:
        return _folded(name, value)
    restored = _put_back(_folded(name, masked), kept)
    return restored if restored is not None else _fold(name, value)


def _put_back(folded: bytes, kept: list[str]) -> bytes | None:
    """`folded` with its masked characters, in order, made `kept`'s again (None: not as many)."""
    chars = iter(kept)

    def restore(text: bytes) -> bytes:
        pieces = text.split(_MASK.encode("ascii"))
        restored = [pieces[0]]
        for piece in pieces[1:]:
            restored += (next(chars).encode("ascii"), piece)
        return b"".join(restored)

    out, position = [], 0
    try:
        for word in _ENCODED_WORD.finditer(folded):
            out.append(restore(folded[position : word.start()]))
            charset, encoding, payload = word.groups()
            if encoding in b"qQ":  # the mask and the letters and digits are written as they are
                payload = restore(payload)
            else:  # base64 of the same number of bytes
                payload = base64.b64encode(restore(base64.b64decode(payload, validate=True)))
            out.append(b"=?" + charset + b"?" + encoding + b"?" + payload + b"?=")
            position = word.end()
        out.append(restore(folded[position:]))
    except (StopIteration, binascii.Error):
        return None
    if next(chars, None) is not None:
        return None
    return b"".join(out)


def _fold(name: str, value: str) -> bytes:
    """A header folded by the `email` package."""
    return _WIRE.fold_binary(name, _WIRE.header_factory(name, value))


_folded = lru_cache(maxsize=256)(_fold)
"""`_fold` of values that come again (the From line, the content types, the masked headers of
`_folded_like`: a few per trigger and language)."""


def _boundary(parts: list[bytes]) -> str:
    """A boundary of the `email` package's form, found in no part."""
    while True:
        token = random.randrange(sys.maxsize)
        boundary = f"{'=' * 15}{token:0{_BOUNDARY_DIGITS}d}=="
        if not any(boundary.encode("ascii") in part for part in parts):
            return boundary


def _body_lines(data: bytes) -> bytes:
    return b"\r\n".join(data.splitlines()) + b"\r\n"


def _base64(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, as the `email` package writes it."""
    step = _MAX_LINE // 4 * 3
    lines = (binascii.b2a_base64(data[i : i + step]) for i in range(0, len(data), step))
    return b"".join(line[:-1] + b"\r\n" for line in lines)


_QP_AS_IS = bytes(octet for octet in range(256) if not quoprimime.body_check(octet)) + b"\r\n"
"""The bytes quoted-printable writes as they are (`quoprimime.body_encode` keeps line ends)."""


def _encoded_text(text: str, *, eight_bit: bool) -> tuple[str, bytes]:
    """(transfer encoding, body) of a UTF-8 text part, chosen as `EmailMessage.set_content`
    chooses: 7bit for short ASCII lines, 8bit for short lines (base64 when the server takes no
    8-bit data, as the package then rewrites it), else the shorter of quoted-printable and base64
    on the first ten lines."""
    lines = text.encode("utf-8").splitlines()
    normal = b"\n".join(lines) + b"\n"
    if max((len(line) for line in lines), default=0) <= _MAX_LINE:
        if normal.isascii():
            return "7bit", _body_lines(normal)
        if eight_bit:
            return "8bit", _body_lines(normal)
        return "base64", _base64(normal)
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_base64 = len(binascii.b2a_base64(sniff))
    # Quoted-printable writes each byte it must encode as three characters, the rest as one,
    # then adds soft line breaks: when that least length is already longer than base64 (a text
    # in Ukrainian), the package's choice is base64 without encoding the lines to see it.
    if len(sniff) + 2 * len(sniff.translate(None, _QP_AS_IS)) > sniff_base64:
        return "base64", _base64(normal)
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), _MAX_LINE)
    if len(sniff_qp) > sniff_base64:
        return "base64", _base64(normal)
    if len(lines) > 10:
        # The package encodes the whole body again; its encoding is line by line (a line's
        # soft breaks and quoting depend on that line alone), so the whole is the first ten
        # lines' encoding followed by the rest's.
        rest = b"\n".join(lines[10:]) + b"\n"
        sniff_qp += quoprimime.body_encode(rest.decode("latin-1"), _MAX_LINE)
    return "quoted-printable", _body_lines(sniff_qp.encode("ascii"))


def _text_part(
    text: str, subtype: str, *, eight_bit: bool, mime_version: bool, top: bool = False
) -> tuple[bytes, bytes]:
    """(headers, body) of a text part as `set_content`/`add_alternative` write it."""
    cte, body = _encoded_text(text, eight_bit=eight_bit)
    headers = _header("Content-Type", f'text/{subtype}; charset="utf-8"')
    headers += _header("Content-Transfer-Encoding", cte)
    if mime_version:
        headers += _header("MIME-Version", "1.0")
    return headers, body


def _attachment_part(attachment: Attachment) -> tuple[bytes, bytes]:
    """(headers, body) of an attachment as `_attach` makes it with `add_attachment`."""
    params = dict(attachment.parameters)
    if attachment.media_type.startswith("text/"):
        params.setdefault("charset", "utf-8")
    content_type = attachment.media_type + "".join(f'; {k}="{v}"' for k, v in params.items())
    headers = _header("Content-Transfer-Encoding", "base64")
    headers += _header("Content-Disposition", f'attachment; filename="{attachment.filename}"')
    headers += _header("Content-Type", content_type)
    headers += _header("MIME-Version", "1.0")
    return headers, _base64(attachment.content)


def _multipart(subtype: str, parts: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """(Content-Type header, body) of a multipart with `parts`, as the package's generator
    writes it."""
    flat = [headers + b"\r\n" + body for headers, body in parts]
    boundary = _boundary(flat)
    delimiter = b"--" + boundary.encode("ascii")
    body = delimiter + b"\r\n" + (b"\r\n" + delimiter + b"\r\n").join(flat)
    body += b"\r\n" + delimiter + b"--\r\n"
    return _header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"'), body


def _message_id(settings: SmtpSettings, message: RenderedMessage) -> str:
    """The notification's own id (the same on every attempt), else a new one."""
    domain = settings.from_address.rsplit("@", 1)[1]
    if message.notification_id is not None:
        return f"<notification.{message.notification_id}@{domain}>"
    return make_msgid(domain=domain)


def email_bytes(
    settings: SmtpSettings,
    recipient: str,
    message: RenderedMessage,
    *,
    message_id: str | None = None,
    eight_bit: bool = True,
) -> bytes:
    """`build_email`'s message as aiosmtplib sends it to a server that takes 8-bit data
    (8BITMIME, `eight_bit`) or not, composed directly: for a `plain_address` recipient only."""
    if not plain_address(recipient):
        raise ValueError("only a plain ASCII address is written directly (see build_email)")
    message_id = message_id or _message_id(settings, message)
    head = _from_header(settings.from_name or "", settings.from_address)
    head += _header("To", recipient)
    head += _header("Subject", message.subject)
    head += _header("Date", format_datetime(utc_now()))
    head += _header("Message-ID", message_id)
    head += _header("Auto-Submitted", "auto-generated")
    if message.html is None and not message.attachments:
        headers, body = _text_part(message.text, "plain", eight_bit=eight_bit, mime_version=True)
        return head + headers + b"\r\n" + body
    text = _text_part(message.text, "plain", eight_bit=eight_bit, mime_version=False)
    if message.html is not None:
        html = _text_part(message.html, "html", eight_bit=eight_bit, mime_version=True)
        content = _multipart("alternative", [text, html])
    else:
        content = text
    if message.attachments:
        attached = [_attachment_part(attachment) for attachment in message.attachments]
        content = _multipart("mixed", [content, *attached])
    content_type, body = content
    return head + _header("MIME-Version", "1.0") + content_type + b"\r\n" + body


@lru_cache(maxsize=8)
def _from_header(display_name: str, address: str) -> bytes:
    """The From line (the same in every message), folded by the `email` package once."""
    header = _WIRE.header_factory("From", Address(display_name=display_name, addr_spec=address))
    return _WIRE.fold_binary("From", header)


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


IDLE_CONNECTIONS = 16
"""Connections kept open for the next messages (the sender sends this many at the same time)."""
REUSE_WITHIN = 30.0
"""Seconds a connection may have been idle and still be used (servers drop idle ones after a
minute or more: RFC 5321 asks for at least 5 minutes)."""
MESSAGES_PER_CONNECTION = 20
"""Messages sent on one connection before a new one is opened (some servers limit it)."""


class _StaleConnection(Exception):
    """A kept connection the server had closed: nothing of the message went out on it."""

    def __init__(self, disconnected: aiosmtplib.SMTPServerDisconnected) -> None:
        super().__init__(str(disconnected))
        self.disconnected = disconnected


@dataclass
class _Connection:
    """An open, greeted SMTP connection, and what it has done."""

    client: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class EmailChannel:
    """Sends rendered messages to e-mail addresses through one SMTP server."""

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._local_hostname: str | None = None
        """The name this host greets with (EHLO): looked up once, not on every connection."""
        self._idle: list[_Connection] = []
        """Connections that delivered their last message, the most recently used last."""

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        settings = self.settings
        direct = plain_address(recipient) and plain_address(settings.from_address)
        # Anything else is checked (and refused before connecting) by the email package's way.
        email = None if direct else build_email(settings, recipient, message)
        message_id = email["Message-ID"] if email is not None else _message_id(settings, message)
        with tracer.start_as_current_span("smtp send", kind=SpanKind.CLIENT) as span:
            span.set_attribute("server.address", settings.host)
            span.set_attribute("server.port", settings.port)
            span.set_attribute("referrals.smtp.message_id", str(message_id))
            try:
                await self._send_on_a_connection(recipient, message, message_id, email)
            except DeliveryError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
        return DeliveryReceipt(self.channel, provider_id=message_id)

    async def aclose(self) -> None:
        """Say goodbye (QUIT) on the connections kept open."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await _quit(connection.client)

    async def _send_on_a_connection(
        self, recipient: str, message: RenderedMessage, message_id: str, email: EmailMessage | None
    ) -> None:
        """Send on a kept connection, else a new one. A kept one the server dropped while it
        was idle fails at MAIL, before anything of the message went out: then once more on a
        new connection. A message of the `email` package's way goes on a connection of its own
        (closed after it), as every message went before connections were kept."""
        if email is not None:
            await self._send_alone(email)
            return
        connection = self._kept()
        if connection is not None:
            try:
                await self._send_on(connection, recipient, message, message_id)
                return
            except _StaleConnection:
                pass
        try:
            connection = _Connection(await self._connected())
            await self._send_on(connection, recipient, message, message_id)
        except _StaleConnection as exc:
            raise classify_smtp_error(exc.disconnected) from exc.disconnected
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify_smtp_error(exc) from exc

    async def _send_on(
        self, connection: _Connection, recipient: str, message: RenderedMessage, message_id: str
    ) -> None:
        """One message on `connection` (what `aiosmtplib.SMTP.sendmail` does, on the bytes of
        `email_bytes`, 8-bit bodies only to a server that takes them), the connection kept for
        the next one if it went well, else closed. A disconnection at MAIL is `_StaleConnection`;
        any other failure the channel's delivery error."""
        client = connection.client
        try:
            eight_bit = client.supports_extension("8bitmime")
            raw = email_bytes(
                self.settings, recipient, message, message_id=message_id, eight_bit=eight_bit
            )
            options = ["BODY=8BITMIME"] if eight_bit else []
            if client.supports_extension("size"):  # RFC 1870, as `sendmail` declares it
                # The wire form's line ends are CRLF already (what `sendmail` counts after
                # normalizing them: a pass over the message, ~50 us, that changes nothing here).
                options.insert(0, f"size={len(raw)}")
            try:
                await client.mail(self.settings.from_address, options=options)
            except aiosmtplib.SMTPServerDisconnected as exc:
                raise _StaleConnection(exc) from exc
            await client.rcpt(recipient)
            await client.data(raw)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _quit(client)
            raise classify_smtp_error(exc) from exc
        except BaseException:
            client.close()
            raise
        connection.sent += 1
        if connection.sent >= MESSAGES_PER_CONNECTION or len(self._idle) >= IDLE_CONNECTIONS:
            await _quit(client)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _send_alone(self, email: EmailMessage) -> None:
        try:
            async with await self._connected() as client:
                await client.send_message(email)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify_smtp_error(exc) from exc

    def _kept(self) -> _Connection | None:
        """The most recently used kept connection that is still open and fresh, if any (the
        stale ones are closed)."""
        while self._idle:
            connection = self._idle.pop()
            fresh = time.monotonic() - connection.idle_since < REUSE_WITHIN
            if fresh and connection.client.is_connected:
                return connection
            connection.client.close()
        return None

    async def _connected(self) -> aiosmtplib.SMTP:
        """A new connection, greeted (EHLO, else HELO), upgraded and logged in as configured."""
        settings = self.settings
        if self._local_hostname is None:
            # What aiosmtplib would look up (in a thread) for every connection.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            local_hostname=self._local_hostname,
            port=settings.port,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            use_tls=settings.tls is SmtpTls.TLS,
            start_tls=settings.tls is SmtpTls.STARTTLS,
            timeout=settings.timeout,
        )
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    if not client.is_connected:
                        raise
                    await client.helo()
        except BaseException:
            client.close()
            raise
        return client


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT if the server still listens, then close, whatever it answers."""
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


__all__ = [
    "EmailChannel",
    "SmtpSettings",
    "SmtpTls",
    "build_email",
    "classify_smtp_error",
    "email_bytes",
    "plain_address",
]
