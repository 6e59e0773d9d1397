"""E-mail through real SMTP servers on loopback: what arrives, and what refusals do to retries."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from icalendar import Calendar

from devstack.mailsink import list_messages, start_mailsink
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationError as E
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.channels import email as email_channel
from referrals_notifications.channels.base import PermanentDeliveryError
from referrals_notifications.channels.email import EmailChannel, SmtpSettings, SmtpTls
from referrals_notifications.channels.retry import RetryPolicy, deliver_with_retry
from referrals_notifications.rendering import RenderedMessage, Renderer

from ...unit.notifications.samples import MEETING_ID, sample_context
from .conftest import SmtpRecorder, StartSmtp

pytestmark = pytest.mark.integration

PATIENT = "olena.patient@example.org"
QUICK = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def smtp(port: int, **overrides: object) -> SmtpSettings:
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": SmtpTls.NONE,
        "timeout": 5,
        "from_address": "care@referrals.example",
        "from_name": "Referrals",
    }
    return SmtpSettings.model_validate(settings | overrides)


@pytest.fixture(scope="module")
def message() -> RenderedMessage:
    context = sample_context(T.REFERRAL_REQUESTED, "uk")
    return Renderer().render(T.REFERRAL_REQUESTED, context, C.EMAIL)


async def test_an_email_arrives_with_both_parts_and_the_right_headers(
    tmp_path: Path, message: RenderedMessage
) -> None:
    sink = await start_mailsink("127.0.0.1", 0, tmp_path / "mail")
    try:
        receipt = await EmailChannel(smtp(sink.port)).send(PATIENT, message)
    finally:
        await sink.close()

    (stored,) = list_messages(tmp_path / "mail")
    assert stored.recipients == (PATIENT,)
    assert stored.sender == "care@referrals.example"
    assert stored.subject == message.subject == "Запит 3F0F-6C7D: надіслано до центру на розгляд"
    email = stored.message()
    assert email["From"] == "Referrals <care@referrals.example>"
    assert email["To"] == PATIENT
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Message-ID"] == receipt.provider_id
    assert email.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in email.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert stored.text() == message.text
    assert (stored.html() or "").strip() == (message.html or "").strip()
    assert receipt.channel is C.EMAIL


async def test_the_meeting_booking_arrives_with_its_calendar_file(tmp_path: Path) -> None:
    """Through a real SMTP conversation into the mail sink: text, HTML and the .ics, whose bytes
    (CRLF line ends, folded lines) arrive as they were made and parse back as the booking."""
    booking = Renderer().render(T.MEETING_BOOKED, sample_context(T.MEETING_BOOKED, "uk"), C.EMAIL)
    sink = await start_mailsink("127.0.0.1", 0, tmp_path / "mail")
    try:
        await EmailChannel(smtp(sink.port)).send(PATIENT, booking)
    finally:
        await sink.close()

    (stored,) = list_messages(tmp_path / "mail")
    assert stored.subject == booking.subject == "Запит 3F0F-6C7D: вас записано на консультацію"
    assert stored.text() == booking.text
    assert (stored.html() or "").strip() == (booking.html or "").strip()
    email = stored.message()
    assert email.get_content_type() == "multipart/mixed"
    (attachment,) = email.iter_attachments()
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "meeting.ics"
    content = attachment.get_payload(decode=True)
    assert content == booking.attachments[0].content
    calendar = Calendar.from_ical(content)
    (event,) = calendar.walk("VEVENT")
    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == f"{MEETING_ID}@referrals"
    assert len(event.walk("VALARM")) == 2


async def test_greylisting_twice_then_accepted_is_delivered_exactly_once(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = SmtpRecorder(refuse_data=2)
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)

    assert outcome.delivered, outcome.error
    assert outcome.attempts == 3
    assert server.data_calls == 3
    assert len(server.accepted) == 1
    received = message_from_bytes(server.accepted[0], policy=policy.default)
    assert received["Subject"] == message.subject


async def test_every_attempt_of_one_notification_carries_its_message_id(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    """A repeat (a retry, or a resend after a crash before the sender recorded the 250) has the
    Message-ID of the first attempt, so the receiving side can drop it; another notification
    has another one."""
    server = SmtpRecorder(refuse_data=2)
    channel = EmailChannel(smtp(await start_smtp(server)))
    notification = replace(message, notification_id=uuid.uuid4())

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, notification), QUICK)
    again = await channel.send(PATIENT, notification)
    other = await channel.send(PATIENT, replace(message, notification_id=uuid.uuid4()))

    assert outcome.delivered, outcome.error
    ids = [
        str(message_from_bytes(raw, policy=policy.default)["Message-ID"]).strip()
        for raw in server.received
    ]
    assert len(ids) == 5
    assert set(ids[:4]) == {f"<notification.{notification.notification_id}@referrals.example>"}
    assert again.provider_id == ids[0]
    assert ids[4] == other.provider_id != ids[0]


async def test_a_refused_recipient_is_not_retried(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = SmtpRecorder(rcpt_reply="550 5.1.1 No such user here")
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)

    assert not outcome.delivered
    assert outcome.attempts == 1
    assert isinstance(outcome.error, PermanentDeliveryError)
    assert outcome.error.code is E.INVALID_RECIPIENT
    assert server.rcpt_calls == 1
    assert server.data_calls == 0
    assert server.accepted == []


async def test_a_permanent_refusal_of_the_message_is_not_retried(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = SmtpRecorder(refuse_data=10, data_reply="554 5.7.1 Message refused")
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)

    assert outcome.attempts == 1 and server.data_calls == 1
    assert outcome.error is not None and outcome.error.code is E.REJECTED


async def test_a_server_that_keeps_refusing_uses_up_the_attempts(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = SmtpRecorder(refuse_data=10)
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)

    assert outcome.attempts == QUICK.attempts == server.data_calls
    assert outcome.error is not None and outcome.error.code is E.PROVIDER_UNAVAILABLE
    assert server.accepted == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_no_server_at_all_is_transient(message: RenderedMessage) -> None:
    channel = EmailChannel(smtp(closed_port()))
    outcome = await deliver_with_retry(
        lambda: channel.send(PATIENT, message), RetryPolicy(attempts=2, base_delay=0.01)
    )
    assert outcome.attempts == 2
    assert outcome.error is not None and outcome.error.code is E.PROVIDER_UNAVAILABLE


class Credentials:
    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data.login.decode())
        ok = auth_data.login == b"notifications" and auth_data.password == b"s3cret-pass"
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235 or 535


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_credentials_are_used_and_wrong_ones_are_permanent(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server, credentials = SmtpRecorder(), Credentials()
    port = await start_smtp(
        server, authenticator=credentials, auth_required=True, auth_require_tls=False
    )

    good = smtp(port, username="notifications", password="s3cret-pass")
    await EmailChannel(good).send(PATIENT, message)
    assert len(server.accepted) == 1

    bad = smtp(port, username="notifications", password="wrong")
    outcome = await deliver_with_retry(lambda: EmailChannel(bad).send(PATIENT, message), QUICK)
    assert outcome.attempts == 1
    assert outcome.error is not None and outcome.error.code is E.REJECTED
    assert len(server.accepted) == 1
    assert set(credentials.logins) == {"notifications"}  # PLAIN, then LOGIN for the wrong one
    assert len(credentials.logins) >= 2


async def test_starttls_is_required_not_hoped_for(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = SmtpRecorder()  # a server that does not offer STARTTLS
    channel = EmailChannel(smtp(await start_smtp(server), tls=SmtpTls.STARTTLS))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)

    assert outcome.attempts == 1
    assert isinstance(outcome.error, PermanentDeliveryError)
    assert server.accepted == []


@pytest.mark.parametrize(
    ("decode_data", "eight_bit"), [(False, True), (True, False)], ids=["8BITMIME", "7-bit only"]
)
@pytest.mark.parametrize(
    "recipient", [PATIENT, "olena@care_team.example.org"], ids=["plain", "the email package's"]
)
async def test_what_arrives_is_the_same_message_whatever_the_server_takes(
    start_smtp: StartSmtp, decode_data: bool, eight_bit: bool, recipient: str
) -> None:
    """A server that takes no 8-bit data (no 8BITMIME: aiosmtpd decoding data) gets only 7-bit
    bytes; either way the parts decode to the rendered words. The directly written bytes and
    the `email` package's (an address that is not plain) arrive alike."""
    booking = Renderer().render(T.MEETING_BOOKED, sample_context(T.MEETING_BOOKED, "uk"), C.EMAIL)
    booking = replace(booking, text="Доброго дня, Олено!\n")  # short lines: 8-bit if it may be
    server = SmtpRecorder()
    channel = EmailChannel(smtp(await start_smtp(server, decode_data=decode_data)))

    receipt = await channel.send(recipient, booking)

    (raw,) = server.accepted
    assert raw.isascii() is not eight_bit  # 8-bit bodies only where the server takes them
    email = message_from_bytes(raw, policy=policy.default)
    assert email["To"].addresses[0].addr_spec == recipient
    assert email["Subject"] == booking.subject
    assert email["Message-ID"] == receipt.provider_id
    for subtype, rendered in (("plain", booking.text), ("html", booking.html or "")):
        part = email.get_body((subtype,))
        assert part is not None
        assert part.get_content().replace("\r\n", "\n").strip() == rendered.strip()
    (attachment,) = email.iter_attachments()
    assert attachment.get_payload(decode=True) == booking.attachments[0].content


