"""The scheduler process: expires offers whose answer deadline passed, and delivers offers to the
centers that take them by webhook.

Deadlines and deliveries are rows, not timers: a scheduler that restarts (or a second one running
beside it) finds what is due in the database and carries on; rows are claimed with
`FOR UPDATE SKIP LOCKED`, so two schedulers never handle the same one.

A webhook delivery is at least once: the offer is POSTed with an HMAC-SHA256 signature
(`referrals_common.webhooks`) and the CloudEvents id in `X-Referrals-Event-Id`, so a receiver
that sees the same id twice ignores the second. A 2xx marks it delivered; anything else is
retried with exponential backoff until `webhook_max_attempts`, then the delivery is `failed`,
which the center's API and ops can see. Before every attempt the receiver's host is resolved
again and must still be public, and the POST goes to the address that was checked
(`referrals_common.outbound`); what went wrong is stored as a coarse class ("connect failed",
"HTTP 5xx"), never as the socket's words. An offer that ended (answered, expired, withdrawn)
is not sent any more: its delivery is `cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select

from referrals_common.contracts import ReferralOffered
from referrals_common.crypto import FieldCipher
from referrals_common.db import Database
from referrals_common.metrics import WEBHOOK_DELIVERIES, service_name
from referrals_common.outbound import OutboundPolicy, TargetRefused, classify
from referrals_common.telemetry import untraced
from referrals_common.webhooks import EVENT_ID_HEADER, signed_headers
from referrals_partners.meetings import Meetings
from referrals_partners.models import Referral, Webhook, WebhookDelivery, utcnow
from referrals_partners.service import Partners

log = logging.getLogger(__name__)


class WebhookSender:
    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        policy: OutboundPolicy,
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        backoff: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self.client.aclose()

    async def deliver_due(self, *, limit: int = 20) -> int:
        """Try every due delivery once; returns how many were tried."""
        tried = 0
        for _ in range(limit):
            if not await self._deliver_one():
                break
            tried += 1
        return tried

    async def _deliver_one(self) -> bool:
        async with self.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= self.clock(),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            delivery = rows.scalar_one_or_none()
            if delivery is None:
                return False
            hook = await uow.session.get(Webhook, delivery.center_code)
            referral = await uow.session.get(Referral, delivery.referral_id)
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
            delivery.attempts += 1
            if hook is None:
                delivery.status = "failed"
                delivery.last_error = "the center removed its webhook"
            else:
                await self._post(delivery, hook)
            await uow.commit()
            _count(delivery)
        return True

    async def _post(self, delivery: WebhookDelivery, hook: Webhook) -> None:
        secret = self.cipher.decrypt_json(
            bytes.fromhex(hook.secret_encrypted), bound_to=hook.center_code
        )
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = {**signed_headers(secret, body), EVENT_ID_HEADER: str(delivery.event_id)}
        try:
            response = await self.policy.post(self.client, hook.url, content=body, headers=headers)
        except (httpx.HTTPError, TargetRefused) as exc:
            # The class only: the socket's words would tell a center what listens where.
            log.info("webhook delivery %s to %s: %r", delivery.id, delivery.center_code, exc)
            self._failed(delivery, str(classify(exc)), None)
            return
        if response.is_success:
            delivery.status = "delivered"
            delivery.delivered_at = self.clock()
            delivery.last_status_code = response.status_code
            delivery.last_error = None
        else:
            self._failed(delivery, str(classify(response)), response.status_code)

    def _failed(self, delivery: WebhookDelivery, error: str, code: int | None) -> None:
        delivery.last_error = error
        delivery.last_status_code = code
        if delivery.attempts >= self.max_attempts:
            delivery.status = "failed"
            log.warning(
                "webhook delivery %s to %s failed for good: %s",
                delivery.id,
                delivery.center_code,
                error,
            )
        else:
            delay = self.backoff * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = self.clock() + timedelta(seconds=delay)


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
) -> None:
    """Until `stop` is set: expire due offers (re-routing their cases), remind of and expire
    information requests, remind of booked meetings, deliver due webhooks."""
    meetings = meetings or Meetings(partners)
    for outcome in _OUTCOMES.values():  # at 0 from the start: the first failure is an increase
        WEBHOOK_DELIVERIES.labels(service_name(), outcome)
    while not stop.is_set():
        try:
            # Each round polls; only an expiry (a case step of its own) is traced.
            with untraced():
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
        except Exception:  # the database may be restarting: log, wait, try again
            log.exception("scheduler round failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
