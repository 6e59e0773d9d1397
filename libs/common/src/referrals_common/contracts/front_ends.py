"""Events published by **intake** about a partner front end's webhook subscription, on the
private topic `referrals.contacts.v1` that only notifications reads.

A front end subscribes through intake's API (`PUT /v1/front-end/webhook`, with its API key);
intake keeps who subscribed and tells notifications, which delivers the case updates and keeps
the delivery log (it sends the attempts back as `referrals.notification.webhook_attempted.v1`).

These events are about a front end, not a case. The envelope's `subject` and the Kafka key must
still be a UUID (`case_id`): it is the front end's own stream key, `front_end_key(front_end)`,
so every change of one front end's subscription stays in order in one partition.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID, uuid5

from pydantic import Field, HttpUrl, PositiveInt

from . import topics
from .envelope import EventData

SOURCE = "/referrals/intake"
_FRONT_ENDS = UUID("7b0e0a52-5f55-4c1e-9a57-3f6f3f0f2f5e")


def front_end_key(front_end: str) -> UUID:
    """The stream key (`case_id`, `subject`, Kafka key) of a front end's subscription events."""
    return uuid5(_FRONT_ENDS, front_end)


class FrontEndWebhookChanged(EventData):
    """A front end subscribed its webhook endpoint, replaced it, rotated its secret, or
    unsubscribed (`url` null).

    Emitted by intake once per change made through `/v1/front-end/webhook` (PUT, DELETE).

    `sealed_secret` is the signing secret sealed to notifications' public key
    (`referrals_common.crypto.SealedBox`, bound to the front end's id; once opened
    `{"secret": "whsec_..."}`): given when the subscription is made or the secret rotated, null
    when only the address changed (notifications keeps the secret it has). `version` grows with
    every change: notifications applies a change only over an older one.
    """

    event_type: ClassVar[str] = "referrals.webhook.subscription_changed.v1"
    topic: ClassVar[str] = topics.CONTACTS
    source: ClassVar[str] = SOURCE

    case_id: UUID = Field(
        description="Not a case: the front end's stream key (`front_end_key`), the Kafka key"
    )
    front_end: str = Field(min_length=1, max_length=64, description="The front end's client id")
    url: HttpUrl | None = Field(description="Where to POST the signed updates; null: none")
    sealed_secret: str | None = Field(
        default=None,
        min_length=40,
        max_length=4000,
        description="Base64 sealed box of the new signing secret; null: keep the current one",
    )
    version: PositiveInt = Field(description="Grows with every change of this subscription")


class FrontEndWebhookPingRequested(EventData):
    """The front end asked for a test delivery: notifications POSTs a signed `ping` to the
    subscribed endpoint now, like any update (same signature, same retries, in the log).

    Emitted by intake once per `POST /v1/front-end/webhook/ping` (a replay emits nothing)."""

    event_type: ClassVar[str] = "referrals.webhook.ping_requested.v1"
    topic: ClassVar[str] = topics.CONTACTS
    source: ClassVar[str] = SOURCE

    case_id: UUID = Field(
        description="Not a case: the front end's stream key (`front_end_key`), the Kafka key"
    )
    front_end: str = Field(min_length=1, max_length=64, description="The front end's client id")
    ping_id: UUID = Field(description="The ping's id, in its body and in the delivery log")


__all__ = ["FrontEndWebhookChanged", "FrontEndWebhookPingRequested", "front_end_key"]
