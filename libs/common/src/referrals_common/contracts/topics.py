"""Kafka topic names. Every topic carries its major version; dead letters go to `<topic>.dlq`."""

CASES = "referrals.cases.v1"
DOCUMENTS = "referrals.documents.v1"
LANGUAGE_CHECKS = "referrals.language-checks.v1"
ROUTING = "referrals.routing.v1"
NOTIFICATIONS = "referrals.notifications.v1"
CONTACTS = "referrals.contacts.v1"
"""Private: sealed contact details and front ends' webhook subscriptions (their secrets
sealed), read by notifications only."""

DLQ_SUFFIX = ".dlq"


def partner_inbox(center_code: str) -> str:
    """The only topic a cancer center may read: `referrals.partner-inbox.<center>.v1`."""
    if not center_code or not all(c.isalnum() or c == "-" for c in center_code):
        raise ValueError(f"a center code is letters, digits and '-': {center_code!r}")
    return f"referrals.partner-inbox.{center_code.lower()}.v1"


def dead_letter(topic: str) -> str:
    return topic + DLQ_SUFFIX


PLATFORM_TOPICS = (CASES, DOCUMENTS, LANGUAGE_CHECKS, ROUTING, NOTIFICATIONS, CONTACTS)

CONSUMERS: dict[str, tuple[str, ...]] = {
    "intake": (DOCUMENTS, LANGUAGE_CHECKS, ROUTING, NOTIFICATIONS),
    "records": (CASES, ROUTING),
    "translation": (DOCUMENTS, CASES),
    "partners": (CASES, DOCUMENTS),
    "notifications": (CONTACTS, CASES, DOCUMENTS, LANGUAGE_CHECKS, ROUTING),
}
"""The topics each service's consumer reads (its `SUBSCRIBED_TOPICS`; a unit test keeps them in
step), for the AsyncAPI document's `receive` operations."""
