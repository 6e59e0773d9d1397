"""Notifications over real Kafka, PostgreSQL and SMTP (aiosmtpd on loopback): the platform's
events, published as intake, translation and partners would, become e-mails in the patient's
language exactly once, and signed webhooks to the partner front end."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from faststream.kafka import KafkaBroker
from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError

from devstack.process import free_port
from referrals_common.contracts import (
    CaseContactShared,
    CaseSubmitted,
    CaseUnroutable,
    CaseWithdrawn,
    DocumentStored,
    DocumentTranslationRequired,
    ReferralAccepted,
    ReferralDeclined,
    ReferralInfoRequested,
    ReferralOpinionDelivered,
    ReferralRequested,
    new_event,
    topics,
)
from referrals_common.crypto import SealedBox
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_common.webhooks import verify
from referrals_notifications import consumers
from referrals_notifications.bootstrap import build_runtime, build_sender
from referrals_notifications.channels.email import SmtpSettings, SmtpTls
from referrals_notifications.config import NotificationsSettings
from referrals_notifications.main import MIGRATIONS, run_sender_loop
from referrals_notifications.models import Delivery, OpsAlert

from ..conftest import publish

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = SealedBox.generate_keypair_base64()
FRONT_END_SECRET = "front-end-secret-0123456789"


class Mailbox:
    """An SMTP server on loopback that refuses the first `refuse` messages with a 451."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.refused = 0
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refused < self.refuse:
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


