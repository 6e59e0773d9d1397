"""Notifications' use cases against a fake unit of work and an in-memory repository.

The consumer's (`Notifications.on_event`): which deliveries an event plans, for which audience
(the patient; the front end when it takes webhooks; the operators), what it keeps for later
messages, what a redelivered event or a draft's event plans (nothing new), and that it never
commits: the consumer's inbox transaction does. The sender's (`Sender.send_due`): it claims a due
delivery, sends it and records the outcome with its event, in the one transaction it owns. No
database: the integration tests run the same rules on a real one (tests/integration/notifications).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from referrals_common.contracts import (
    CaseContactShared,
    CaseSubmitted,
    CaseUnroutable,
    CloudEvent,
    DocumentRejected,
    DocumentStored,
    DocumentTranslationRequired,
    EventData,
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    new_event,
)
from referrals_common.contracts.front_ends import front_end_key
from referrals_common.contracts.notifications import (
    NotificationChannel,
    NotificationFailed,
    NotificationSent,
)
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.crypto import SealedBox
from referrals_notifications.channels.base import DeliveryReceipt
from referrals_notifications.models import (
    CaseContact,
    CaseSeen,
    Delivery,
    DocumentSeen,
    FrontEndWebhook,
    InformationRequestSeen,
    OpsAlert,
    ReferralSeen,
)
from referrals_notifications.rendering import RenderedMessage, Renderer
from referrals_notifications.repository import (
    Claimed,
    NotificationsRepository,
    PlannedDelivery,
    Remembered,
)
from referrals_notifications.sender import Channels, Sender, SenderSettings
from referrals_notifications.service import FRONT_END, OPS, PATIENT, PING, Notifications
from tests.unit.fakes import FakeUnitOfWork, SessionUsed

pytestmark = pytest.mark.unit

CASE = uuid.UUID("00000000-0000-4000-8000-0000000000ca")
FRONT = "kyiv-clinic"
SUBMITTED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PRIVATE, PUBLIC = SealedBox.generate_keypair_base64()


@dataclass
class FakeNotificationsRepository:
    """`NotificationsRepository` in memory. Deliveries are kept once per (trigger event,
    audience) and pings once per id, as the table's constraints keep them; `planned` is every
    delivery a use case asked to add, repeats included."""

    contacts_by_case: dict[UUID, CaseContact] = field(default_factory=dict)
    cases: dict[UUID, CaseSeen] = field(default_factory=dict)
    documents: dict[UUID, DocumentSeen] = field(default_factory=dict)
    referrals: dict[UUID, ReferralSeen] = field(default_factory=dict)
    requests: dict[UUID, InformationRequestSeen] = field(default_factory=dict)
    webhooks: dict[str, FrontEndWebhook] = field(default_factory=dict)
    deliveries: dict[tuple[UUID, str], Delivery] = field(default_factory=dict)
    planned: list[Delivery] = field(default_factory=list)
    alerts: list[OpsAlert] = field(default_factory=list)
    uow: FakeUnitOfWork | None = None
    """The sender's batch this repository is on (`on`)."""

    async def remember_contact(
        self, case_id: UUID, *, sealed_contact: str, locale: str, front_end: str
    ) -> None:
        self.contacts_by_case[case_id] = CaseContact(
            case_id=case_id, sealed_contact=sealed_contact, locale=locale, front_end=front_end
        )

    async def remember_case(self, case_id: UUID, *, locale: str, submitted_at: datetime) -> None:
        self.cases[case_id] = CaseSeen(case_id=case_id, locale=locale, submitted_at=submitted_at)

    async def remember_document(self, document_id: UUID, *, case_id: UUID, kind: str) -> None:
        self.documents[document_id] = DocumentSeen(
            document_id=document_id, case_id=case_id, kind=kind
        )

    async def remember_referral(self, referral_id: UUID, **values: Any) -> None:
        self.referrals[referral_id] = ReferralSeen(referral_id=referral_id, **values)

    case_row = staticmethod(NotificationsRepository.case_row)
    referral_row = staticmethod(NotificationsRepository.referral_row)

    async def remember(self, row: Remembered) -> None:
        kept: dict[Any, Any] = {CaseSeen: self.cases, ReferralSeen: self.referrals}[row.model]
        kept[row.values[row.key]] = row.model(**row.values)

    async def remember_information_request(self, request_id: UUID, **values: Any) -> None:
        self.requests[request_id] = InformationRequestSeen(request_id=request_id, **values)

    async def case_seen(self, case_id: UUID) -> CaseSeen | None:
        return self.cases.get(case_id)

    async def contact(self, case_id: UUID) -> CaseContact | None:
        return self.contacts_by_case.get(case_id)

    async def document(self, document_id: UUID) -> DocumentSeen | None:
        return self.documents.get(document_id)

    async def referral(self, referral_id: UUID) -> ReferralSeen | None:
        return self.referrals.get(referral_id)

    async def information_request(self, request_id: UUID) -> InformationRequestSeen | None:
        return self.requests.get(request_id)

    async def front_end_webhook(
        self, front_end: str, *, for_update: bool = False
    ) -> FrontEndWebhook | None:
        return self.webhooks.get(front_end)

    def add_front_end_webhook(self, row: FrontEndWebhook) -> None:
        self.webhooks[row.front_end] = row

    async def webhook_audience(self, case_id: UUID) -> tuple[str | None, bool]:
        contact = self.contacts_by_case.get(case_id)
        front_end = contact.front_end if contact is not None else None
        subscribed = any(
            row.url is not None and front_end in (None, row.front_end)
            for row in self.webhooks.values()
        )
        return front_end, subscribed

    async def add_delivery(self, planned: PlannedDelivery) -> None:
        delivery = Delivery(**planned)
        self.planned.append(delivery)
        self.deliveries.setdefault((delivery.trigger_event_id, delivery.audience), delivery)

    async def add_delivery_and_audience(
        self, planned: PlannedDelivery, remembering: Remembered | None = None
    ) -> tuple[str | None, bool]:
        if remembering is not None:
            await self.remember(remembering)
        await self.add_delivery(planned)
        return await self.webhook_audience(planned["case_id"])

    async def add_ping(self, planned: PlannedDelivery) -> None:
        delivery = Delivery(**planned)
        self.planned.append(delivery)
        if all(d.id != delivery.id for d in self.deliveries.values()):
            self.deliveries[(delivery.trigger_event_id, delivery.audience)] = delivery

    async def claim_due(self, now: datetime, limit: int) -> list[Claimed]:
        pending = [d for d in self.deliveries.values() if d.status == "pending"]
        due = [d for d in pending if d.next_attempt_at <= now]
        claimed = sorted(due, key=lambda d: d.next_attempt_at)[:limit]
        return [
            Claimed(
                d,
                self.contacts_by_case.get(d.case_id),
                any(
                    (o.case_id, o.audience) == (d.case_id, d.audience) and o.id != d.id
                    for o in pending
                ),
            )
            for d in claimed
        ]

    async def save_claimed(self, deliveries: Any) -> None:
        """The claimed rows are these objects: what the sender changed on them is kept."""

    def add_alert(self, alert: OpsAlert) -> None:
        self.alerts.append(alert)

    def on(self, uow: FakeUnitOfWork) -> Any:
        """This repository on `uow` (the sender's batch): what it announces goes to its outbox."""
        self.uow = uow
        return self

    async def announce(self, event: Any) -> None:
        assert self.uow is not None
        await self.uow.outbox.add(event)

    def rows(self, audience: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries.values() if audience in (None, d.audience)]


