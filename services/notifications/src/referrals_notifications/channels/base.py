"""What every delivery channel promises, and how its failures are told apart.

A channel hands a rendered message to something outside the platform (an SMTP server, an SMS
provider, a partner's webhook endpoint) and either returns a receipt or raises `DeliveryError`.
Every failure is classified once, where the channel still knows what happened:

- `TransientDeliveryError`: worth trying again later (a timeout, a refused connection, an SMTP 4xx
  reply, an HTTP 429 or 5xx);
- `PermanentDeliveryError`: trying again cannot help (a mailbox that does not exist, a rejected
  phone number, a webhook answering 4xx, wrong credentials).

Each carries the `NotificationError` code that `notification.failed` reports, so the retry helper
and the consumer never look at provider-specific exceptions. Anything else a channel raises is a
bug and is not retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Protocol, TypeVar

from referrals_common.contracts.notifications import NotificationChannel, NotificationError
from referrals_common.webhooks import Attempt

from ..rendering import RenderedMessage

RecipientT_contra = TypeVar("RecipientT_contra", contravariant=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The channel accepted the message: when, and the provider's id for it if it gave one."""

    channel: NotificationChannel
    provider_id: str | None = None
    accepted_at: datetime = field(default_factory=utc_now)
    status_code: int | None = None
    """The HTTP status the receiver answered (webhooks)."""
    attempt: Attempt | None = None
    """The webhook attempt as the delivery log keeps it (webhooks)."""


class DeliveryError(Exception):
    """A message could not be handed to its channel; `code` is what `notification.failed` says."""

    transient: ClassVar[bool]

    def __init__(
        self,
        code: NotificationError,
        detail: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        attempt: Attempt | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status_code = status_code
        """The HTTP status the receiver answered, if it answered (webhooks)."""
        self.retry_after = retry_after
        """The seconds the receiver asked to wait (`Retry-After`), if it asked."""
        self.attempt = attempt
        """The webhook attempt as the delivery log keeps it (webhooks)."""


class TransientDeliveryError(DeliveryError):
    """Trying again later may succeed."""

    transient = True


class PermanentDeliveryError(DeliveryError):
    """Trying again cannot succeed."""

    transient = False


class Channel(Protocol[RecipientT_contra]):
    """Delivers rendered messages to one kind of recipient (an address, a number, an endpoint)."""

    channel: NotificationChannel

    async def send(self, recipient: RecipientT_contra, message: RenderedMessage) -> DeliveryReceipt:
        """Hands the message over; raises `DeliveryError` (and nothing else) when it cannot."""
        ...


__all__ = [
    "Channel",
    "DeliveryError",
    "DeliveryReceipt",
    "PermanentDeliveryError",
    "TransientDeliveryError",
]