class Receiver:
    """The partner front end's webhook endpoint."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def notifications_running(
    new_database,
    local_stack,
    mailbox: Mailbox,
    receiver: Receiver | None = None,
    wrap_email: Callable[[Any], Any] | None = None,
    **settings_extra: Any,
) -> AsyncIterator[Any]:
    """Notifications' consumer, relay and sender on the test stack; `settings_extra` are more
    settings (an SMS account), added to the outbound allow-list's entries rather than
    replacing them."""
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server = serving = None
    webhooks: dict[str, Any] = {}
    if receiver is not None:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None)
        )
        serving = asyncio.create_task(server.serve())
        webhooks = {
            "kyiv-clinic": {"url": f"http://127.0.0.1:{port}/hook", "secret": FRONT_END_SECRET}
        }
    dsn = await new_database("notifications")
    await upgrade_async(dsn, MIGRATIONS)
    bootstrap = local_stack.kafka_bootstrap
    settings = NotificationsSettings(
        postgres=PostgresSettings(dsn=dsn),
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        contact_private_key=PRIVATE,
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, tls=SmtpTls.NONE, timeout=5),
        front_end_webhooks=webhooks,
        outbound_allowed_targets=[
            *([f"127.0.0.1:{port}"] if receiver is not None else []),
            *settings_extra.pop("outbound_allowed_targets", []),
        ],
        **settings_extra,
        quick_attempts=3,
        quick_backoff_seconds=0.05,
        round_backoff_seconds=0.2,
        sender_interval_seconds=0.1,
    )
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)
    rt = build_runtime(settings)
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    broker = KafkaBroker(bootstrap, logger=None)
    consumers.build_consumer(rt.notifications, rt.db, dead).subscribe(
        broker, *consumers.SUBSCRIBED_TOPICS
    )
    relay = OutboxRelay(settings.postgres.asyncpg_dsn(), bootstrap)
    await relay.start()
    relay_task = asyncio.create_task(relay.run())
    sender = build_sender(settings, rt.db)
    if wrap_email is not None:
        sender.channels.email = wrap_email(sender.channels.email)
    stop = asyncio.Event()
    sending = asyncio.create_task(run_sender_loop(sender, 0.1, stop))
    await broker.start()
    try:
        yield rt
    finally:
        stop.set()
        await sending
        await broker.stop()
        await relay.stop()
        await relay_task
        await dead.stop()
        await rt.db.dispose()
        smtp.stop()
        if server is not None:
            server.should_exit = True
            await serving


def submitted_case(locale: str, address: str) -> tuple[uuid.UUID, list[Any]]:
    case_id = uuid.uuid4()
    contact = SealedBox(public_key_b64=PUBLIC).seal_json(
        {"email": address, "phone": "+380501234567", "preferred_channel": "email"},
        bound_to=str(case_id),
    )
    events = [
        new_event(
            CaseContactShared(
                case_id=case_id, sealed_contact=contact, locale=locale, front_end="kyiv-clinic"
            )
        ),
        new_event(
            CaseSubmitted(
                case_id=case_id,
                clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
                destination={"preference": "countries", "countries": ["DE"]},
                locale=locale,
                processing_consent_version="2026-01",
                cross_border_consent_version="2026-01",
                submitted_at=datetime.now(UTC),
            )
        ),
    ]
    return case_id, events


async def wait_until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


async def deliveries(rt, case_id) -> list[Delivery]:
    async with rt.db.unit_of_work() as uow:
        rows = await uow.session.execute(select(Delivery).where(Delivery.case_id == case_id))
        return list(rows.scalars())


async def test_every_trigger_reaches_the_patient_in_their_language_once(new_database, local_stack):
    mailbox = Mailbox()
    async with notifications_running(new_database, local_stack, mailbox) as rt:
        bootstrap = local_stack.kafka_bootstrap
        uk_case, uk_events = submitted_case("uk", "olena.petrenko@example.org")
        en_case, en_events = submitted_case("en", "olena.en@example.org")
        referral = uuid.uuid4()
        doc = uuid.uuid4()
        journey = [
            new_event(
                DocumentStored(
                    case_id=uk_case,
                    document_id=doc,
                    kind="discharge_summary",
                    media_type="application/pdf",
                    size_bytes=1200,
                    sha256="cd" * 32,
                    object_key=f"cases/{uk_case}/{doc}",
                    stored_at=datetime.now(UTC),
                )
            ),
            new_event(
                DocumentTranslationRequired(
                    case_id=uk_case,
                    document_id=doc,
                    detected_language="uk",
                    acceptable_languages=["en", "de"],
                    confidence=0.99,
                )
            ),
            new_event(
                ReferralRequested(
                    case_id=uk_case,
                    referral_id=referral,
                    center_code="sample-breast-center-berlin",
                    center_country="DE",
                    center_name="Sample Breast Center Berlin",
                    attempt=1,
                    answer_due_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
                    rationale="Reviews C50, reads German and English.",
                )
            ),
            new_event(
                ReferralDeclined(
                    case_id=uk_case,
                    referral_id=referral,
                    center_code="sample-breast-center-berlin",
                    reason="no_capacity",
                )
            ),
            new_event(
                ReferralInfoRequested(
                    case_id=uk_case,
                    referral_id=referral,
                    center_code="sample-breast-center-berlin",
                    message="Please send the HER2 report.",
                )
            ),
            new_event(
                ReferralAccepted(
                    case_id=uk_case,
                    referral_id=referral,
                    center_code="sample-breast-center-berlin",
                    expected_opinion_at=datetime.now(UTC) + timedelta(days=7),
                )
            ),
            new_event(
                ReferralOpinionDelivered(
                    case_id=uk_case,
                    referral_id=referral,
                    center_code="sample-breast-center-berlin",
                    opinion_document_id=uuid.uuid4(),
                )
            ),
        ]
        endings = [
            new_event(CaseUnroutable(case_id=en_case, reason="no_eligible_center")),
            new_event(CaseWithdrawn(case_id=en_case, reason="patient_request")),
        ]
        # Every event twice, as a redelivery after a consumer crash would bring it.
        await publish(bootstrap, *uk_events, *journey, *en_events, *endings, times=2)
        await wait_until(
            lambda: len(mailbox.to("olena.petrenko")) >= 7 and len(mailbox.to("olena.en")) >= 3
        )
        await asyncio.sleep(1.0)  # anything doubled would arrive now

        uk_mail = mailbox.to("olena.petrenko")
        en_mail = mailbox.to("olena.en")
        assert len(uk_mail) == 7, [m["Subject"] for m in uk_mail]
        assert len(en_mail) == 3, [m["Subject"] for m in en_mail]
        for message in uk_mail:
            text = message.get_body(("plain",)).get_content()
            assert any("\u0400" <= ch <= "\u04ff" for ch in text), message["Subject"]
            assert message.get_body(("html",)) is not None
        for message in en_mail:
            text = message.get_body(("plain",)).get_content()
            assert not any("\u0400" <= ch <= "\u04ff" for ch in text), message["Subject"]
        assert len({m["Subject"] for m in uk_mail}) == 7  # seven different messages
        all_uk = "\n".join(m.get_body(("plain",)).get_content() for m in uk_mail)
        assert "Sample Breast Center Berlin" in all_uk
        assert "Please send the HER2 report." in all_uk

        sent = await deliveries(rt, uk_case)
        patient = [d for d in sent if d.audience == "patient"]
        assert len(patient) == 7 and {d.status for d in patient} == {"sent"}
        assert {d.channel for d in patient} == {"email"}
        # Each e-mail's Message-ID names its delivery: a resend would carry the same one.
        assert {str(m["Message-ID"]).strip().split("@")[0] for m in uk_mail} == {
            f"<notification.{d.id}" for d in patient
        }
        async with rt.db.unit_of_work() as uow:
            alerts = (
                (await uow.session.execute(select(OpsAlert).where(OpsAlert.case_id == en_case)))
                .scalars()
                .all()
            )
            # Events of these two cases only: the topics may hold other tests' cases too.
            outbox = await uow.session.execute(
                sql(
                    "select event_type, count(*) from outbox"
                    " where aggregate_id in (:uk, :en) group by event_type"
                ),
                {"uk": str(uk_case), "en": str(en_case)},
            )
        assert [a.kind for a in alerts] == ["case_unroutable"]
        # One notification.sent per message, and nothing else.
        assert dict(outbox.all()) == {"referrals.notification.sent.v1": 10}


async def test_an_smtp_server_that_refuses_twice_gets_the_message_once(new_database, local_stack):
    mailbox = Mailbox(refuse=2)
    async with notifications_running(new_database, local_stack, mailbox) as rt:
        case_id, events = submitted_case("en", "refused.twice@example.org")
        await publish(local_stack.kafka_bootstrap, *events)
        await wait_until(lambda: len(mailbox.messages) >= 1)
        await asyncio.sleep(1.0)
        assert mailbox.refused == 2
        assert len(mailbox.messages) == 1
        [delivery] = [d for d in await deliveries(rt, case_id) if d.audience == "patient"]
        assert delivery.status == "sent"
        assert delivery.attempts == 3


async def test_the_front_end_gets_a_signed_webhook_without_contact_data(new_database, local_stack):
    mailbox, receiver = Mailbox(), Receiver()
    async with notifications_running(new_database, local_stack, mailbox, receiver):
        case_id, events = submitted_case("uk", "hook.case@example.org")
        await publish(local_stack.kafka_bootstrap, *events)
        await wait_until(lambda: len(receiver.calls) >= 1 and len(mailbox.messages) >= 1)
        headers, body = receiver.calls[0]
        verify(
            FRONT_END_SECRET,
            body,
            headers["x-referrals-timestamp"],
            headers["x-referrals-signature"],
        )
        payload = json.loads(body)
        assert payload["case_id"] == str(case_id)
        assert payload["trigger"] == "case_submitted"
        assert "hook.case" not in body.decode() and "+380" not in body.decode()


async def test_a_contact_sealed_to_another_key_fails_alone(new_database, local_stack):
    """A contact notifications cannot open is a failed delivery with an ops alert; the other
    cases' messages still go out (one bad row does not stall the sender)."""
    mailbox = Mailbox()
    async with notifications_running(new_database, local_stack, mailbox) as rt:
        bad_case, bad_events = submitted_case("uk", "wrong.key@example.org")
        _, other_public = SealedBox.generate_keypair_base64()
        bad_events[0] = new_event(
            CaseContactShared(
                case_id=bad_case,
                sealed_contact=SealedBox(public_key_b64=other_public).seal_json(
                    {"email": "wrong.key@example.org", "phone": None, "preferred_channel": "email"},
                    bound_to=str(bad_case),
                ),
                locale="uk",
                front_end="kyiv-clinic",
            )
        )
        _, good_events = submitted_case("en", "right.key@example.org")
        await publish(local_stack.kafka_bootstrap, *bad_events, *good_events)
        await wait_until(lambda: len(mailbox.to("right.key")) == 1)

        async def failed() -> list[Delivery]:
            return [d for d in await deliveries(rt, bad_case) if d.status == "failed"]

        async with asyncio.timeout(30):
            while not await failed():
                await asyncio.sleep(0.1)
        [delivery] = await failed()
        assert delivery.error_code == "other"
        assert mailbox.to("wrong.key") == []
        async with rt.db.unit_of_work() as uow:
            alerts = (
                (await uow.session.execute(select(OpsAlert).where(OpsAlert.case_id == bad_case)))
                .scalars()
                .all()
            )
        assert [a.kind for a in alerts] == ["notification_failed"]


