"""What notifications asks PostgreSQL per event and per sender batch, counted (issue 25, cost per
case): every statement as asyncpg sends it (the consumer's go through asyncpg itself inside the
inbox's transaction, where SQLAlchemy's events do not see them). That the messages still go out
in order and exactly once is tested end to end in test_notifications_over_kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from sqlalchemy import select, text

from referrals_common.contracts import (
    CaseContactShared,
    CaseSubmitted,
    ReferralRequested,
    new_event,
)
from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.crypto import SealedBox
from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_notifications.channels.base import DeliveryReceipt, PermanentDeliveryError
from referrals_notifications.main import MIGRATIONS
from referrals_notifications.models import CaseContact, Delivery, OpsAlert
from referrals_notifications.rendering import RenderedMessage, Renderer
from referrals_notifications.repository import NotificationsRepository
from referrals_notifications.sender import Channels, Sender
from referrals_notifications.service import FRONT_END, PATIENT, Notifications
from tests.integration.statements_sent import queries_sent

pytestmark = pytest.mark.integration
tracer = trace.get_tracer(__name__)

CONSUMER = "notifications.triggers"
FRONT = "kyiv-clinic"
PRIVATE, PUBLIC = SealedBox.generate_keypair_base64()


@pytest.fixture
async def db(new_database: Any) -> AsyncIterator[Database]:
    dsn = await new_database("notifications")
    await upgrade_async(dsn, MIGRATIONS)
    database = Database(PostgresSettings(dsn=dsn))
    yield database
    await database.dispose()


async def apply(db: Database, notifications: Notifications, *events: Any) -> None:
    """Each event as the consumer applies it: its inbox row, the use case, one commit."""
    for applied in events:
        async with db.unit_of_work() as uow:
            assert await uow.inbox.record(CONSUMER, applied.id, applied.type)
            await notifications.on_event(uow, applied)
            await uow.commit()


def contact_shared(case_id: uuid.UUID) -> Any:
    sealed = SealedBox(public_key_b64=PUBLIC).seal_json(
        {"email": "olena@example.org"}, bound_to=str(case_id)
    )
    return new_event(
        CaseContactShared(case_id=case_id, sealed_contact=sealed, locale="uk", front_end=FRONT)
    )


def submitted(case_id: uuid.UUID) -> Any:
    return new_event(
        CaseSubmitted(
            case_id=case_id,
            clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
            destination={"preference": "countries", "countries": ["DE"]},
            locale="uk",
            processing_consent_version="2026-01",
            cross_border_consent_version="2026-01",
            submitted_at=datetime.now(UTC),
        )
    )


def requested(case_id: uuid.UUID) -> Any:
    return new_event(
        ReferralRequested(
            case_id=case_id,
            referral_id=uuid.uuid4(),
            center_code="sample-breast-center-berlin",
            center_country="DE",
            center_name="Sample Breast Center Berlin",
            attempt=1,
            answer_due_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
            rationale="Reviews C50.",
        )
    )


async def deliveries(db: Database, case_id: uuid.UUID) -> list[Delivery]:
    async with db.unit_of_work() as uow:
        rows = await uow.session.execute(select(Delivery).where(Delivery.case_id == case_id))
        return sorted(rows.scalars(), key=lambda d: (d.occurred_at, d.audience))


async def test_a_notified_event_is_its_opening_one_statement_and_its_commit(
    db: Database,
) -> None:
    """case.submitted and referral.requested: the inbox row with the BEGIN, one statement that
    writes what the event says (the case's, the referral's row) and the patient's delivery and
    reads whether its front end takes webhooks (was two: the row, then the delivery with the
    audience), the COMMIT."""
    case_id = uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id))
    case, referral = submitted(case_id), requested(case_id)
    for event, table in ((case, "cases_seen"), (referral, "referrals_seen")):
        async with queries_sent(db) as sent:
            await apply(db, notifications, event)
        assert sent.orm == []  # all through asyncpg, in the transaction the inbox opened
        native = sent.native
        assert [query.split()[0].lower() for query in native] == ["begin;", "with", "commit"]
        assert native[0].startswith("begin; insert into inbox")
        written = native[1].lower()
        assert f"insert into {table}" in written and "insert into deliveries" in written
        assert "front_end_webhooks" in written
    rows = await deliveries(db, case_id)
    assert [(row.trigger, row.audience, row.status) for row in rows] == [
        ("case_submitted", PATIENT, "pending"),
        ("referral_requested", PATIENT, "pending"),
    ]
    async with db.unit_of_work() as uow:
        repo = NotificationsRepository(uow)
        seen = await repo.case_seen(case_id)
        assert seen is not None and seen.locale == "uk"
        assert seen.submitted_at == case.data.submitted_at
        center = await repo.referral(referral.data.referral_id)
        assert center is not None and center.case_id == case_id
        assert (center.center_code, center.center_name, center.center_country) == (
            "sample-breast-center-berlin",
            "Sample Breast Center Berlin",
            "DE",
        )


async def test_an_event_replayed_in_a_new_transaction_writes_its_row_again_and_no_delivery(
    db: Database,
) -> None:
    """The row the event says is an upsert in the delivery's statement: a newer word on the
    same case sets it, and the delivery, planned once per event and audience, is not added."""
    case_id = uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    first = submitted(case_id)
    await apply(db, notifications, contact_shared(case_id), first)
    again = new_event(first.data.model_copy(update={"locale": "en"}))
    again = again.model_copy(update={"id": first.id})
    async with db.unit_of_work() as uow:  # the same event once more, past the inbox
        await notifications.on_event(uow, again)
        await uow.commit()
    assert [row.trigger for row in await deliveries(db, case_id)] == ["case_submitted"]
    async with db.unit_of_work() as uow:
        seen = await NotificationsRepository(uow).case_seen(case_id)
        assert seen is not None and seen.locale == "en"


async def test_a_delivery_is_planned_as_its_rows_values_without_a_delivery_object(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer writes a planned delivery's row from its values: no ORM `Delivery` is made
    only to read its attributes back (~70 us each, more than the rest of planning it)."""
    case_id = uuid.uuid4()
    notifications = Notifications(frozenset({FRONT}), repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id))

    def not_made(*_: Any, **__: Any) -> None:
        raise AssertionError("a Delivery was made to plan a delivery")

    with monkeypatch.context() as patched:
        patched.setattr(Delivery, "__init__", not_made)
        await apply(db, notifications, submitted(case_id), requested(case_id))
    rows = await deliveries(db, case_id)
    assert [(d.trigger, d.audience, d.status, d.attempts) for d in rows] == [
        ("case_submitted", FRONT_END, "pending", 0),
        ("case_submitted", PATIENT, "pending", 0),
        ("referral_requested", FRONT_END, "pending", 0),
        ("referral_requested", PATIENT, "pending", 0),
    ]


