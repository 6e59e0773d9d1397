"""Events published by **notifications** on `referrals.notifications.v1`.

Notifications tells the patient (or the partner front end, by webhook) what happened to the case,
in the patient's language. It keeps the contact details; its events record only that a message of
some kind went out, or could not, on which channel: never the recipient or the text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field, PositiveInt

from . import topics
from .envelope import EventData

SOURCE = "/referrals/notifications"


class NotificationTrigger(StrEnum):
    """What the notification tells the patient; each maps to the event(s) that cause it."""

    CASE_SUBMITTED = "case_submitted"
    DOCUMENT_REJECTED = "document_rejected"
    TRANSLATION_REQUIRED = "translation_required"
    DOCUMENT_UNREADABLE = "document_unreadable"
    CASE_READY = "case_ready"
    REFERRAL_REQUESTED = "referral_requested"
    REFERRAL_ACCEPTED = "referral_accepted"
    REFERRAL_DECLINED = "referral_declined"
    """A center declined (or let the offer expire) and the case goes to the next center."""
    INFO_REQUESTED = "info_requested"
    INFO_REMINDER = "info_reminder"
    """The center's request for information is still unanswered and due soon."""
    INFO_EXPIRED = "info_expired"
    """The request was not answered in time: the case goes to the next center."""
    INFORMATION_SENT = "information_sent"
    """The patient's answer went to the center."""
    SHIPMENT_RECEIVED = "shipment_received"
    """The center confirmed receiving the material the patient sent."""
    OPINION_DELIVERED = "opinion_delivered"
    FOLLOW_UP_ANSWERED = "follow_up_answered"
    """The center answered the patient's follow-up question on its opinion."""
    CENTERS_PROPOSED = "centers_proposed"
    """The patient asked to choose: the centers to choose from, and by when."""
    MEETING_OFFERED = "meeting_offered"
    """The center offered times for the consultation meeting (or new times)."""
    MEETING_BOOKED = "meeting_booked"
    """The meeting is booked: the confirmation, with a calendar file."""
    MEETING_CANCELLED = "meeting_cancelled"
    """The meeting is cancelled (by either side), with the calendar's cancellation."""
    MEETING_REMINDER = "meeting_reminder"
    """The meeting is in about 24 hours, or in about an hour."""
    MEETING_MISSED = "meeting_missed"
    """The center recorded that the patient missed the meeting."""
    FURTHER_OPINION_REQUESTED = "further_opinion_requested"
    """After an opinion the patient asked for one more, from a center never offered the case."""
    FURTHER_OPINION_UNAVAILABLE = "further_opinion_unavailable"
    """No other center can give the further opinion now; the case keeps the opinion it has."""
    CASE_UNROUTABLE = "case_unroutable"
    CASE_WITHDRAWN = "case_withdrawn"


class NotificationChannel(StrEnum):
    """How a notification is delivered."""

    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    """A signed HTTP callback to the partner front end the case came from."""


class NotificationError(StrEnum):
    """Why a notification could not be delivered."""

    NO_CONTACT = "no_contact"
    """The case has no contact for this channel."""
    INVALID_RECIPIENT = "invalid_recipient"
    REJECTED = "rejected"
    """The provider or the webhook endpoint refused the message permanently."""
    TIMEOUT = "timeout"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    WEBHOOK_HTTP_ERROR = "webhook_http_error"
    OTHER = "other"


class NotificationSent(EventData):
    """A notification was handed to its channel (SMTP server, SMS provider, webhook endpoint).

    Emitted once per notification, when delivery to the channel succeeded; the patient's own
    mailbox or phone may still lose it. `trigger_event_id` is the CloudEvents id of the event that
    caused the notification, so a consumer can tell which occurrence was announced.
    """

    event_type: ClassVar[str] = "referrals.notification.sent.v1"
    topic: ClassVar[str] = topics.NOTIFICATIONS
    source: ClassVar[str] = SOURCE

    notification_id: UUID = Field(description="The notification")
    trigger: NotificationTrigger = Field(description="What the notification announces")
    trigger_event_id: UUID = Field(description="CloudEvents id of the event that caused it")
    channel: NotificationChannel = Field(description="How it was delivered")
    sent_at: AwareDatetime = Field(description="When the channel accepted it")


class NotificationFailed(EventData):
    """A notification could not be delivered and notifications gave up on it.

    Emitted once per notification, after the last retry (or at once for a permanent error such as
    `no_contact`). Operators follow up; the case itself is not affected.
    """

    event_type: ClassVar[str] = "referrals.notification.failed.v1"
    topic: ClassVar[str] = topics.NOTIFICATIONS
    source: ClassVar[str] = SOURCE

    notification_id: UUID = Field(description="The notification")
    trigger: NotificationTrigger = Field(description="What the notification would have announced")
    trigger_event_id: UUID = Field(description="CloudEvents id of the event that caused it")
    channel: NotificationChannel = Field(description="The channel that failed")
    attempts: PositiveInt = Field(description="How many delivery attempts were made")
    error_code: NotificationError = Field(description="Why the last attempt failed")
    failed_at: AwareDatetime = Field(description="When notifications gave up")


class WebhookOutcome(StrEnum):
    """What one webhook attempt came to."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    """It failed; it is tried again at `next_attempt_at`."""
    FAILED = "failed"
    """It failed and will not be tried again (a permanent refusal, or the retries ran out)."""


class WebhookAttempted(EventData):
    """One HTTP attempt to deliver a signed webhook to a partner front end, for its delivery log.

    Emitted for every attempt (a retry is an attempt of its own), when its outcome is recorded.
    Intake keeps them for the front end to read (`GET /v1/front-end/webhook/deliveries`): the
    status code it answered, the error class, when the next attempt is due. No personal data and
    never the body: what was sent is `event` and the ids. `case_id` is the case the update is
    about, or for a test ping the front end's stream key (`front_end_key`).
    """

    event_type: ClassVar[str] = "referrals.notification.webhook_attempted.v1"
    topic: ClassVar[str] = topics.NOTIFICATIONS
    source: ClassVar[str] = SOURCE

    front_end: str = Field(min_length=1, max_length=64, description="The front end's client id")
    delivery_id: UUID = Field(description="The delivery (the notification id, or the ping id)")
    event: str = Field(
        max_length=40, description="What was delivered: a notification trigger, or `ping`"
    )
    attempt: PositiveInt = Field(description="1 for the first attempt of this delivery")
    attempted_at: AwareDatetime = Field(description="When the request was made")
    status_code: int | None = Field(
        default=None, ge=100, le=599, description="The endpoint's HTTP status; null: no answer"
    )
    outcome: WebhookOutcome = Field(description="What the attempt came to")
    error_code: NotificationError | None = Field(
        default=None, description="Why it failed (the error class, never a socket's text)"
    )
    next_attempt_at: AwareDatetime | None = Field(
        default=None, description="When it is tried again (outcome `retrying` only)"
    )


__all__ = [
    "NotificationChannel",
    "NotificationError",
    "NotificationFailed",
    "NotificationSent",
    "NotificationTrigger",
    "WebhookAttempted",
    "WebhookOutcome",
]
