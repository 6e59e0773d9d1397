"""Webhooks, once for the whole platform: partners' offers to centers and notifications' case
updates to front ends go through the same component.

- `signing`: the signature a receiver verifies (HMAC-SHA256 over `"{timestamp}.{body}"`);
- `policy`: the one retry policy (rounds of quick attempts, which failures are retryable,
  `Retry-After` honoured) over tenacity;
- `delivery`: one signed POST through the outbound guard, recorded as an `Attempt` (the delivery
  log's record), and a round of them;
- `retention`: settled delivery-log rows deleted after a configurable age, in bounded batches.
"""

from referrals_common.contracts.notifications import WebhookOutcome
from referrals_common.webhooks.delivery import (
    USER_AGENT,
    Attempt,
    LoggedAttempt,
    WebhookPoster,
    log_entries,
)
from referrals_common.webhooks.policy import (
    RETRYABLE_ERRORS,
    RETRYABLE_STATUSES,
    RetryPolicy,
    Settlement,
    WebhookRetrySettings,
    is_retryable,
    is_retryable_status,
    retry_after_seconds,
    retry_round,
)
from referrals_common.webhooks.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignature,
    new_secret,
    signature,
    signed_headers,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_ID_HEADER",
    "RETRYABLE_ERRORS",
    "RETRYABLE_STATUSES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "USER_AGENT",
    "Attempt",
    "InvalidSignature",
    "LoggedAttempt",
    "RetryPolicy",
    "Settlement",
    "WebhookOutcome",
    "WebhookPoster",
    "WebhookRetrySettings",
    "is_retryable",
    "is_retryable_status",
    "log_entries",
    "new_secret",
    "retry_after_seconds",
    "retry_round",
    "signature",
    "signed_headers",
    "verify",
]