def notifications(
    repo: FakeNotificationsRepository, front_ends: frozenset[str] = frozenset()
) -> Notifications:
    return Notifications(front_ends, repository=lambda uow: repo)


async def consume(service: Notifications, data: EventData) -> FakeUnitOfWork:
    """Apply one new event as the consumer would, in a unit of work of its own."""
    return await consume_event(service, new_event(data))


async def consume_event(service: Notifications, event: CloudEvent[Any]) -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    await service.on_event(uow, event)
    assert uow.committed is False  # the consumer's inbox transaction commits, not the use case
    assert uow.outbox.events == []  # deliveries are rows; only the sender's outcomes are events
    return uow


def submitted() -> CaseSubmitted:
    return CaseSubmitted(
        case_id=CASE,
        clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
        destination={"preference": "countries", "countries": ["DE"]},
        locale="uk",
        processing_consent_version="2026-01",
        cross_border_consent_version="2026-01",
        submitted_at=SUBMITTED_AT,
    )


def contact_shared(email: str | None = "olena@example.org") -> CaseContactShared:
    return CaseContactShared(
        case_id=CASE,
        sealed_contact=SealedBox(public_key_b64=PUBLIC).seal_json(
            {"email": email, "phone": None, "preferred_channel": "email"}, bound_to=str(CASE)
        ),
        locale="uk",
        front_end=FRONT,
    )