async def test_the_host_name_is_looked_up_once_not_for_every_message(
    start_smtp: StartSmtp, message: RenderedMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []

    def getfqdn(name: str = "") -> str:
        looked_up.append(name)
        return "sender.referrals.test"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    server = SmtpRecorder()
    channel = EmailChannel(smtp(await start_smtp(server)))

    for _ in range(3):
        await channel.send(PATIENT, message)

    assert len(server.accepted) == 3
    assert looked_up == [""]


@dataclass
class ConnectionCounter(SmtpRecorder):
    """Counts the connections (each greets once); `drop_at_mail` closes a connection that
    delivered a message when the next MAIL arrives on it, as a server that timed it out in the
    instant the client chose it again."""

    drop_at_mail: bool = False
    connections: int = 0
    disconnected: int = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.drop_at_mail and getattr(session, "delivered", False):
            self.disconnected += 1
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        session.delivered = True  # type: ignore[attr-defined]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


async def test_one_connection_carries_the_messages_sent_one_after_another(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    """Connecting, greeting and saying goodbye cost both sides more than the message: a
    connection that delivered one is kept for the next."""
    server = ConnectionCounter()
    channel = EmailChannel(smtp(await start_smtp(server)))

    receipts = [
        await channel.send(PATIENT, replace(message, notification_id=uuid.uuid4()))
        for _ in range(5)
    ]
    await channel.aclose()

    assert server.connections == 1
    ids = [
        str(message_from_bytes(raw, policy=policy.default)["Message-ID"]).strip()
        for raw in server.accepted
    ]
    assert ids == [r.provider_id for r in receipts]


async def test_messages_sent_at_the_same_time_each_have_a_connection_then_reuse_them(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = ConnectionCounter()
    channel = EmailChannel(smtp(await start_smtp(server)))

    for _ in range(3):
        await asyncio.gather(*(channel.send(PATIENT, message) for _ in range(4)))

    assert len(server.accepted) == 12
    assert server.connections == 4


async def test_a_connection_the_server_dropped_is_replaced_and_the_message_sent_once(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    server = ConnectionCounter(drop_at_mail=True)
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcomes = [
        await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK) for _ in range(3)
    ]

    assert [o.attempts for o in outcomes] == [1, 1, 1]  # no attempt lost to a dropped connection
    assert server.disconnected == 2
    assert server.connections == 3
    assert len(server.accepted) == server.data_calls == 3


async def test_a_connection_that_failed_or_idled_too_long_is_not_used_again(
    start_smtp: StartSmtp, message: RenderedMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ConnectionCounter(refuse_data=1)
    channel = EmailChannel(smtp(await start_smtp(server)))

    outcome = await deliver_with_retry(lambda: channel.send(PATIENT, message), QUICK)
    assert outcome.delivered and outcome.attempts == 2
    assert server.connections == 2  # the refused message's connection was closed

    monkeypatch.setattr(email_channel, "REUSE_WITHIN", 0.0)
    await channel.send(PATIENT, message)
    assert server.connections == 3
    assert len(server.accepted) == 2


@dataclass
class SizeRecorder(SmtpRecorder):
    """Also keeps the SIZE each MAIL declared (RFC 1870)."""

    sizes: list[str] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.sizes += [option.split("=", 1)[1] for option in options if option.startswith("SIZE=")]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


async def test_the_declared_size_is_the_size_of_the_message_that_arrives(
    start_smtp: StartSmtp, message: RenderedMessage
) -> None:
    """The channel declares its wire form's length (CRLF line ends already) without a pass that
    normalizes them: what arrives is exactly that long."""
    recorder = SizeRecorder()
    port = await start_smtp(recorder, data_size_limit=10_000_000)
    channel = EmailChannel(smtp(port))
    try:
        for _ in range(2):
            await channel.send(PATIENT, message)
    finally:
        await channel.aclose()
    assert len(recorder.accepted) == 2
    assert recorder.sizes == [str(len(content)) for content in recorder.accepted]
