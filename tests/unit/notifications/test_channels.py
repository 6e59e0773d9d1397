"""Channels without a network: MIME structure, error classification, the HTTP requests they make
(httpx's MockTransport answers in memory)."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from urllib.parse import parse_qs

import aiosmtplib
import httpx
import pytest
from aiosmtplib.email import flatten_message
from aiosmtplib.protocol import normalize_message_line_endings
from pydantic import ValidationError

from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.outbound import IPAddress, OutboundPolicy
from referrals_notifications.channels import email as email_channel
from referrals_notifications.channels.base import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from referrals_notifications.channels.email import (
    EmailChannel,
    SmtpSettings,
    SmtpTls,
    build_email,
    classify_smtp_error,
    email_bytes,
    plain_address,
)
from referrals_notifications.channels.sms import SmsChannel, TwilioSettings, TwilioSmsProvider
from referrals_notifications.channels.webhook import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookTarget,
    verify_signature,
)
from referrals_notifications.rendering import Attachment, RenderedMessage, Renderer

from .samples import sample_context

pytestmark = pytest.mark.unit

E = NotificationError
PERM, TRANS = PermanentDeliveryError, TransientDeliveryError
MESSAGE = RenderedMessage(
    subject="Запит 3F0F-6C7D: висновок готовий",
    text="Доброго дня!\n\nТекст листа.\n",
    html="<!DOCTYPE html><html lang='uk'><body><p>Доброго дня!</p></body></html>",
)
SMTP = SmtpSettings(host="127.0.0.1", port=1, tls=SmtpTls.NONE, from_address="care@example.org")


def assert_error(error: DeliveryError, kind: type[DeliveryError], code: NotificationError) -> None:
    assert isinstance(error, kind), error
    assert error.code is code, error


# --- e-mail ------------------------------------------------------------------------------------


def test_email_is_multipart_alternative_with_text_then_html() -> None:
    settings = SMTP.model_copy(update={"from_name": "Referrals"})
    email = build_email(settings, "olena@example.org", MESSAGE)
    parsed = message_from_bytes(email.as_bytes(), policy=policy.default)

    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == MESSAGE.text
    assert parts[1].get_content().strip() == MESSAGE.html
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert parsed["Subject"] == MESSAGE.subject
    assert parsed["To"] == "olena@example.org"
    assert parsed["From"] == "Referrals <care@example.org>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed["Date"]


def test_email_without_html_is_plain_text() -> None:
    email = build_email(SMTP, "olena@example.org", RenderedMessage("Subject", "Body\n"))
    assert email.get_content_type() == "text/plain"


@pytest.mark.parametrize(
    "recipient",
    ["not-an-address", "", "olena@", "a@b.org\r\nBcc: spy@evil.example", "<olena@example.org>"],
)
async def test_an_invalid_address_is_refused_before_connecting(recipient: str) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        await EmailChannel(SMTP).send(recipient, MESSAGE)
    assert raised.value.code is E.INVALID_RECIPIENT


def test_smtp_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        SmtpSettings(username="user")
    with pytest.raises(ValidationError):
        SmtpSettings(from_address="no address")
    assert SmtpSettings().tls is SmtpTls.STARTTLS


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "x@example.org")]
            ),
            PERM,
            E.INVALID_RECIPIENT,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "4.2.1 mailbox busy", "x@example.org")]
            ),
            TRANS,
            E.PROVIDER_UNAVAILABLE,
        ),
        (
            aiosmtplib.SMTPRecipientRefused(553, "5.1.3 bad address", "x@example.org"),
            PERM,
            E.INVALID_RECIPIENT,
        ),
        (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), TRANS, E.PROVIDER_UNAVAILABLE),
        (aiosmtplib.SMTPDataError(554, "5.7.1 spam"), PERM, E.REJECTED),
        (aiosmtplib.SMTPSenderRefused(553, "5.7.1 not yours", "a@b.c"), PERM, E.REJECTED),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"), PERM, E.REJECTED),
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 try later"), TRANS, E.PROVIDER_UNAVAILABLE),
        (aiosmtplib.SMTPConnectError("refused"), TRANS, E.PROVIDER_UNAVAILABLE),
        (aiosmtplib.SMTPServerDisconnected("gone"), TRANS, E.PROVIDER_UNAVAILABLE),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), TRANS, E.TIMEOUT),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TRANS, E.TIMEOUT),
        (ConnectionRefusedError(111, "refused"), TRANS, E.PROVIDER_UNAVAILABLE),
        (aiosmtplib.SMTPNotSupported("STARTTLS not supported"), PERM, E.OTHER),
    ],
)
def test_smtp_errors_are_classified(
    exc: Exception, kind: type[DeliveryError], code: NotificationError
) -> None:
    assert_error(classify_smtp_error(exc), kind, code)


def test_smtp_error_details_do_not_name_the_recipient() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "olena@example.org")]
    )
    assert "olena" not in str(classify_smtp_error(refused))


# The wire form: `email_bytes` writes what aiosmtplib writes for `build_email`'s message, byte for
# byte (the boundaries are random in both: they are matched up; the Date is the same instant).

FIXED_NOW = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
RENDERER = Renderer()
CALENDAR = Attachment(
    "meeting.ics",
    "text/calendar",
    b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    (("method", "REQUEST"),),
)
ODD_MESSAGES = {
    "text only": RenderedMessage("Subject", "Body\n"),
    "text and a file": RenderedMessage("Subject", "Тіло\n", attachments=(CALENDAR,)),
    "long ASCII subject": RenderedMessage("Request 3F0F-6C7D: " + "word " * 30, "Body\n"),
    "encoded-word look-alike": RenderedMessage("=?utf-8?q?hi?= 3F0F-6C7D", "Body\n"),
    "spaces": RenderedMessage("  two  spaces ", "x" * 200 + "\n" + "é" * 100, html="<p>é</p>"),
    "long lines": RenderedMessage("S", "\n".join(["a" * 90 + "é"] * 12), html="é" * 50),
    "empty text": RenderedMessage("S", "", html=""),
}


def _wire_pairs() -> list[tuple[str, RenderedMessage]]:
    samples = [
        (f"{trigger}/{locale}", RENDERER.render(trigger, sample_context(trigger, locale), C.EMAIL))
        for trigger in T
        for locale in ("uk", "en")
    ]
    return samples + list(ODD_MESSAGES.items())


def _same_boundaries(expected: bytes, written: bytes) -> bytes:
    pattern = re.compile(rb'boundary="([^"]+)"')
    for theirs, ours in zip(pattern.findall(expected), pattern.findall(written), strict=True):
        expected = expected.replace(theirs, ours)
    return expected


@pytest.mark.parametrize("eight_bit", [True, False], ids=["8BITMIME", "7bit"])
@pytest.mark.parametrize(
    "settings",
    [SMTP, SMTP.model_copy(update={"from_name": "Направлення", "from_address": "a@b.example"})],
    ids=["plain from", "named from"],
)
@pytest.mark.parametrize("recipient", ["olena@example.org", "o.k+tag-" + "x" * 80 + "@ex.org"])
@pytest.mark.parametrize(
    ("name", "message"), _wire_pairs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_wire_form_is_what_the_email_package_writes(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    message: RenderedMessage,
    recipient: str,
    settings: SmtpSettings,
    eight_bit: bool,
) -> None:
    monkeypatch.setattr(email_channel, "utc_now", lambda: FIXED_NOW)
    message = replace(message, notification_id=uuid.UUID(int=7))
    written = email_bytes(settings, recipient, message, eight_bit=eight_bit)
    expected = flatten_message(
        build_email(settings, recipient, message), cte_type="8bit" if eight_bit else "7bit"
    )
    assert written == _same_boundaries(expected, written)
    # CRLF line ends only: its length is the SIZE the channel declares without normalizing it.
    assert normalize_message_line_endings(written) == written


@pytest.mark.parametrize(
    "recipient", ["olena..x@example.org", "олена@example.org", "olena@care_team.example.org"]
)
def test_an_address_that_is_not_plain_is_left_to_the_email_package(recipient: str) -> None:
    assert not plain_address(recipient)
    with pytest.raises(ValueError, match="plain"):
        email_bytes(SMTP, recipient, MESSAGE)


# --- SMS ---------------------------------------------------------------------------------------
# The provider itself (form, credentials, outbound guard, classification) is the platform's
# shared one: tests/unit/test_sms.py. Here: the channel over it, and what `notification.failed`
# says for each of the provider's refusals.

TWILIO = TwilioSettings(
    base_url="https://sms.example.org",
    account_sid="AC0123456789abcdef0123456789abcdef",
    auth_token="tok-secret",
    from_number="+4915112345678",
)


async def _public(host: str, port: int) -> list[IPAddress]:
    return [ipaddress.ip_address("93.184.215.14")]


def provider_answering(
    status: int, body: dict[str, object], seen: list[httpx.Request]
) -> TwilioSmsProvider:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return TwilioSmsProvider(
        TWILIO,
        client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
        policy=OutboundPolicy(require_https=True, resolve=_public),
    )


async def test_the_sms_channel_sends_the_text_and_keeps_the_providers_id() -> None:
    seen: list[httpx.Request] = []
    provider = provider_answering(201, {"sid": "SM123", "status": "queued"}, seen)
    receipt = await SmsChannel(provider).send(
        "+380671234567", RenderedMessage("s", "Запит X: є новини.")
    )

    assert receipt.channel is NotificationChannel.SMS and receipt.provider_id == "SM123"
    (request,) = seen
    assert request.headers["Host"] == "sms.example.org"
    form = parse_qs(request.content.decode())
    assert form == {
        "To": ["+380671234567"],
        "From": ["+4915112345678"],
        "Body": ["Запит X: є новини."],
    }
    scheme, credentials = request.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{TWILIO.account_sid}:tok-secret"


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"code": 21211, "message": "Invalid 'To' number"}, PERM, E.INVALID_RECIPIENT),
        (400, {"code": 21614, "message": "not a mobile number"}, PERM, E.INVALID_RECIPIENT),
        (400, {"code": 21602, "message": "Message body is required"}, PERM, E.REJECTED),
        (401, {"code": 20003, "message": "Authenticate"}, PERM, E.REJECTED),
        (408, {}, TRANS, E.TIMEOUT),
        (429, {"code": 20429, "message": "Too Many Requests"}, TRANS, E.PROVIDER_UNAVAILABLE),
        (503, {}, TRANS, E.PROVIDER_UNAVAILABLE),
    ],
)
async def test_sms_refusals_become_the_channels_delivery_errors(
    status: int, body: dict[str, object], kind: type[DeliveryError], code: NotificationError
) -> None:
    channel = SmsChannel(provider_answering(status, body, []))
    with pytest.raises(DeliveryError) as raised:
        await channel.send("+380671234567", RenderedMessage("s", "hi"))
    assert_error(raised.value, kind, code)
    assert raised.value.status_code == status


async def test_an_unreachable_sms_provider_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider = TwilioSmsProvider(
        TWILIO,
        client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
        policy=OutboundPolicy(require_https=True, resolve=_public),
    )
    with pytest.raises(TransientDeliveryError) as raised:
        await SmsChannel(provider).send("+380671234567", RenderedMessage("s", "hi"))
    assert raised.value.code is E.PROVIDER_UNAVAILABLE


async def test_an_sms_provider_on_an_internal_address_is_a_permanent_failure() -> None:
    seen: list[httpx.Request] = []

    async def loopback(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": "SM1"})

    provider = TwilioSmsProvider(
        TWILIO,
        client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
        policy=OutboundPolicy(require_https=True, resolve=loopback),
    )
    with pytest.raises(PermanentDeliveryError) as raised:
        await SmsChannel(provider).send("+380671234567", RenderedMessage("s", "hi"))
    assert raised.value.code is E.OTHER and seen == []


@pytest.mark.parametrize("number", ["0671234567", "+0671234567", "+38 067 123 45 67", "", "+1"])
async def test_a_number_that_is_not_e164_is_refused_without_a_request(number: str) -> None:
    seen: list[httpx.Request] = []
    channel = SmsChannel(provider_answering(201, {"sid": "SM1"}, seen))
    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(number, RenderedMessage("s", "hi"))
    assert raised.value.code is E.INVALID_RECIPIENT
    assert seen == []


# --- webhook -----------------------------------------------------------------------------------

TARGET = WebhookTarget(url="https://front.example.org/hooks/referrals", secret="s" * 32)
BODY = RenderedMessage(subject="case_ready", text=json.dumps({"trigger": "case_ready", "x": "ї"}))


def webhook_answering(
    status: int, seen: list[httpx.Request], clock: float = 1_776_250_800
) -> WebhookChannel:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers={"X-Request-Id": "req-7"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return WebhookChannel(client=client, clock=lambda: clock, policy=PUBLIC_DNS)


async def _front_end_resolves_publicly(host: str, port: int) -> list[IPAddress]:
    assert host == "front.example.org"
    return [ipaddress.ip_address("93.184.215.14")]


PUBLIC_DNS = OutboundPolicy(require_https=True, resolve=_front_end_resolves_publicly)


async def test_webhook_request_is_signed_json() -> None:
    seen: list[httpx.Request] = []
    receipt = await webhook_answering(204, seen).send(TARGET, BODY)

    assert receipt.channel is NotificationChannel.WEBHOOK and receipt.provider_id == "req-7"
    (request,) = seen
    # Sent to the address that was checked, still named by its host for HTTP and TLS.
    assert str(request.url) == "https://93.184.215.14/hooks/referrals"
    assert request.headers["Host"] == "front.example.org"
    assert request.extensions["sni_hostname"] == "front.example.org"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[EVENT_HEADER] == "case_ready"
    assert request.headers[TIMESTAMP_HEADER] == "1776250800"
    assert request.content == BODY.text.encode()
    assert verify_signature(
        "s" * 32,
        request.headers[TIMESTAMP_HEADER],
        request.content,
        request.headers[SIGNATURE_HEADER],
        now=1_776_250_801,
    )


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (500, TRANS, E.WEBHOOK_HTTP_ERROR),
        (502, TRANS, E.WEBHOOK_HTTP_ERROR),
        (429, TRANS, E.WEBHOOK_HTTP_ERROR),
        (408, TRANS, E.TIMEOUT),
        (410, PERM, E.REJECTED),
        (401, PERM, E.REJECTED),
        (307, PERM, E.REJECTED),
    ],
)
async def test_webhook_answers_are_classified(
    status: int, kind: type[DeliveryError], code: NotificationError
) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(DeliveryError) as raised:
        await webhook_answering(status, seen).send(TARGET, BODY)
    assert_error(raised.value, kind, code)
    assert len(seen) == 1  # a redirect is not followed


def test_a_webhook_secret_must_be_long() -> None:
    with pytest.raises(ValidationError):
        WebhookTarget(url="https://front.example.org/hook", secret="short")
