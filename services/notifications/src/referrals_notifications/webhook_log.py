"""The delivery log of front ends' webhooks: every HTTP attempt, as an event for intake.

The sender notes each request to a front end's endpoint as it is made (when, the status code
the endpoint answered or none, the error class), and when the delivery's row is recorded, adds
one `referrals.notification.webhook_attempted.v1` per attempt to the outbox in that same
transaction: intake keeps them as the front end's delivery log (`GET /v1/front-end/webhook/
deliveries`), since the front end authenticates to intake, not to notifications. An attempt
followed by another one in the same round says `retrying` with the time of the next; the last
one of a round says `retrying` with the row's next round, `failed` when the row gave up, or
`delivered`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from referrals_common.contracts import new_event
from referrals_common.contracts.notifications import WebhookAttempted, WebhookOutcome
from referrals_common.outbound import ErrorClass
from referrals_common.webhooks import Attempt, log_entries
from referrals_notifications.channels.base import DeliveryError
from referrals_notifications.repository import DeliveryRow, NotificationsRepository

MEMORY = 10_000
"""Deliveries whose attempts are held until their rows are recorded (a bound, far above one
batch: a batch that failed before recording leaves its attempts behind)."""

Noted = tuple[Attempt, DeliveryError | None]
"""An attempt as the delivery log keeps it (`referrals_common.webhooks`), and the delivery error
it was worded as (its `NotificationError` code goes into the event)."""


class WebhookAttempts:
    def __init__(self) -> None:
        self._by_delivery: OrderedDict[UUID, list[Noted]] = OrderedDict()

    def recording(
        self, delivery_id: UUID, send: Callable[[], Awaitable[Any]], clock: Callable[[], datetime]
    ) -> Callable[[], Awaitable[Any]]:
        """`send`, noting each call's outcome for `delivery_id` (at the sender's `clock`)."""

        async def attempt() -> Any:
            at = clock()
            try:
                receipt = await send()
            except DeliveryError as error:
                made = error.attempt or Attempt(
                    at, error.status_code, ErrorClass.PROTOCOL_ERROR, error.retry_after
                )
                self._note(delivery_id, (replace(made, at=at), error))
                raise
            made = getattr(receipt, "attempt", None) or Attempt(
                at, getattr(receipt, "status_code", None)
            )
            self._note(delivery_id, (replace(made, at=at), None))
            return receipt

        return attempt

    def _note(self, delivery_id: UUID, noted: Noted) -> None:
        self._by_delivery.setdefault(delivery_id, []).append(noted)
        self._by_delivery.move_to_end(delivery_id)
        while len(self._by_delivery) > MEMORY:
            self._by_delivery.popitem(last=False)

    async def publish(
        self, repo: NotificationsRepository, delivery: DeliveryRow, attempted_before: int
    ) -> None:
        """One event per attempt noted for `delivery`, announced in the transaction recording
        its row by that transaction's repository `repo` (which also tells the case's front end
        when the row does not)."""
        noted = self._by_delivery.pop(delivery.id, [])
        if not noted:
            return
        front_end = delivery.facts.get("front_end")
        if front_end is None:
            contact = await repo.contact(delivery.case_id)
            front_end = contact.front_end if contact is not None else None
        if front_end is None:
            return
        settled = {"sent": WebhookOutcome.DELIVERED, "failed": WebhookOutcome.FAILED}.get(
            delivery.status, WebhookOutcome.RETRYING
        )
        entries = log_entries([a for a, _ in noted], settled, delivery.next_attempt_at)
        for number, (entry, (_, error)) in enumerate(zip(entries, noted, strict=True)):
            await repo.announce(
                new_event(
                    WebhookAttempted(
                        case_id=delivery.case_id,
                        front_end=front_end,
                        delivery_id=delivery.id,
                        event=delivery.trigger,
                        attempt=attempted_before + number + 1,
                        attempted_at=entry.attempt.at,
                        status_code=entry.attempt.status_code,
                        outcome=entry.outcome,
                        error_code=error.code if error else None,
                        next_attempt_at=entry.next_attempt_at,
                    )
                )
            )
