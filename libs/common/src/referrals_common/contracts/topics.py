"""Kafka topic names. Every topic carries its major version; dead letters go to `<topic>.dlq`."""

CASES = "referrals.cases.v1"
DOCUMENTS = "referrals.documents.v1"
LANGUAGE_CHECKS = "referrals.language-checks.v1"
ROUTING = "referrals.routing.v1"
NOTIFICATIONS = "referrals.notifications.v1"
CONTACTS = "referrals.contacts.v1"
"""Private: sealed contact details and front ends' webhook subscriptions (their secrets
sealed), read by notifications only."""
CREDENTIALS = "referrals.center-credentials.v1"
"""Private: the API keys partners issued to cancer centers and revoked (key id and digest, never
the key), read by records only. Compacted: the last word on every key is kept."""

DLQ_SUFFIX = ".dlq"


def partner_inbox(center_code: str) -> str:
    """The only topic a cancer center may read: `referrals.partner-inbox.<center>.v1`."""
    if not center_code or not all(c.isalnum() or c == "-" for c in center_code):
        raise ValueError(f"a center code is letters, digits and '-': {center_code!r}")
    return f"referrals.partner-inbox.{center_code.lower()}.v1"


def dead_letter(topic: str) -> str:
    return topic + DLQ_SUFFIX


PLATFORM_TOPICS = (
    CASES,
    DOCUMENTS,
    LANGUAGE_CHECKS,
    ROUTING,
    NOTIFICATIONS,
    CONTACTS,
    CREDENTIALS,
)

TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # Keyed by the credential (one stream key per key id): compaction keeps each key's last
    # event (issued, or revoked) for good, so a records replica that starts afresh, or reads
    # the topic from the beginning a year later, still learns every key that is valid.
    CREDENTIALS: {"cleanup.policy": "compact"},
}
"""Topic settings other than the broker's defaults, applied when a topic is created."""

CONSUMERS: dict[str, tuple[str, ...]] = {
    "intake": (DOCUMENTS, LANGUAGE_CHECKS, ROUTING, NOTIFICATIONS),
    "records": (CASES, ROUTING, CREDENTIALS),
    "translation": (DOCUMENTS, CASES),
    "partners": (CASES, DOCUMENTS),
    "notifications": (CONTACTS, CASES, DOCUMENTS, LANGUAGE_CHECKS, ROUTING),
}
"""The topics each service's consumer reads (its `SUBSCRIBED_TOPICS`; a unit test keeps them in
step), for the AsyncAPI document's `receive` operations."""