def subscription(version: int, url: str | None) -> FrontEndWebhookChanged:
    return FrontEndWebhookChanged(
        case_id=front_end_key(FRONT),
        front_end=FRONT,
        url=url,
        sealed_secret=None
        if url is None
        else SealedBox(public_key_b64=PUBLIC).seal_json({"secret": "s" * 32}, bound_to=FRONT),
        version=version,
    )


async def test_a_submitted_case_plans_the_patients_message() -> None:
    repo = FakeNotificationsRepository()
    event = new_event(submitted())
    await consume_event(notifications(repo), event)
    assert repo.cases[CASE].locale == "uk"
    [delivery] = repo.rows()
    assert (delivery.trigger, delivery.audience, delivery.status) == (
        T.CASE_SUBMITTED,
        PATIENT,
        "pending",
    )
    assert delivery.id == uuid.uuid5(event.id, PATIENT)  # the same on every retry
    assert delivery.trigger_event_id == event.id and delivery.case_id == CASE
    assert delivery.facts == {"submitted_at": SUBMITTED_AT.isoformat()}
    assert delivery.attempts == 0 and delivery.occurred_at == event.time


async def test_a_redelivered_event_plans_nothing_new() -> None:
    repo = FakeNotificationsRepository()
    service = notifications(repo, frozenset({FRONT}))
    event = new_event(submitted())
    await consume_event(service, event)
    await consume_event(service, event)
    first, again = repo.planned[:2], repo.planned[2:]
    assert [(d.id, d.audience) for d in again] == [(d.id, d.audience) for d in first]
    assert sorted(d.audience for d in repo.rows()) == [FRONT_END, PATIENT]


async def test_a_front_end_with_webhooks_configured_gets_its_own_delivery() -> None:
    repo = FakeNotificationsRepository()
    service = notifications(repo, frozenset({FRONT}))
    await consume(service, contact_shared())
    assert repo.contacts_by_case[CASE].front_end == FRONT
    event = new_event(submitted())
    await consume_event(service, event)
    [front_end] = repo.rows(FRONT_END)
    assert front_end.id == uuid.uuid5(event.id, FRONT_END) != repo.rows(PATIENT)[0].id
    assert front_end.facts == repo.rows(PATIENT)[0].facts


async def test_a_front_end_subscribed_by_the_api_gets_deliveries_until_it_unsubscribes() -> None:
    repo = FakeNotificationsRepository()
    service = notifications(repo)
    await consume(service, contact_shared())
    await consume(service, subscription(1, "https://hooks.kyiv-clinic.example/referrals"))
    await consume(service, submitted())
    assert sorted(d.audience for d in repo.rows()) == [FRONT_END, PATIENT]

    await consume(service, subscription(2, None))
    await consume(service, subscription(1, "https://hooks.kyiv-clinic.example/again"))  # late
    row = repo.webhooks[FRONT]
    assert (row.version, row.url, row.sealed_secret) == (2, None, None)
    rejected = DocumentRejected(
        case_id=CASE,
        document_id=uuid.uuid4(),
        reason="unsupported_type",
        detail="The file is not a PDF, an image or DICOM.",
    )
    await consume(service, rejected)
    assert [d.audience for d in repo.rows() if d.trigger == T.DOCUMENT_REJECTED] == [PATIENT]


async def test_a_drafts_rejected_document_is_not_notified() -> None:
    repo = FakeNotificationsRepository()
    rejected = DocumentRejected(
        case_id=CASE, document_id=uuid.uuid4(), reason="too_large", detail="Over 2 GB."
    )
    await consume(notifications(repo), rejected)
    assert repo.planned == []