async def test_the_front_end_still_gets_its_delivery_when_it_takes_webhooks(db: Database) -> None:
    case_id = uuid.uuid4()
    notifications = Notifications(frozenset({FRONT}), repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id), submitted(case_id), requested(case_id))
    rows = await deliveries(db, case_id)
    assert [(d.trigger, d.audience) for d in rows] == [
        ("case_submitted", FRONT_END),
        ("case_submitted", PATIENT),
        ("referral_requested", FRONT_END),
        ("referral_requested", PATIENT),
    ]
    # A front end that takes none: the patient's rows only.
    other = uuid.uuid4()
    only_patients = Notifications(repository=NotificationsRepository.on(db))
    await apply(db, only_patients, contact_shared(other), submitted(other))
    assert [d.audience for d in await deliveries(db, other)] == [PATIENT]


async def test_a_sender_claims_its_deliveries_with_their_contacts_in_one_query(
    db: Database,
) -> None:
    case_id, no_contact = uuid.uuid4(), uuid.uuid4()
    notifications = Notifications()
    await apply(
        db, notifications, contact_shared(case_id), submitted(case_id), submitted(no_contact)
    )
    async with queries_sent(db) as sent, db.unit_of_work() as uow:
        claimed = await NotificationsRepository(uow).claim_due(datetime.now(UTC), 16)
    contacts = {delivery.case_id: contact for delivery, contact, _ in claimed}
    assert set(contacts) == {case_id, no_contact}
    assert contacts[case_id] is not None and contacts[case_id].front_end == FRONT
    assert contacts[no_contact] is None
    selects = [query for query in sent.orm if query.lower().startswith("select")]
    assert len(selects) == 1 and "FOR UPDATE OF deliveries SKIP LOCKED" in selects[0]


