"""Intake's webhook use cases as a specification, against a fake unit of work and an in-memory
`WebhookRepository` (`tests/unit/fakes.py`): a front end subscribes its endpoint (the secret
shown once, sealed to notifications), moves or re-keys it, unsubscribes, asks for a ping; a
delivery attempt from notifications is kept once in its log, also when the consumer is handed the
same event again. Each test reads what changed, what was queued, and that the use case committed
nothing: its caller does (a route, the consumer's inbox transaction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from referrals_common.contracts import (
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    front_end_key,
    new_event,
    topics,
)
from referrals_common.contracts.notifications import WebhookAttempted, WebhookOutcome
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_intake import consumers, webhooks
from referrals_intake.models import WebhookDeliveryAttempt, WebhookSubscription
from referrals_intake.service import Intake
from tests.unit.fakes import FakeInbox, FakeUnitOfWork

pytestmark = pytest.mark.unit

FRONT_END = "kyivclinic01"
OTHER = "lvivclinic02"
URL = "https://hooks.kyivclinic.example/referrals"
NOTIFICATIONS_PRIVATE, NOTIFICATIONS_PUBLIC = SealedBox.generate_keypair_base64()
CHANGED = FrontEndWebhookChanged.event_type
PING = FrontEndWebhookPingRequested.event_type


class FakeWebhookRepository:
    """`WebhookRepository`'s surface over dicts and a list; an attempt is keyed as the table's
    unique constraint keys it (delivery id, attempt number)."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, WebhookSubscription] = {}
        self.attempts: dict[tuple[UUID, int], WebhookDeliveryAttempt] = {}

    async def subscription(
        self, client_id: str, *, for_update: bool = False
    ) -> WebhookSubscription | None:
        return self.subscriptions.get(client_id)

    def add(self, row: WebhookSubscription) -> None:
        assert row.client_id not in self.subscriptions
        self.subscriptions[row.client_id] = row

    async def keep_attempt(self, attempt: WebhookDeliveryAttempt) -> None:
        self.attempts.setdefault((attempt.delivery_id, attempt.attempt), attempt)

    async def delivery_log(
        self, client_id: str, *, limit: int, before: datetime | None = None
    ) -> list[WebhookDeliveryAttempt]:
        rows = [
            a
            for a in self.attempts.values()
            if a.client_id == client_id and (before is None or a.attempted_at < before)
        ]
        rows.sort(key=lambda a: (a.attempted_at, a.attempt), reverse=True)
        return rows[:limit]


@pytest.fixture
def repo() -> FakeWebhookRepository:
    return FakeWebhookRepository()


def sealed_box() -> SealedBox:
    return SealedBox(public_key_b64=NOTIFICATIONS_PUBLIC)


async def subscribe(
    repo: FakeWebhookRepository, uow: FakeUnitOfWork | None = None, **kwargs: Any
) -> webhooks.Subscribed:
    options: dict[str, Any] = {"url": URL, "rotate_secret": False} | kwargs
    return await webhooks.subscribe(
        uow or FakeUnitOfWork(),
        sealed_box(),
        FRONT_END,
        options["url"],
        rotate_secret=options["rotate_secret"],
        repository=lambda session: repo,
    )


def opened_secret(event: FrontEndWebhookChanged) -> str | None:
    assert event.sealed_secret is not None
    opened = SealedBox(private_key_b64=NOTIFICATIONS_PRIVATE).open_json(
        event.sealed_secret, bound_to=FRONT_END
    )
    return str(opened["secret"])


async def test_subscribing_issues_a_secret_once_and_seals_it_to_notifications(
    repo: FakeWebhookRepository,
) -> None:
    uow = FakeUnitOfWork()

    done = await subscribe(repo, uow)

    assert done.created is True and done.secret
    row = repo.subscriptions[FRONT_END]
    assert done.subscription is row
    assert (row.url, row.version, row.secret_issued_at) == (URL, 1, row.updated_at)
    [(event, topic)] = uow.outbox.events
    assert event.type == CHANGED and topic is None
    assert event.case_id == front_end_key(FRONT_END)
    data = event.data
    assert (data.front_end, str(data.url), data.version) == (FRONT_END, URL, 1)
    assert done.secret not in event.to_json().decode()  # sealed, never in clear
    assert opened_secret(data) == done.secret
    assert uow.committed is False