class CutAfterAccepted:
    """The real e-mail channel; right after the SMTP server accepts the first message, every
    other connection to the service's database is terminated (as a PostgreSQL restart does), so
    the sender's transaction that would record the message as sent fails."""

    def __init__(self, real: Any, dsn: str) -> None:
        self.real = real
        self.channel = real.channel
        self.dsn = dsn
        self.cut = False

    async def send(self, recipient: str, message: Any) -> Any:
        receipt = await self.real.send(recipient, message)
        if not self.cut:
            self.cut = True
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
        return receipt


async def test_a_message_accepted_before_the_database_went_away_is_not_sent_again(
    new_database, local_stack
):
    mailbox = Mailbox()
    cutters: list[CutAfterAccepted] = []

    def wrap(real: Any) -> Any:
        cutters.append(CutAfterAccepted(real, ""))
        return cutters[0]

    async with notifications_running(new_database, local_stack, mailbox, wrap_email=wrap) as rt:
        cutters[0].dsn = rt.settings.postgres.asyncpg_dsn()
        case_id, events = submitted_case("uk", "olena.cut@example.org")
        await publish(local_stack.kafka_bootstrap, *events)
        await wait_until(lambda: len(mailbox.to("olena.cut")) >= 1)

        async def recorded() -> list[Delivery]:
            try:
                return [d for d in await deliveries(rt, case_id) if d.audience == "patient"]
            except DBAPIError:
                # The cut terminates every connection of the database, this test's pooled one
                # too, possibly in the middle of this read: read again.
                return []

        async with asyncio.timeout(30):
            while not (rows := await recorded()) or rows[0].status != "sent":
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a second e-mail would arrive now

    assert cutters[0].cut, "the database connections were cut after the first acceptance"
    assert len(mailbox.to("olena.cut")) == 1
    (row,) = rows
    assert row.status == "sent" and row.sent_at is not None