async def test_a_translation_required_says_which_kind_of_document() -> None:
    repo = FakeNotificationsRepository()
    service = notifications(repo)
    document_id = uuid.uuid4()
    await consume(
        service,
        DocumentStored(
            case_id=CASE,
            document_id=document_id,
            kind="pathology_report",
            media_type="application/pdf",
            size_bytes=2048,
            sha256="0" * 64,
            object_key=f"cases/{CASE}/{document_id}",
            stored_at=SUBMITTED_AT,
        ),
    )
    assert repo.planned == []  # a stored document is kept, not told
    await consume(
        service,
        DocumentTranslationRequired(
            case_id=CASE,
            document_id=document_id,
            detected_language="ru",
            acceptable_languages=["en", "de"],
            confidence=0.95,
        ),
    )
    [delivery] = repo.rows(PATIENT)
    assert delivery.trigger == T.TRANSLATION_REQUIRED
    assert delivery.facts == {
        "document_kind": "pathology_report",
        "detected_language": "ru",
        "acceptable_languages": ["en", "de"],
    }


async def test_an_unroutable_case_alerts_the_operators_and_tells_the_patient() -> None:
    repo = FakeNotificationsRepository()
    unroutable = CaseUnroutable(
        case_id=CASE, reason="all_centers_declined", centers_tried=["charite-berlin"]
    )
    await consume(notifications(repo), unroutable)
    [alert] = repo.alerts
    assert alert.kind == "case_unroutable" and "charite-berlin" in alert.detail
    by_audience = {d.audience: d for d in repo.rows()}
    assert set(by_audience) == {PATIENT, OPS}
    assert by_audience[PATIENT].facts == {"reason": "all_centers_declined"}  # no center codes
    assert by_audience[OPS].facts["centers_tried"] == ["charite-berlin"]


async def test_a_ping_is_a_front_end_delivery_under_the_pings_id() -> None:
    repo = FakeNotificationsRepository()
    ping_id = uuid.uuid4()
    ping = FrontEndWebhookPingRequested(
        case_id=front_end_key(FRONT), front_end=FRONT, ping_id=ping_id
    )
    await consume(notifications(repo), ping)
    [delivery] = repo.rows()
    assert (delivery.id, delivery.trigger, delivery.audience) == (ping_id, PING, FRONT_END)
    assert delivery.facts == {"front_end": FRONT}


async def test_the_use_case_goes_through_its_repository() -> None:
    """The real default reaches the session, which the fake unit of work refuses: what proves
    the fake repository stands where the real one does."""
    with pytest.raises(SessionUsed):
        await Notifications().on_event(FakeUnitOfWork(), new_event(submitted()))


# The sender: its own transaction, committed once per batch.


@dataclass
class FakeEmail:
    channel: NotificationChannel = NotificationChannel.EMAIL
    sent: list[tuple[str, RenderedMessage]] = field(default_factory=list)

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        self.sent.append((recipient, message))
        return DeliveryReceipt(channel=self.channel)


@dataclass
class FakeDatabase:
    """Hands the sender a fresh fake unit of work per batch, and keeps them to read."""

    units: list[FakeUnitOfWork] = field(default_factory=list)

    def unit_of_work(self) -> FakeUnitOfWork:
        self.units.append(FakeUnitOfWork())
        return self.units[-1]


def sender(repo: FakeNotificationsRepository, db: FakeDatabase, email: FakeEmail) -> Sender:
    return Sender(
        db,  # a fake database: its units of work are fake ones
        Renderer(),
        SealedBox(private_key_b64=PRIVATE),
        Channels(email=email, webhook=None),
        SenderSettings(contact_wait=60.0),
        repository=repo.on,
    )