async def test_moving_the_endpoint_keeps_the_secret_and_rotating_replaces_it(
    repo: FakeWebhookRepository,
) -> None:
    first = await subscribe(repo)
    issued_at = repo.subscriptions[FRONT_END].secret_issued_at
    moved_to = "https://hooks.kyivclinic.example/v2"
    uow = FakeUnitOfWork()

    moved = await subscribe(repo, uow, url=moved_to)

    assert (moved.created, moved.secret) == (False, None)
    row = repo.subscriptions[FRONT_END]
    assert (row.url, row.version, row.secret_issued_at) == (moved_to, 2, issued_at)
    [(event, _)] = uow.outbox.events
    assert (str(event.data.url), event.data.version, event.data.sealed_secret) == (
        moved_to,
        2,
        None,
    )
    assert uow.committed is False

    uow = FakeUnitOfWork()
    rotated = await subscribe(repo, uow, url=moved_to, rotate_secret=True)

    assert rotated.created is False
    assert rotated.secret and rotated.secret != first.secret
    assert row.version == 3
    [(event, _)] = uow.outbox.events
    assert opened_secret(event.data) == rotated.secret
    assert uow.committed is False


async def test_unsubscribing_ends_the_webhooks_and_a_second_time_is_refused(
    repo: FakeWebhookRepository,
) -> None:
    await subscribe(repo)
    uow = FakeUnitOfWork()

    await webhooks.unsubscribe(uow, FRONT_END, repository=lambda session: repo)

    row = repo.subscriptions[FRONT_END]
    assert (row.url, row.version) == (None, 2)  # the row keeps the version
    [(event, _)] = uow.outbox.events
    assert (event.type, event.data.url, event.data.version) == (CHANGED, None, 2)
    assert uow.committed is False
    with pytest.raises(webhooks.NoSubscription):
        await webhooks.current(FakeUnitOfWork(), FRONT_END, repository=lambda session: repo)

    again = FakeUnitOfWork()
    with pytest.raises(webhooks.NoSubscription):
        await webhooks.unsubscribe(again, FRONT_END, repository=lambda session: repo)
    assert again.outbox.events == [] and row.version == 2

    # Subscribing again is a new subscription: a new secret, the version going on.
    back = await subscribe(repo)
    assert back.created is True and back.secret
    assert row.version == 3


async def test_a_ping_is_queued_for_the_subscribed_front_end_only(
    repo: FakeWebhookRepository,
) -> None:
    await subscribe(repo)
    uow = FakeUnitOfWork()

    ping_id = await webhooks.request_ping(uow, FRONT_END, repository=lambda session: repo)

    [(event, _)] = uow.outbox.events
    assert event.type == PING
    assert (event.case_id, event.data.front_end, event.data.ping_id) == (
        front_end_key(FRONT_END),
        FRONT_END,
        ping_id,
    )
    assert uow.committed is False

    other = FakeUnitOfWork()
    with pytest.raises(webhooks.NoSubscription):
        await webhooks.request_ping(other, OTHER, repository=lambda session: repo)
    assert other.outbox.events == []


def attempted(
    *, delivery_id: UUID, attempt: int, case_id: UUID, at: datetime, **kw: Any
) -> WebhookAttempted:
    return WebhookAttempted(
        case_id=case_id,
        front_end=FRONT_END,
        delivery_id=delivery_id,
        event=kw.pop("event", "status_changed"),
        attempt=attempt,
        attempted_at=at,
        outcome=kw.pop("outcome", WebhookOutcome.DELIVERED),
        **kw,
    )


