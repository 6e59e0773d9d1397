"""The scheduler process: expires offers whose answer deadline passed, delivers offers to the
centers that take them by webhook, and prunes the webhook delivery log.

Deadlines and deliveries are rows, not timers: a scheduler that restarts (or a second one running
beside it) finds what is due in the database and carries on; rows are claimed with
`FOR UPDATE SKIP LOCKED`, so two schedulers never handle the same one.

A webhook delivery is at least once, through the platform's one webhook component
(`referrals_common.webhooks`, which notifications uses for front ends too): the offer is POSTed
with an HMAC-SHA256 signature and the CloudEvents id in `X-Referrals-Event-Id`, so a receiver
that sees the same id twice ignores the second. A 2xx marks it delivered; a retryable failure (no
answer, 408, 425, 429, 5xx) is tried again in the same round, then in later rounds with backoff
(honouring `Retry-After`), until the policy gives up and the delivery is `failed`, which the
center's API and ops can see; any other answer fails at once. Before every attempt the
receiver's host is resolved again and must still be public, and the POST goes to the address
that was checked (`referrals_common.outbound`); what went wrong is stored as a coarse class
("connect failed", "HTTP 5xx"), never as the socket's words. An offer that ended (answered,
expired, withdrawn) is not sent any more: its delivery is `cancelled`. Settled deliveries
(delivered, failed, cancelled) older than the retention are deleted in bounded batches; a
pending one never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlmodel import col

from referrals_common.contracts import ReferralOffered
from referrals_common.crypto import FieldCipher
from referrals_common.db import Database
from referrals_common.metrics import WEBHOOK_DELIVERIES, service_name
from referrals_common.outbound import OutboundPolicy
from referrals_common.telemetry import untraced
from referrals_common.webhooks import EVENT_ID_HEADER, RetryPolicy, WebhookOutcome, WebhookPoster
from referrals_common.webhooks.policy import Sleep
from referrals_common.webhooks.retention import LogPruner, RetentionSettings
from referrals_partners.meetings import Meetings
from referrals_partners.models import Webhook, WebhookDelivery, utcnow
from referrals_partners.repository import PartnersRepository
from referrals_partners.service import Partners

log = logging.getLogger(__name__)


SETTLED = ("delivered", "failed", "cancelled")
"""Deliveries that are over: the only ones the retention may delete."""


class WebhookSender:
    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        policy: OutboundPolicy,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        concurrency: int = 4,
    ) -> None:
        self.db = db
        self.concurrency = concurrency
        """Deliveries made at the same time: a round to a center that does not answer (its
        quick attempts, each up to the timeout) does not hold up the others."""
        self.cipher = cipher
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.poster = WebhookPoster(
            policy, timeout=timeout, transport=transport, user_agent="referrals-partners/0.1"
        )
        self._sleep = sleep

    async def close(self) -> None:
        await self.poster.aclose()

    async def deliver_due(self, *, limit: int = 20) -> int:
        """Try every due delivery once (one round each), `concurrency` at a time (each claims
        its own row, skipping the others'); returns how many were tried."""
        tried = 0
        while tried < limit:
            wave = min(self.concurrency, limit - tried)
            claimed = sum(await asyncio.gather(*(self._deliver_one() for _ in range(wave))))
            tried += claimed
            if claimed < wave:
                break
        return tried

    async def _deliver_one(self) -> bool:
        async with self.db.unit_of_work() as uow:
            repo = PartnersRepository(uow.session)
            delivery = await repo.next_delivery_due(self.clock())
            if delivery is None:
                return False
            hook = await repo.webhook(delivery.center_code)
            referral = await repo.referral(delivery.referral_id)
            # An offer is sent while it is open; other news (an answered request, a follow-up
            # question, a meeting booked) while the referral is the center's, opinion given or not.
            still_for = (
                ("offered",)
                if delivery.payload.get("type") == ReferralOffered.event_type
                else ("accepted", "info_requested", "offered", "completed")
            )
            if referral is not None and referral.status not in still_for:
                delivery.status = "cancelled"  # the offer ended before it could be sent
                delivery.last_error = "the offer ended before it was delivered"
                await uow.commit()
                _count(delivery)
                return True
            if hook is None:
                delivery.attempts += 1
                delivery.status = "failed"
                delivery.last_error = "the center removed its webhook"
            else:
                await self._post(delivery, hook)
            await uow.commit()
            _count(delivery)
        return True

    async def _post(self, delivery: WebhookDelivery, hook: Webhook) -> None:
        """One round of attempts, and the delivery settled by the retry policy."""
        secret = self.cipher.decrypt_json(
            bytes.fromhex(hook.secret_encrypted), bound_to=hook.center_code
        )
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        attempts = await self.poster.deliver(
            hook.url,
            secret,
            body,
            policy=self.retry,
            headers={EVENT_ID_HEADER: str(delivery.event_id)},
            sleep=self._sleep,
        )
        delivery.attempts += len(attempts)
        last = attempts[-1]
        delivery.last_status_code = last.status_code
        settled = self.retry.settle(
            attempts=delivery.attempts,
            delivered=last.delivered,
            retryable=last.retryable,
            retry_after=last.retry_after,
        )
        if settled.outcome is WebhookOutcome.DELIVERED:
            delivery.status = "delivered"
            delivery.delivered_at = self.clock()
            delivery.last_error = None
            return
        # The class only: the socket's words would tell a center what listens where.
        delivery.last_error = str(last.error)
        if settled.outcome is WebhookOutcome.FAILED:
            delivery.status = "failed"
            log.warning(
                "webhook delivery %s to %s failed for good: %s",
                delivery.id,
                delivery.center_code,
                last.error,
            )
        else:
            assert settled.delay is not None
            delivery.next_attempt_at = self.clock() + timedelta(seconds=settled.delay)


def delivery_log_pruner(
    db: Database,
    settings: RetentionSettings | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> LogPruner:
    """Deletes settled webhook deliveries older than the retention; pending ones stay."""
    return LogPruner(
        db,
        WebhookDelivery,
        name="center_deliveries",
        settled=col(WebhookDelivery.status).in_(SETTLED),
        age=WebhookDelivery.created_at,
        settings=settings,
        clock=clock,
    )


_OUTCOMES = {"delivered": "delivered", "pending": "retried", "failed": "failed"}


def _count(delivery: WebhookDelivery) -> None:
    """Count a committed delivery attempt by what became of it (`cancelled`: the offer ended)."""
    outcome = _OUTCOMES.get(delivery.status, delivery.status)
    WEBHOOK_DELIVERIES.labels(service_name(), outcome).inc()


async def run_scheduler(
    partners: Partners,
    db: Database,
    sender: WebhookSender,
    *,
    interval: float,
    stop: asyncio.Event,
    meetings: Meetings | None = None,
    pruner: LogPruner | None = None,
) -> None:
    """Until `stop` is set: expire due offers (re-routing their cases), remind of and expire
    information requests, remind of booked meetings, deliver due webhooks, and (every
    `pruner`'s interval) prune the webhook delivery log."""
    meetings = meetings or Meetings(partners)
    for outcome in _OUTCOMES.values():  # at 0 from the start: the first failure is an increase
        WEBHOOK_DELIVERIES.labels(service_name(), outcome)
    while not stop.is_set():
        try:
            # Each round polls; only an expiry (a case step of its own) is traced.
            with untraced():
                # One question first: a round with nothing due (most rounds) is one statement
                # instead of a transaction per poll.
                if await anything_due(partners, meetings, sender, db):
                    await _round(partners, meetings, sender, db)
                if pruner is not None:
                    await pruner.prune_if_due()
        except Exception:  # the database may be restarting: log, wait, try again
            log.exception("scheduler round failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def anything_due(
    partners: Partners, meetings: Meetings, sender: WebhookSender, db: Database
) -> bool:
    """Whether any poll of a scheduler round may have work now (`PartnersRepository.anything_due`,
    with each poll's own clock and reminder times)."""
    async with db.unit_of_work() as uow:
        return await PartnersRepository(uow.session).anything_due(
            partners.clock(),
            request_reminders=partners.limits.info_reminders_before,
            meeting_reminders=meetings.limits.reminders_before,
            deliveries_at=sender.clock(),
        )


async def _round(
    partners: Partners, meetings: Meetings, sender: WebhookSender, db: Database
) -> None:
    """Every poll, until none finds more to do; then the due webhook deliveries."""
    while True:
        async with db.unit_of_work() as uow:
            expired = await partners.expire_due(uow)
            await uow.commit()
        async with db.unit_of_work() as uow:
            requests = await partners.remind_and_expire_requests(uow)
            await uow.commit()
        async with db.unit_of_work() as uow:
            chosen = await partners.choose_for_silent_patients(uow)
            await uow.commit()
        async with db.unit_of_work() as uow:
            reminded = await meetings.remind(uow)
            await uow.commit()
        if reminded:
            log.info("reminded of %d meetings", reminded)
        if chosen:
            log.info("offered %d cases to their first-ranked center", chosen)
        if expired:
            log.info("expired %d offers", expired)
        if requests:
            log.info("reminded of or expired %d information requests", requests)
        if not (expired or requests or chosen or reminded):
            break
    await sender.deliver_due()