@dataclass
class Mailbox:
    """An e-mail channel that accepts every message (`refuse`: refuses each for good)."""

    refuse: bool = False
    channel: NotificationChannel = NotificationChannel.EMAIL
    sent: list[str] = field(default_factory=list)

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        if self.refuse:
            raise PermanentDeliveryError(NotificationError.REJECTED, "no such mailbox")
        self.sent.append(recipient)
        return DeliveryReceipt(channel=self.channel)


def sender(db: Database, mailbox: Mailbox) -> Sender:
    return Sender(
        db,
        Renderer(),
        SealedBox(private_key_b64=PRIVATE),
        Channels(email=mailbox, webhook=None),
        repository=NotificationsRepository.on(db),
    )


async def test_a_sender_batch_is_begin_claim_one_statement_and_commit_on_asyncpg(
    db: Database, spans: Any
) -> None:
    """Two messages sent in one batch: the claim begins the transaction on asyncpg, and one
    statement writes both rows' outcomes and both messages' notification.sent to the outbox
    (were an outbox insert per message, then the rows' update; before that SQLAlchemy's
    BEGIN, claim, outbox inserts, its flush's UPDATE and COMMIT). Each event keeps the trace
    of the event that caused its message."""
    first, second = uuid.uuid4(), uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    planned_in: dict[uuid.UUID, str] = {}
    for case_id in (first, second):
        with tracer.start_as_current_span(f"plan {case_id}") as span:
            await apply(db, notifications, contact_shared(case_id), submitted(case_id))
            planned_in[case_id] = format(span.get_span_context().trace_id, "032x")
    assert planned_in[first] != planned_in[second]
    mailbox = Mailbox()
    async with queries_sent(db) as sent:
        assert await sender(db, mailbox).send_due() == 2
    assert mailbox.sent == ["olena@example.org"] * 2
    assert sent.orm == []
    # Without asyncpg's own look-up of the update's array types (once per connection).
    native = [
        query.lower()
        for query in sent.native
        if "typeinfo_tree" not in query and "set_config('jit'" not in query
    ]
    assert native[0] == "begin; select"
    assert native[1].startswith("select") and "for update of deliveries skip locked" in native[1]
    assert [query.split()[0] for query in native[2:]] == ["with", "commit"]
    assert "insert into outbox" in native[2] and "update deliveries" in native[2]
    rows = {case_id: await deliveries(db, case_id) for case_id in (first, second)}
    for [row] in rows.values():
        assert (row.status, row.attempts, row.channel) == ("sent", 1, "email")
        assert row.sent_at is not None and row.error_code is None
    async with db.unit_of_work() as uow:
        events = (
            await uow.session.execute(
                text("select aggregate_id, event_type, payload, headers from outbox order by seq")
            )
        ).all()
    sent_events = [event for event in events if event.event_type.endswith("notification.sent.v1")]
    assert len(sent_events) == 2
    for aggregate_id, _, payload, headers in sent_events:
        case_id = uuid.UUID(aggregate_id)
        [row] = rows[case_id]
        assert payload["data"]["notification_id"] == str(row.id)
        assert payload["data"]["case_id"] == str(case_id)
        assert headers["traceparent"].split("-")[1] == planned_in[case_id]