async def test_the_sender_sends_a_due_message_and_records_it_in_its_own_transaction() -> None:
    repo = FakeNotificationsRepository()
    service = notifications(repo)
    await consume(service, contact_shared())
    await consume(service, submitted())
    [delivery] = repo.rows()
    db, email = FakeDatabase(), FakeEmail()

    assert await sender(repo, db, email).send_due() == 1
    [(recipient, message)] = email.sent
    assert recipient == "olena@example.org" and message.notification_id == delivery.id
    assert (delivery.status, delivery.attempts, delivery.channel) == ("sent", 1, "email")
    batch = db.units[0]
    assert batch.committed is True  # the sender owns its transaction
    [sent] = [event.data for event, _ in batch.outbox.events]
    assert isinstance(sent, NotificationSent)
    assert (sent.notification_id, sent.trigger_event_id) == (delivery.id, delivery.trigger_event_id)

    assert await sender(repo, db, email).send_due() == 0  # nothing left due
    assert len(email.sent) == 1


async def test_a_message_without_a_contact_fails_after_the_wait_with_an_ops_alert() -> None:
    repo = FakeNotificationsRepository()
    await consume(notifications(repo), submitted())
    [delivery] = repo.rows()
    delivery.created_at -= timedelta(minutes=5)  # longer than the sender waits for a contact
    db, email = FakeDatabase(), FakeEmail()

    assert await sender(repo, db, email).send_due() == 1
    assert email.sent == []
    assert (delivery.status, delivery.error_code) == ("failed", "no_contact")
    [failed] = [event.data for event, _ in db.units[0].outbox.events]
    assert isinstance(failed, NotificationFailed) and failed.notification_id == delivery.id
    [alert] = repo.alerts
    assert alert.kind == "notification_failed" and db.units[0].committed is True


async def test_an_idle_sender_remembers_every_row_it_put_off_not_only_the_earliest() -> None:
    """Two messages wait for their cases' contacts, looked at again in 1 s and in 10 s. When the
    first one's time comes its contact has arrived and it is sent: the sender must still know
    that the other one comes due at 10 s (it used to forget it, and look again only at its idle
    poll, up to 5 s late)."""
    repo = FakeNotificationsRepository()
    service = notifications(repo)
    other = uuid.uuid4()
    await consume(service, submitted())
    await consume(service, submitted().model_copy(update={"case_id": other}))
    first, second = sorted(repo.rows(), key=lambda d: d.case_id != CASE)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    first.created_at, second.created_at = now - timedelta(seconds=2), now - timedelta(seconds=20)
    first.next_attempt_at = second.next_attempt_at = now - timedelta(seconds=1)
    clock = [now]
    db, email = FakeDatabase(), FakeEmail()
    the_sender = Sender(
        db,
        Renderer(),
        SealedBox(private_key_b64=PRIVATE),
        Channels(email=email, webhook=None),
        SenderSettings(contact_wait=60.0),
        clock=lambda: clock[0],
        repository=repo.on,
    )

    assert await the_sender.send_due() == 2  # both put off: no contact yet
    assert the_sender.next_due == now + timedelta(seconds=1)
    await consume(service, contact_shared())  # the first case's contact arrives
    clock[0] = now + timedelta(seconds=1.5)
    assert await the_sender.send_due() == 1
    assert first.status == "sent" and second.status == "pending"
    assert the_sender.next_due == now + timedelta(seconds=10)
    clock[0] = now + timedelta(seconds=10)
    assert await the_sender.send_due() == 1  # the second one, still without a contact
    assert the_sender.next_due == now + timedelta(seconds=25)  # waited 30 s: again in 15


async def test_a_stopping_sender_closes_every_channels_connections() -> None:
    """SMTP sessions are kept between messages and HTTP clients between requests: the sender
    closes them all when it stops, one failing to close not keeping the others open."""
    closed: list[str] = []

    @dataclass
    class Closing:
        name: str
        fails: bool = False

        async def aclose(self) -> None:
            closed.append(self.name)
            if self.fails:
                raise OSError("the connection is already gone")

    from referrals_notifications.channels.sms import SmsChannel

    sms = SmsChannel(Closing("sms provider"))  # type: ignore[arg-type]
    the_sender = Sender(
        FakeDatabase(),
        Renderer(),
        SealedBox(private_key_b64=PRIVATE),
        Channels(email=Closing("email", fails=True), webhook=Closing("webhook"), sms=sms),
        SenderSettings(),
        repository=FakeNotificationsRepository().on,
    )
    await the_sender.aclose()
    assert closed == ["email", "webhook", "sms provider"]
