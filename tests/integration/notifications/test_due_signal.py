"""The sender woken by PostgreSQL when a delivery is planned (issue 25): an idle sender no longer
claims nothing five times a second; it sleeps until the consumer's commit notifies it (a
statement trigger on deliveries: no statement more for the consumer), or until a row it put off
comes due, with a slow fallback poll. The consumer's side here is another connection of the
pool, as it is another process under `--process-per-role`; the sender listens on a connection of
its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from referrals_common.contracts.notifications import NotificationError
from referrals_common.crypto import SealedBox
from referrals_common.db import Database
from referrals_common.webhooks import RetryPolicy
from referrals_notifications.channels.base import DeliveryReceipt, TransientDeliveryError
from referrals_notifications.main import run_sender_loop
from referrals_notifications.rendering import RenderedMessage, Renderer
from referrals_notifications.repository import NotificationsRepository
from referrals_notifications.sender import Channels, DueSignal, Sender, SenderSettings
from referrals_notifications.service import Notifications
from tests.integration.notifications.test_round_trips import (
    PRIVATE,
    Mailbox,
    apply,
    contact_shared,
    db,  # noqa: F401
    sender,
    submitted,
)
from tests.integration.statements_sent import queries_sent

pytestmark = pytest.mark.integration

NEVER = 60.0
"""A fallback poll no test waits for: what arrives sooner was woken."""


async def arrived(mailbox: Mailbox, count: int, within: float) -> float:
    """Seconds until `mailbox` has `count` messages (fails after `within`)."""
    started = time.monotonic()
    while len(mailbox.sent) < count:
        assert time.monotonic() - started < within, f"{mailbox.sent} after {within} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def idle_sender(db: Database) -> AsyncIterator[tuple[Mailbox, DueSignal]]:  # noqa: F811
    """A sender loop that found nothing to send and listens (fallback poll: `NEVER`)."""
    mailbox = Mailbox()
    due = DueSignal(db.settings.asyncpg_dsn())
    stop = asyncio.Event()
    loop = asyncio.create_task(
        run_sender_loop(sender(db, mailbox), 0.05, stop, due=due, idle_interval=NEVER)
    )
    await asyncio.sleep(0.5)  # its first rounds: nothing due, now waiting for a notification
    yield mailbox, due
    stop.set()
    await asyncio.wait_for(loop, 5)
    await due.close()


async def test_a_delivery_planned_by_another_connection_is_sent_without_waiting_for_the_poll(
    db: Database,  # noqa: F811
    idle_sender: tuple[Mailbox, DueSignal],
) -> None:
    mailbox, _ = idle_sender
    notifications = Notifications(repository=NotificationsRepository.on(db))
    case_id = uuid.uuid4()
    async with queries_sent(db) as sent:
        await apply(db, notifications, contact_shared(case_id), submitted(case_id))
    # the notification is the tables' trigger's: the consumer sent no statement for it
    assert not any("notify" in query.lower() for query in sent.native + sent.orm)
    assert await arrived(mailbox, 1, within=10.0) < 5.0
    assert mailbox.sent == ["olena@example.org"]


async def test_a_message_waiting_for_its_contact_is_looked_at_again_when_its_wait_is_over(
    db: Database,  # noqa: F811
    idle_sender: tuple[Mailbox, DueSignal],
) -> None:
    """The case's message came before its contact: the sender puts it off (0.2 s, then half the
    time waited) and looks again then, not at the fallback poll; the contact's row notifies
    nothing (it comes before its case's messages, intake shares it at submission)."""
    mailbox, _ = idle_sender
    notifications = Notifications(repository=NotificationsRepository.on(db))
    case_id = uuid.uuid4()
    await apply(db, notifications, submitted(case_id))
    await asyncio.sleep(1.0)  # claimed, no contact yet: put off
    assert mailbox.sent == []
    await apply(db, notifications, contact_shared(case_id))
    assert await arrived(mailbox, 1, within=10.0) < 5.0


@dataclass
class FlakyMailbox(Mailbox):
    """Refuses the first message for now (a 4xx), then takes them all."""

    refusals: int = 1

    async def send(self, recipient: str, message: RenderedMessage) -> DeliveryReceipt:
        if self.refusals:
            self.refusals -= 1
            raise TransientDeliveryError(NotificationError.PROVIDER_UNAVAILABLE, "try later")
        return await super().send(recipient, message)


async def test_a_retry_round_comes_when_it_is_due_without_a_notification(
    db: Database,  # noqa: F811
) -> None:
    """The sender put the row off for its next round (0.5 s): it looks again then, not at the
    fallback poll, with nothing planned meanwhile."""
    mailbox = FlakyMailbox()
    sending = Sender(
        db,
        Renderer(),
        SealedBox(private_key_b64=PRIVATE),
        Channels(email=mailbox, webhook=None),
        SenderSettings(policy=RetryPolicy(attempts=1, round_backoff=0.5)),
        repository=NotificationsRepository.on(db),
    )
    due = DueSignal(db.settings.asyncpg_dsn())
    stop = asyncio.Event()
    loop = asyncio.create_task(run_sender_loop(sending, 0.05, stop, due=due, idle_interval=NEVER))
    try:
        await asyncio.sleep(0.3)
        case_id = uuid.uuid4()
        notifications = Notifications(repository=NotificationsRepository.on(db))
        await apply(db, notifications, contact_shared(case_id), submitted(case_id))
        assert await arrived(mailbox, 1, within=10.0) < 5.0
        assert mailbox.refusals == 0
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await due.close()


async def test_a_sender_that_cannot_listen_polls_as_before(db: Database) -> None:  # noqa: F811
    mailbox = Mailbox()
    due = DueSignal("postgresql://nobody@127.0.0.1:9/nothing")
    stop = asyncio.Event()
    loop = asyncio.create_task(
        run_sender_loop(sender(db, mailbox), 0.05, stop, due=due, idle_interval=NEVER)
    )
    try:
        await asyncio.sleep(0.3)
        case_id = uuid.uuid4()
        notifications = Notifications(repository=NotificationsRepository.on(db))
        await apply(db, notifications, contact_shared(case_id), submitted(case_id))
        assert await arrived(mailbox, 1, within=10.0) < 5.0
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await due.close()
