"""The sender process: takes due delivery rows, opens the contact, renders, sends, records.

A row is claimed with `FOR UPDATE SKIP LOCKED` (several senders may run) and held while its
message goes out; the outcome, its event (`notification.sent` or `notification.failed`, through
the outbox) and the row's new state commit together. A transient fault is retried at once a few
times with backoff (`RetryPolicy`), then again in later rounds (`next_attempt_at`, doubling), so
a restart loses nothing: the row is still pending. After the last round, or at once for a
permanent error, the row is `failed`, `notification.failed` goes out and an ops alert is
recorded.

Order: a case's messages to one audience go out in the order of the case's history (the
events' time, then arrival): a message is not claimed while an earlier one of the same case and
audience is still pending, so a slow, retried or contact-waiting message holds the later ones
back rather than being overtaken. A message that fails for good releases them.

Exactly once, and its one gap: a message is recorded as sent in the same transaction that holds
its row, after the channel accepted it. If that commit fails (PostgreSQL restarting), the process
remembers what was accepted and, when the row comes back, records it as sent without sending it
again. Only a crash of the sender process itself in the instant between the SMTP server's "250"
and the commit (or another sender taking the row after such a failure) sends it again; every
attempt carries the same notification id (e-mail `Message-ID`, webhook body), so the receiving
side can drop the repeat.

When it looks: at once when a delivery was planned, else when one it put off comes due. The
consumer's transaction that plans a delivery notifies `CHANNEL` when it commits: the deliveries'
table has a statement trigger for it (migration 0005), so the consumer sends no statement more.
The sender LISTENs on a connection of its own (`DueSignal`) and after each round sleeps until it
is notified, until a row it put off comes due (a retry round, a message waiting for its case's
contact: `Sender.next_due`), or until a slow fallback poll (`sender_idle_interval_seconds`: a
row another sender put off, a notification missed while the connection was down). After a round
that sent something it first waits `sender_interval_seconds` as the polling did, so the messages
of a busy spell are still claimed together; no sender claims nothing five times a second any
more, idle or busy, and the first message after a quiet spell goes out at once instead of at the
next poll. A shared contact notifies nothing: it comes before its case's messages (intake shares
it at submission), and a message that came first is looked at again when its wait is over, as
before.

Both process layouts are the same: the consumer and the sender share the database, never a
process (`referrals-notifications all` runs both in one, Compose and k8s one each).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlmodel import col

from referrals_common.contracts import new_event
from referrals_common.contracts.notifications import (
    NotificationChannel,
    NotificationError,
    NotificationFailed,
    NotificationSent,
    NotificationTrigger,
)
from referrals_common.crypto import SealedBox
from referrals_common.db import Database, UnitOfWork
from referrals_common.metrics import NOTIFICATION_DELIVERIES, service_name
from referrals_common.telemetry import continue_trace
from referrals_common.webhooks import RetryPolicy, WebhookOutcome
from referrals_common.webhooks.retention import LogPruner, RetentionSettings
from referrals_notifications.channels.base import PermanentDeliveryError
from referrals_notifications.channels.retry import deliver_with_retry
from referrals_notifications.channels.webhook import WebhookTarget
from referrals_notifications.messages import (
    CONTEXT_MODELS,
    UnroutableOpsAlert,
    case_reference,
)
from referrals_notifications.models import Delivery, OpsAlert, utcnow
from referrals_notifications.rendering import RenderedMessage, Renderer, build_webhook_message
from referrals_notifications.repository import (
    ContactRow,
    DeliveryRow,
    NotificationsRepository,
    RepositoryFactory,
)
from referrals_notifications.service import FRONT_END, OPS, PATIENT, PING
from referrals_notifications.webhook_log import WebhookAttempts

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_notifications.sender")

ACCEPTED_MEMORY = 10_000
"""Accepted messages remembered until their rows commit (a bound, far above one batch)."""


@dataclass
class Channels:
    """The delivery channels this process has (SMS only when a provider is configured)."""

    email: Any
    webhook: Any
    sms: Any | None = None
    front_ends: dict[str, WebhookTarget] = field(default_factory=dict)
    ops_email: str | None = None


_PUT_OFF_KEPT = 10_000
"""The most put-off times a sender remembers (rows of a long outage's retries): beyond, the
earliest half; the rest come due by the idle poll (`sender_idle_interval_seconds`)."""


@dataclass
class SenderSettings:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    """The platform's one retry policy: quick attempts per round, rounds, their backoff."""
    contact_wait: float = 600.0
    """How long a message waits for the case's sealed contact before it fails as no_contact."""
    time_zone: str = "Europe/Kyiv"
    case_url_template: str | None = None
    concurrency: int = 16
    """Deliveries claimed together and sent at the same time (SMTP connections, webhooks)."""


class Sender:
    def __init__(
        self,
        db: Database,
        renderer: Renderer,
        box: SealedBox,
        channels: Channels,
        settings: SenderSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        repository: RepositoryFactory = NotificationsRepository,
    ) -> None:
        self.db = db
        self.renderer = renderer
        self.box = box
        self.channels = channels
        self.settings = settings or SenderSettings()
        self.clock = clock
        self.repository = repository
        """Makes the repository of each batch on its unit of work."""
        self._attempts = WebhookAttempts()
        """Each webhook request's outcome, until its delivery's row is recorded."""
        self._accepted: OrderedDict[UUID, Any] = OrderedDict()
        """Messages a channel accepted whose row has not been committed as sent yet."""
        self._put_off: list[datetime] = []
        """When each row this sender put off (a retry round, a contact's wait) comes due again,
        a heap: the earliest first, each kept until a round after it."""

    async def aclose(self) -> None:
        """Close the channels' kept connections (SMTP sessions said goodbye to, HTTP clients),
        each whatever the others do: when the sender stops."""
        for channel in (self.channels.email, self.channels.webhook, self.channels.sms):
            close = getattr(channel, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:  # a connection already gone: nothing left to close
                log.info("closing %s failed", type(channel).__name__, exc_info=True)

    @property
    def next_due(self) -> datetime | None:
        """The earliest time a row this sender put off comes due again (None: none is): an idle
        sender looks again then, notified or not. Each put-off row is remembered until a round
        after its time, so a later one is not forgotten when an earlier one comes due."""
        return self._put_off[0] if self._put_off else None

    async def send_due(self, *, limit: int = 1000) -> int:
        """Process due deliveries (up to about `limit`) in batches; returns how many."""
        now = self.clock()
        while self._put_off and self._put_off[0] <= now:
            heapq.heappop(self._put_off)  # this round claims it (and puts it off again if it must)
        done = 0
        while done < limit:
            batch, more = await self._batch()
            done += batch
            if not more:
                break
        return done

    async def _batch(self) -> tuple[int, bool]:
        """Claim up to `concurrency` due rows, send their messages at the same time, record
        every outcome, commit once. Returns how many rows it claimed, and whether a claim now
        may find more: when this one was full, or a row it settled held a later one of its
        case and audience back (else nothing due was left unclaimed: the claim that always
        followed found nothing, three statements for nothing after every batch)."""
        # Its own transaction (a polling loop, no caller gives one): the claimed rows stay locked
        # while their messages go out, and their outcomes commit together (the rows' changes
        # and the events announced for them in one statement, `save_claimed`).
        async with self.db.unit_of_work() as uow:
            repo = self.repository(uow)
            # In the order of the case's history (see `NotificationsRepository.claim_due`).
            claimed = await repo.claim_due(self.clock(), self.settings.concurrency)
            if not claimed:
                return 0, False
            deliveries = [delivery for delivery, _, _ in claimed]
            jobs = []
            for delivery, contact, _ in claimed:
                try:
                    job = await self._process(repo, uow, delivery, contact)
                except Exception as exc:
                    # A contact sealed to another key, facts a template cannot take: nothing
                    # will change on a retry, so the row fails (ops alert) and the batch goes on.
                    log.exception("delivery %s cannot be prepared", delivery.id)
                    await self._failed(
                        repo,
                        uow,
                        delivery,
                        NotificationError.OTHER,
                        f"the message could not be prepared ({type(exc).__name__})",
                        None,
                    )
                    continue
                if job is not None:
                    jobs.append((delivery, *job))
            outcomes = await asyncio.gather(*(self._deliver(*job) for job in jobs))
            for (delivery, channel, _, _), (outcome, ctx) in zip(jobs, outcomes, strict=True):
                # notification.sent continues the trace of the event that caused the message.
                token = otel_context.attach(ctx)
                try:
                    await self._record(repo, uow, delivery, channel, outcome)
                finally:
                    otel_context.detach(token)
            await repo.save_claimed(deliveries)
            await uow.commit()
        for delivery in deliveries:
            self._accepted.pop(delivery.id, None)
            if delivery.status == "pending":  # put off: a retry round, the contact's wait
                heapq.heappush(self._put_off, delivery.next_attempt_at)
        if len(self._put_off) > _PUT_OFF_KEPT:  # the earliest half kept; the idle poll finds
            self._put_off = heapq.nsmallest(_PUT_OFF_KEPT // 2, self._put_off)  # the others
        released = any(
            holds_back and delivery.status != "pending" for delivery, _, holds_back in claimed
        )
        return len(deliveries), released or len(deliveries) >= self.settings.concurrency

    async def _deliver(
        self, delivery: DeliveryRow, channel: Any, recipient: Any, message: Any
    ) -> tuple[Any, otel_context.Context]:
        """Send one message (with its quick retries) in a span of the causing event's trace.

        A message the channel accepted before recording it failed (the database restarted
        under the commit) is not sent again when its row comes back: the first acceptance is
        recorded instead."""
        parent = continue_trace(delivery.trace_context)
        if (accepted := self._accepted.get(delivery.id)) is not None:
            log.info(
                "delivery %s was accepted before its recording failed: not resent", delivery.id
            )
            return accepted, parent
        with tracer.start_as_current_span(
            f"notification {delivery.trigger} send", context=parent, kind=SpanKind.PRODUCER
        ) as span:
            span.set_attribute("referrals.case_id", str(delivery.case_id))
            span.set_attribute("referrals.notification.id", str(delivery.id))
            span.set_attribute("referrals.notification.audience", delivery.audience)
            span.set_attribute("referrals.notification.channel", str(channel.channel))
            send: Callable[[], Awaitable[Any]] = partial(channel.send, recipient, message)
            if delivery.audience == FRONT_END:
                send = self._attempts.recording(delivery.id, send, self.clock)
            outcome = await deliver_with_retry(send, self.settings.policy)
            span.set_attribute("referrals.notification.attempts", outcome.attempts)
            if outcome.delivered:
                self._accepted[delivery.id] = outcome
                while len(self._accepted) > ACCEPTED_MEMORY:
                    self._accepted.popitem(last=False)
            if not outcome.delivered:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(outcome.error)))
            return outcome, otel_context.get_current()

    async def _process(
        self,
        repo: NotificationsRepository,
        uow: UnitOfWork,
        delivery: DeliveryRow,
        contact: ContactRow | None,
    ) -> tuple[Any, Any, Any] | None:
        """What to send for this row (channel, recipient, message), or None if nothing now."""
        if delivery.audience == OPS:
            return self._ops_alert(delivery)
        if delivery.trigger == PING:
            return await self._ping(repo, delivery)
        if contact is None:
            waited = (self.clock() - delivery.created_at).total_seconds()
            if waited < self.settings.contact_wait:
                # Look again soon, then less and less often: a case whose contact never comes
                # must not keep the sender busy for `contact_wait`.
                delay = min(30.0, max(0.2, waited / 2))
                delivery.next_attempt_at = self.clock() + timedelta(seconds=delay)
                return None
            await self._failed(
                repo, uow, delivery, NotificationError.NO_CONTACT, "no contact", None
            )
            return None
        context = self._context(delivery, contact.locale)
        if delivery.audience == FRONT_END:
            target = await self._webhook_target(repo, contact.front_end)
            if target is None:
                delivery.status = "skipped"  # this front end takes no webhooks
                return None
            message = build_webhook_message(
                NotificationTrigger(delivery.trigger),
                context,
                case_id=delivery.case_id,
                notification_id=delivery.id,
                occurred_at=delivery.occurred_at,
            )
            return self.channels.webhook, target, message
        assert delivery.audience == PATIENT
        address = self.box.open_json(contact.sealed_contact, bound_to=str(delivery.case_id))
        picked = self._patient_channel(address)
        if picked is None:
            await self._failed(
                repo, uow, delivery, NotificationError.NO_CONTACT, "no usable e-mail or phone", None
            )
            return None
        channel, recipient = picked
        message = self.renderer.render(
            NotificationTrigger(delivery.trigger), context, channel.channel
        )
        return channel, recipient, replace(message, notification_id=delivery.id)

    async def _webhook_target(
        self, repo: NotificationsRepository, front_end: str
    ) -> WebhookTarget | None:
        """Where the front end takes its webhooks: its subscription (made through intake's API),
        else the static configuration, else nowhere."""
        row = await repo.front_end_webhook(front_end)
        if row is not None and row.url is not None and row.sealed_secret is not None:
            opened = self.box.open_json(row.sealed_secret, bound_to=front_end)
            return WebhookTarget(url=row.url, secret=opened["secret"])
        if row is not None:  # unsubscribed through the API: that wins over the configuration
            return None
        return self.channels.front_ends.get(front_end)

    async def _ping(
        self, repo: NotificationsRepository, delivery: DeliveryRow
    ) -> tuple[Any, Any, Any] | None:
        front_end = delivery.facts["front_end"]
        target = await self._webhook_target(repo, front_end)
        if target is None:
            delivery.status = "skipped"  # unsubscribed before the ping went out
            return None
        body = json.dumps(
            {
                "type": "referrals.webhook.ping.v1",
                "ping_id": str(delivery.id),
                "front_end": front_end,
                "occurred_at": delivery.occurred_at.isoformat(),
            }
        )
        return self.channels.webhook, target, RenderedMessage(subject=PING, text=body)

    def _patient_channel(self, address: dict[str, Any]) -> tuple[Any, str] | None:
        """The patient's preferred channel if usable, else the other one."""
        email, phone = address.get("email"), address.get("phone")
        sms = self.channels.sms
        if address.get("preferred_channel") == "sms" and sms is not None and phone:
            return sms, phone
        if email:
            return self.channels.email, email
        if sms is not None and phone:
            return sms, phone
        return None

    def _context(self, delivery: DeliveryRow, locale: str) -> Any:
        """The trigger's context: the row's facts, the patient's language, the time zone the
        event gave for the patient (a booked meeting's) or else the configured one."""
        model = CONTEXT_MODELS[NotificationTrigger(delivery.trigger)]
        url = self.settings.case_url_template
        return model.model_validate(
            {
                **{k: v for k, v in delivery.facts.items() if v is not None},
                "case_ref": case_reference(delivery.case_id),
                "locale": locale,
                "time_zone": delivery.facts.get("time_zone") or self.settings.time_zone,
                **({"case_url": url.format(case_id=delivery.case_id)} if url else {}),
            }
        )

    async def _record(
        self,
        repo: NotificationsRepository,
        uow: UnitOfWork,
        delivery: DeliveryRow,
        channel: Any,
        outcome: Any,
    ) -> None:
        attempted_before = delivery.attempts
        await self._record_outcome(repo, uow, delivery, channel, outcome)
        if delivery.audience == FRONT_END:
            await self._attempts.publish(repo, delivery, attempted_before)

    async def _record_outcome(
        self,
        repo: NotificationsRepository,
        uow: UnitOfWork,
        delivery: DeliveryRow,
        channel: Any,
        outcome: Any,
    ) -> None:
        delivery.attempts += max(outcome.attempts, 1)
        delivery.channel = str(channel.channel)
        if outcome.delivered:
            delivery.status = "sent"
            delivery.sent_at = self.clock()
            delivery.error_code = delivery.last_error = None
            if delivery.trigger == PING:  # a test: its log is the only record
                return
            await repo.announce(
                new_event(
                    NotificationSent(
                        case_id=delivery.case_id,
                        notification_id=delivery.id,
                        trigger=NotificationTrigger(delivery.trigger),
                        trigger_event_id=delivery.trigger_event_id,
                        channel=channel.channel,
                        sent_at=delivery.sent_at,
                    )
                )
            )
            _count(uow, delivery.channel, "sent")
            return
        error = outcome.error
        assert error is not None
        settled = self.settings.policy.settle(
            attempts=delivery.attempts,
            delivered=False,
            retryable=not isinstance(error, PermanentDeliveryError),
            retry_after=error.retry_after,
        )
        if settled.outcome is WebhookOutcome.FAILED:
            await self._failed(repo, uow, delivery, error.code, str(error), channel.channel)
            return
        assert settled.delay is not None
        delay = settled.delay
        delivery.error_code = str(error.code)
        delivery.last_error = str(error)[:500]
        delivery.next_attempt_at = self.clock() + timedelta(seconds=delay)
        _count(uow, delivery.channel, "retried")
        log.info("delivery %s: %s; next round in %.0f s", delivery.id, error.code, delay)

    async def _failed(
        self,
        repo: NotificationsRepository,
        uow: UnitOfWork,
        delivery: DeliveryRow,
        code: NotificationError,
        detail: str,
        channel: NotificationChannel | None,
    ) -> None:
        delivery.status = "failed"
        delivery.error_code = str(code)
        delivery.last_error = detail[:500]
        if delivery.trigger == PING:  # the front end's test: no notification, no ops alert
            return
        channel = channel or (
            NotificationChannel.WEBHOOK
            if delivery.audience == FRONT_END
            else NotificationChannel.EMAIL
        )
        delivery.channel = str(channel)
        await repo.announce(
            new_event(
                NotificationFailed(
                    case_id=delivery.case_id,
                    notification_id=delivery.id,
                    trigger=NotificationTrigger(delivery.trigger),
                    trigger_event_id=delivery.trigger_event_id,
                    channel=channel,
                    attempts=max(delivery.attempts, 1),
                    error_code=code,
                    failed_at=self.clock(),
                )
            )
        )
        repo.add_alert(
            OpsAlert(
                case_id=delivery.case_id,
                kind="notification_failed",
                detail=f"{delivery.trigger} to the {delivery.audience} failed: {code}",
            )
        )
        _count(uow, delivery.channel, "failed")
        log.warning("delivery %s failed for good: %s", delivery.id, code)

    def _ops_alert(self, delivery: DeliveryRow) -> tuple[Any, Any, Any] | None:
        if not self.channels.ops_email:
            delivery.status = "skipped"  # the alert is in ops_alerts; no ops mailbox configured
            return None
        alert = UnroutableOpsAlert(
            case_id=delivery.case_id,
            case_ref=case_reference(delivery.case_id),
            reason=delivery.facts["reason"],
            centers_tried=delivery.facts.get("centers_tried", []),
            occurred_at=delivery.occurred_at,
            opinion_round=delivery.facts.get("opinion_round"),
        )
        return self.channels.email, self.channels.ops_email, self.renderer.render_ops_alert(alert)


SETTLED = ("sent", "failed", "skipped")
"""Deliveries that are over: the only ones the retention may delete."""


def webhook_log_pruner(
    db: Database,
    settings: RetentionSettings | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> LogPruner:
    """Deletes settled front-end webhook deliveries (updates and pings) older than the
    retention; pending ones stay, and so do the patient's e-mails and SMS (what went to a
    patient is kept)."""
    return LogPruner(
        db,
        Delivery,
        name="front_end_deliveries",
        settled=(col(Delivery.audience) == FRONT_END) & col(Delivery.status).in_(SETTLED),
        age=Delivery.created_at,
        settings=settings,
        clock=clock,
    )


def _count(uow: UnitOfWork, channel: str | None, outcome: str) -> None:
    """Count a delivery's outcome on its channel once the transaction commits."""
    counted = NOTIFICATION_DELIVERIES.labels(service_name(), channel or "none", outcome)
    uow.after_commit(counted.inc)


CHANNEL = "notifications_due"
"""What the consumer's commits notify and the sender listens to (its payload is empty)."""


class DueSignal:
    """Whether deliveries may have been planned since `clear`: PostgreSQL's notifications on
    `CHANNEL`, heard on a connection of the signal's own, opened again when it was lost."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: Any = None  # asyncpg.Connection, while listening
        self._heard = asyncio.Event()

    async def listening(self) -> bool:
        """Whether the signal is heard now, connecting (again) if it is not: False when the
        database cannot be reached (the sender then polls as it did). A new LISTEN counts as a
        notification: whatever was planned while nobody listened is looked for once."""
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return True
        self._connection = None
        try:
            connection = await asyncpg.connect(self._dsn)
        except Exception as exc:  # down, restarting, refusing: poll meanwhile
            log.warning("cannot listen for planned deliveries (%r); polling", exc)
            return False
        try:
            await connection.add_listener(CHANNEL, self._notified)
        except Exception as exc:
            log.warning("cannot listen for planned deliveries (%r); polling", exc)
            connection.terminate()
            return False
        self._connection = connection
        self._heard.set()
        return True

    def _notified(self, *_: object) -> None:
        self._heard.set()

    def clear(self) -> None:
        """Forget the notifications heard so far (the round about to run sees their rows)."""
        self._heard.clear()

    async def wait(self, timeout: float, stop: asyncio.Event) -> None:
        """Until a notification heard since `clear`, `stop`, or `timeout` seconds."""
        heard = asyncio.ensure_future(self._heard.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({heard, stopped}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            heard.cancel()
            stopped.cancel()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=5)
            except Exception:
                connection.terminate()