async def test_an_attempt_is_kept_once_and_the_log_reads_newest_first(
    repo: FakeWebhookRepository,
) -> None:
    case_id, delivery = uuid4(), uuid4()
    at = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    failed = attempted(
        delivery_id=delivery,
        attempt=1,
        case_id=case_id,
        at=at,
        status_code=503,
        outcome=WebhookOutcome.RETRYING,
        next_attempt_at=at + timedelta(seconds=30),
    )
    delivered = attempted(
        delivery_id=delivery, attempt=2, case_id=case_id, at=at + timedelta(seconds=30)
    )
    ping = attempted(
        delivery_id=uuid4(),
        attempt=1,
        case_id=front_end_key(FRONT_END),
        at=at + timedelta(minutes=1),
        event="ping",
        status_code=204,
    )
    uow = FakeUnitOfWork()

    for data in (failed, delivered, failed, ping):  # the first attempt redelivered
        await webhooks.record_attempt(uow, data, repository=lambda session: repo)

    assert len(repo.attempts) == 3
    log = await webhooks.delivery_log(
        FakeUnitOfWork(), FRONT_END, limit=10, repository=lambda session: repo
    )
    assert [(a.event, a.attempt, a.case_id, a.outcome) for a in log] == [
        ("ping", 1, None, "delivered"),  # a ping is about no case
        ("status_changed", 2, case_id, "delivered"),
        ("status_changed", 1, case_id, "retrying"),
    ]
    older = await webhooks.delivery_log(
        FakeUnitOfWork(),
        FRONT_END,
        limit=1,
        before=log[1].attempted_at,
        repository=lambda session: repo,
    )
    assert [a.attempt for a in older] == [1]
    assert uow.outbox.events == []
    assert uow.committed is False


# ---------------------------------------------------------------- the consumer, end to end


@dataclass
class FakeDatabase:
    """`Database.unit_of_work()`: a fresh fake unit of work per transaction, all sharing one
    inbox (the table the consumer records each event id in)."""

    inbox: FakeInbox = field(default_factory=FakeInbox)
    units: list[FakeUnitOfWork] = field(default_factory=list)

    def unit_of_work(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork()
        uow.inbox = self.inbox
        self.units.append(uow)
        return uow


@dataclass
class FakeDeadLetters:
    published: list[BaseException] = field(default_factory=list)

    async def publish(self, record: Any, body: bytes, *, consumer: str, error: Exception) -> None:
        self.published.append(error)


@dataclass
class FakePruner:
    rounds: int = 0

    async def prune_if_due(self) -> int:
        self.rounds += 1
        return 0


async def test_the_consumer_keeps_a_redelivered_attempt_event_once(
    repo: FakeWebhookRepository,
) -> None:
    db, dead, pruner = FakeDatabase(), FakeDeadLetters(), FakePruner()
    intake = Intake(cipher=FieldCipher.from_base64(FieldCipher.generate_key_base64()))
    consumer = consumers.build_consumer(
        intake,
        db,
        dead,
        webhook_repository=lambda session: repo,
        webhook_log_pruner=pruner,
        attempts=1,
    )
    event = new_event(
        attempted(
            delivery_id=uuid4(),
            attempt=1,
            case_id=uuid4(),
            at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        )
    )
    body = event.to_json()
    record = SimpleNamespace(
        topic=topics.NOTIFICATIONS, partition=0, offset=7, headers=[], value=body
    )

    await consumer.process(record, body)
    await consumer.process(record, body)  # Kafka hands the same record again

    assert dead.published == []
    assert consumer.stats["applied"] == 1 and consumer.stats["duplicates"] == 1
    [kept] = repo.attempts.values()
    assert (kept.client_id, kept.delivery_id, kept.attempt) == (
        FRONT_END,
        event.data.delivery_id,
        1,
    )
    assert pruner.rounds == 1  # the log is pruned where it grows, not on a duplicate
    applied, duplicate = db.units
    assert applied.committed is True  # by the consumer, the handler's caller
    assert duplicate.committed is False and duplicate.outbox.events == []