class SlowFirst:
    """The real e-mail channel, slow for the first message only (a busy SMTP connection)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.channel = real.channel
        self.calls = 0

    async def send(self, recipient: str, message: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(1.5)
        return await self.real.send(recipient, message)


async def test_a_cases_messages_arrive_in_the_order_of_its_history(new_database, local_stack):
    """The case is received, routed, accepted and answered in quick succession while the first
    e-mail is slow to go out: the later ones wait for it instead of overtaking it (before, they
    went out together in one batch and the outcome could arrive before 'we received your
    case')."""
    mailbox = Mailbox()
    async with notifications_running(
        new_database, local_stack, mailbox, wrap_email=SlowFirst
    ) as rt:
        case_id, events = submitted_case("en", "olena.order@example.org")
        referral = uuid.uuid4()
        center = "sample-breast-center-berlin"
        later = [
            new_event(
                ReferralRequested(
                    case_id=case_id,
                    referral_id=referral,
                    center_code=center,
                    center_country="DE",
                    center_name="Sample Breast Center Berlin",
                    attempt=1,
                    answer_due_at=datetime.now(UTC) + timedelta(days=2),
                    rationale="Reviews C50.",
                )
            ),
            new_event(
                ReferralAccepted(
                    case_id=case_id,
                    referral_id=referral,
                    center_code=center,
                    expected_opinion_at=datetime.now(UTC) + timedelta(days=7),
                )
            ),
            new_event(
                ReferralOpinionDelivered(
                    case_id=case_id,
                    referral_id=referral,
                    center_code=center,
                    opinion_document_id=uuid.uuid4(),
                )
            ),
        ]
        # The submission's events first, until its message is planned: the later events are on
        # another topic, which a loaded consumer may read first (nothing orders two topics).
        await publish(local_stack.kafka_bootstrap, *events)
        async with asyncio.timeout(30):
            while not [d for d in await deliveries(rt, case_id) if d.audience == "patient"]:
                await asyncio.sleep(0.05)
        await publish(local_stack.kafka_bootstrap, *later)
        await wait_until(lambda: len(mailbox.to("olena.order")) >= 4)
        rows = [d for d in await deliveries(rt, case_id) if d.audience == "patient"]
    history = [d.id for d in sorted(rows, key=lambda d: (d.occurred_at, d.created_at))]
    arrived = [
        str(m["Message-ID"]).strip().split("@")[0].removeprefix("<notification.")
        for m in mailbox.to("olena.order")
    ]
    assert arrived == [str(i) for i in history]