async def test_a_message_refused_for_good_is_failed_with_its_alert_in_the_claims_transaction(
    db: Database,
) -> None:
    case_id = uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id), submitted(case_id))
    assert await sender(db, Mailbox(refuse=True)).send_due() == 1
    [row] = await deliveries(db, case_id)
    assert (row.status, row.error_code, row.channel) == ("failed", "rejected", "email")
    assert row.attempts == 1 and row.last_error == "rejected: no such mailbox"
    async with db.unit_of_work() as uow:
        alerts = (
            await uow.session.execute(select(OpsAlert).where(OpsAlert.case_id == case_id))
        ).scalars()
        assert [alert.kind for alert in alerts] == ["notification_failed"]


async def test_a_batch_that_releases_a_later_message_of_its_case_is_followed_by_a_claim(
    db: Database,
) -> None:
    """A case's second message waits for its first: the batch that sends the first says so
    (the claim's `holds_back`), and the same round claims the second at once."""
    case_id = uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id), submitted(case_id), requested(case_id))
    async with db.unit_of_work() as uow:
        claimed = await NotificationsRepository.on(db)(uow).claim_due(datetime.now(UTC), 16)
    assert [(c.delivery.trigger, c.holds_back) for c in claimed] == [("case_submitted", True)]
    mailbox = Mailbox()
    async with queries_sent(db) as sent:
        assert await sender(db, mailbox).send_due() == 2
    claims = [query for query in sent.native if "for update of deliveries" in query.lower()]
    assert len(claims) == 2  # the first's batch, then the second's; nothing after it
    assert mailbox.sent == ["olena@example.org"] * 2
    rows = await deliveries(db, case_id)
    assert [(row.trigger, row.status) for row in rows] == [
        ("case_submitted", "sent"),
        ("referral_requested", "sent"),
    ]
    assert rows[0].sent_at is not None and rows[1].sent_at is not None
    assert rows[0].sent_at <= rows[1].sent_at


async def test_a_full_claim_is_followed_by_another(db: Database) -> None:
    """A claim that took `concurrency` rows may have left due ones: the round claims again."""
    notifications = Notifications(repository=NotificationsRepository.on(db))
    for _ in range(3):
        case_id = uuid.uuid4()
        await apply(db, notifications, contact_shared(case_id), submitted(case_id))
    mailbox = Mailbox()
    two_at_a_time = sender(db, mailbox)
    two_at_a_time.settings.concurrency = 2
    async with queries_sent(db) as sent:
        assert await two_at_a_time.send_due() == 3
    claims = [query for query in sent.native if "for update of deliveries" in query.lower()]
    assert len(claims) == 2  # two rows, then the last one (not full: no third claim)
    assert len(mailbox.sent) == 3


async def test_a_sender_takes_its_rows_as_values_without_orm_objects(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim on asyncpg gives the rows as plain values: no ORM `Delivery` or `CaseContact`
    is made to hold them (~70 us a delivery, and every change the sender makes instrumented)."""
    case_id = uuid.uuid4()
    notifications = Notifications(repository=NotificationsRepository.on(db))
    await apply(db, notifications, contact_shared(case_id), submitted(case_id))

    def not_made(*_: Any, **__: Any) -> None:
        raise AssertionError("an ORM row was made for a claimed delivery")

    mailbox = Mailbox()
    with monkeypatch.context() as patched:
        patched.setattr(Delivery, "__init__", not_made)
        patched.setattr(CaseContact, "__init__", not_made)
        assert await sender(db, mailbox).send_due() == 1
    assert mailbox.sent == ["olena@example.org"]
    [row] = await deliveries(db, case_id)
    assert (row.status, row.attempts, row.channel) == ("sent", 1, "email")
