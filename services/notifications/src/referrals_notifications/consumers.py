"""Notifications listens to every topic that says something the patient must hear, and to its
private contacts topic.

One consumer, group `notifications.triggers`; it writes delivery rows only (sending is the
sender process's job), so it keeps pace with the platform whatever the SMTP server does.
"""

from __future__ import annotations

from typing import Any

from referrals_common.contracts import (
    CaseContactShared,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CaseSubmitted,
    CaseUnroutable,
    CaseWithdrawn,
    CentersProposed,
    CloudEvent,
    DocumentRejected,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralMeetingReminder,
    ReferralOpinionDelivered,
    ReferralRequested,
    ReferralShipmentReceived,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.consumer import EventConsumer
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_notifications.service import Notifications

CONSUMER_NAME = "notifications.triggers"
SUBSCRIBED_TOPICS = (
    topics.CONTACTS,
    topics.CASES,
    topics.DOCUMENTS,
    topics.LANGUAGE_CHECKS,
    topics.ROUTING,
)
GROUPS = {CONSUMER_NAME: SUBSCRIBED_TOPICS}
"""Each consumer group of the consumer process and the topics it reads."""
HANDLED = (
    FrontEndWebhookChanged,
    FrontEndWebhookPingRequested,
    CaseContactShared,
    CaseSubmitted,
    CaseInformationProvided,
    CaseFurtherOpinionRequested,
    CaseWithdrawn,
    DocumentStored,
    DocumentRejected,
    DocumentTranslationRequired,
    DocumentUnreadable,
    ReferralRequested,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralInfoRequested,
    ReferralInfoReminder,
    ReferralShipmentReceived,
    ReferralOpinionDelivered,
    ReferralFollowUpAnswered,
    ReferralMeetingOffered,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingReminder,
    ReferralMeetingEnded,
    CentersProposed,
    CaseUnroutable,
)


def build_consumer(
    notifications: Notifications,
    db: Database,
    dead_letters: DeadLetterPublisher,
    **options: Any,
) -> EventConsumer:
    consumer = EventConsumer(CONSUMER_NAME, db, dead_letters, **options)

    @consumer.handles(*HANDLED)
    async def on_event(event: CloudEvent[Any], uow: UnitOfWork) -> None:
        await notifications.on_event(uow, event)

    return consumer
