"""A front end's webhook subscription, and its delivery log.

A front end (with its API key) subscribes one HTTPS endpoint for its cases' updates. Intake
keeps who subscribed where, hands the signing secret to the front end once and to notifications
sealed (`FrontEndWebhookChanged` on the private contacts topic), and never keeps it. Notifications
signs and delivers the updates (`referrals_common.webhooks`' scheme), retries them, and sends
every attempt back (`WebhookAttempted`), which intake keeps as the front end's delivery log: the
front end authenticates to intake only, and the log is read where the key is checked. The log is
kept for `webhook_log.retention_days` (30): the consumer that writes it prunes older attempts as
it goes (`referrals_common.webhooks.retention`), never one whose next try is still to come.

The use cases run in their caller's unit of work (the route's, the consumer's inbox transaction)
and commit nothing; they reach the tables only through the `WebhookRepository` their
`repository` factory makes on that unit of work's session (a unit test passes an in-memory
fake's). The pruner alone runs its own short transactions: it is maintenance beside the
consumer, not part of the event's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import func, or_
from sqlmodel import col

from referrals_common.contracts import (
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    front_end_key,
    new_event,
)
from referrals_common.contracts.notifications import WebhookAttempted
from referrals_common.crypto import SealedBox
from referrals_common.db import Database, UnitOfWork
from referrals_common.webhooks import new_secret
from referrals_common.webhooks.retention import LogPruner, RetentionSettings
from referrals_intake.models import WebhookDeliveryAttempt, WebhookSubscription, utcnow
from referrals_intake.repository import WebhookRepository, WebhookRepositoryFactory


class NoSubscription(Exception):
    """The front end has no webhook subscribed."""


@dataclass(frozen=True)
class Subscribed:
    subscription: WebhookSubscription
    secret: str | None
    """The new signing secret (shown once), or None when the secret did not change."""
    created: bool


async def subscribe(
    uow: UnitOfWork,
    box: SealedBox,
    client_id: str,
    url: str,
    *,
    rotate_secret: bool,
    repository: WebhookRepositoryFactory = WebhookRepository,
) -> Subscribed:
    """Subscribe `url` for the front end, or move its subscription there; a new subscription,
    or `rotate_secret`, gets a new signing secret."""
    repo = repository(uow.session)
    row = await repo.subscription(client_id, for_update=True)
    created = row is None or row.url is None
    now = utcnow()
    if row is None:
        row = WebhookSubscription(client_id=client_id, version=0, created_at=now)
        repo.add(row)
    elif created:
        row.created_at = now
    row.version += 1
    row.url = url
    row.updated_at = now
    secret = new_secret() if created or rotate_secret else None
    if secret is not None:
        row.secret_issued_at = now
    await uow.outbox.add(
        new_event(
            FrontEndWebhookChanged(
                case_id=front_end_key(client_id),
                front_end=client_id,
                url=url,
                sealed_secret=box.seal_json({"secret": secret}, bound_to=client_id)
                if secret is not None
                else None,
                version=row.version,
            )
        )
    )
    return Subscribed(row, secret, created)


async def current(
    uow: UnitOfWork, client_id: str, *, repository: WebhookRepositoryFactory = WebhookRepository
) -> WebhookSubscription:
    """The front end's subscription (NoSubscription if it has none)."""
    row = await repository(uow.session).subscription(client_id)
    if row is None or row.url is None:
        raise NoSubscription
    return row


async def unsubscribe(
    uow: UnitOfWork, client_id: str, *, repository: WebhookRepositoryFactory = WebhookRepository
) -> None:
    """Stop the front end's webhooks (NoSubscription if there are none)."""
    row = await repository(uow.session).subscription(client_id, for_update=True)
    if row is None or row.url is None:
        raise NoSubscription
    row.version += 1
    row.url = None
    row.updated_at = utcnow()
    await uow.outbox.add(
        new_event(
            FrontEndWebhookChanged(
                case_id=front_end_key(client_id), front_end=client_id, url=None, version=row.version
            )
        )
    )


async def request_ping(
    uow: UnitOfWork, client_id: str, *, repository: WebhookRepositoryFactory = WebhookRepository
) -> UUID:
    """Ask notifications for a signed test delivery to the subscribed endpoint; its id."""
    await current(uow, client_id, repository=repository)
    ping_id = uuid4()
    await uow.outbox.add(
        new_event(
            FrontEndWebhookPingRequested(
                case_id=front_end_key(client_id), front_end=client_id, ping_id=ping_id
            )
        )
    )
    return ping_id


async def record_attempt(
    uow: UnitOfWork,
    data: WebhookAttempted,
    *,
    repository: WebhookRepositoryFactory = WebhookRepository,
) -> None:
    """Keep one attempt in the front end's log (a redelivered attempt is kept once)."""
    is_ping = data.case_id == front_end_key(data.front_end)
    await repository(uow.session).keep_attempt(
        WebhookDeliveryAttempt(
            client_id=data.front_end,
            delivery_id=data.delivery_id,
            case_id=None if is_ping else data.case_id,
            event=data.event,
            attempt=data.attempt,
            attempted_at=data.attempted_at,
            status_code=data.status_code,
            outcome=str(data.outcome),
            error_code=str(data.error_code) if data.error_code else None,
            next_attempt_at=data.next_attempt_at,
        )
    )


def delivery_log_pruner(db: Database, settings: RetentionSettings | None = None) -> LogPruner:
    """Deletes the front ends' logged attempts older than the retention, except an attempt
    whose next try is still to come (a delivery pending a retry keeps its log)."""
    attempt = WebhookDeliveryAttempt
    return LogPruner(
        db,
        attempt,
        name="front_end_log",
        settled=or_(
            col(attempt.next_attempt_at).is_(None),
            col(attempt.next_attempt_at) < func.now(),
        ),
        age=attempt.attempted_at,
        settings=settings,
        clock=utcnow,
    )


async def delivery_log(
    uow: UnitOfWork,
    client_id: str,
    *,
    limit: int,
    before: datetime | None = None,
    repository: WebhookRepositoryFactory = WebhookRepository,
) -> list[WebhookDeliveryAttempt]:
    """The front end's own attempts, newest first."""
    return await repository(uow.session).delivery_log(client_id, limit=limit, before=before)
