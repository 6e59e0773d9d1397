"""Prometheus metrics: every metric of the platform, defined once, and how a process exposes them.

One registry per process (prometheus_client's default `REGISTRY`); the metric objects live at
module level, so building several apps, consumers or relays in one process (tests) never
registers a name twice. Every metric is named `referrals_...` and carries a `service` label (the
process's service: `set_service()`, called by `setup_observability`, or a component's own
`service=` argument), so the five services can share one Prometheus.

How a process exposes them:

* the HTTP API serves `GET /metrics` itself (`create_service_app`);
* other processes (consumer, relay, partners' scheduler, notifications' sender) start a small
  HTTP server in a daemon thread when `REFERRALS_METRICS__PORT` (or the service-specific
  `REFERRALS_<SERVICE>_METRICS__PORT`) is above 0: `start_metrics_server(settings.metrics)`.

The names, labels and meanings are listed in docs/runbook.md ("Metrics").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from referrals_common.settings import MetricsSettings

log = logging.getLogger(__name__)

# `*_created` series would double the number of series for nothing Prometheus needs.
disable_created_metrics()

_service = "referrals"


def set_service(name: str) -> None:
    """The `service` label of what this process measures from now on (one service a process)."""
    global _service
    _service = name


def service_name() -> str:
    return _service


# --- HTTP API ---------------------------------------------------------------------------------

HTTP_REQUEST_DURATION = Histogram(
    "referrals_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template (not raw path)",
    ["service", "method", "route", "status"],
)

# --- the opinions' conclusions (partners) --------------------------------------------------------

OPINION_OUTCOMES = Counter(
    "referrals_opinion_outcomes_total",
    "Opinions delivered, by center and by what they concluded of the diagnosis and of the "
    "treatment plan (`not_recorded` when the center gave no outcome): the concordance figures",
    ["service", "center_code", "diagnosis", "treatment"],
)

# --- the case journey (intake) -----------------------------------------------------------------
# Counted once a transition is committed (`UnitOfWork.after_commit`); never labelled by case.

CASE_TRANSITIONS = Counter(
    "referrals_case_transitions_total",
    "Case lifecycle transitions intake committed, by the state left and the state entered "
    "(`sum by (to_state)`: cases that entered each state; the journey funnel)",
    ["service", "from_state", "to_state"],
)
TIME_IN_STATE_BUCKETS = (
    1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400,
    7 * 86400, 14 * 86400, 30 * 86400,
)  # fmt: skip
"""From seconds (a test platform, a case that moves on at once) to a month (a center's
opinion)."""
CASE_TIME_IN_STATE = Histogram(
    "referrals_case_time_in_state_seconds",
    "How long a case stayed in a state, observed when it leaves it, by that state",
    ["service", "state"],
    buckets=TIME_IN_STATE_BUCKETS,
)
CASES_IN_STATE = Gauge(
    "referrals_cases",
    "Cases in each state now, counted in intake's database every few seconds (by the "
    "consumer process; with replicas, take `max`)",
    ["service", "state"],
)
CASE_OLDEST_IN_STATE = Gauge(
    "referrals_case_oldest_in_state_seconds",
    "How long the case that has been longest in each state has been there (0 when none is): "
    "what the stuck-case alert compares with the state's deadline",
    ["service", "state"],
)

# --- referrals per center (partners) ----------------------------------------------------------

CENTER_REFERRALS = Counter(
    "referrals_center_referrals_total",
    "What happened to referrals at each center: offered, accepted, declined, expired, "
    "info_requested (the center asked the patient for more), opinion_delivered",
    ["service", "center_code", "event"],
)
JOURNEY_BUCKETS = (
    1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400,
    7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400,
)  # fmt: skip
TIME_TO_FIRST_OFFER = Histogram(
    "referrals_time_to_first_offer_seconds",
    "From a case's arrival at partners (ready for referral) to its first offer to a center",
    ["service"],
    buckets=JOURNEY_BUCKETS,
)
CENTER_ANSWER_TIME = Histogram(
    "referrals_center_answer_seconds",
    "From an offer to the center's answer (accepted or declined), by center: the centers' SLA",
    ["service", "center_code", "answer"],
    buckets=JOURNEY_BUCKETS,
)
TIME_TO_OPINION = Histogram(
    "referrals_time_to_opinion_seconds",
    "From a case's arrival at partners to the delivered opinion, by the center that gave it",
    ["service", "center_code"],
    buckets=JOURNEY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "referrals_webhook_deliveries_total",
    "Webhook calls partners' scheduler made to centers, by outcome: delivered, retried (failed, "
    "tried again later), failed (gave up)",
    ["service", "outcome"],
)
WEBHOOK_LOG_PRUNED = Counter(
    "referrals_webhook_log_pruned_total",
    "Settled webhook delivery-log rows deleted after their retention, by log: "
    "center_deliveries (partners), front_end_deliveries (notifications), front_end_log (intake)",
    ["service", "log"],
)

# --- notifications -------------------------------------------------------------------------------

NOTIFICATION_DELIVERIES = Counter(
    "referrals_notification_deliveries_total",
    "Deliveries notifications' sender settled, by channel (email, sms, webhook) and outcome: "
    "sent, retried (failed, tried again later), failed (gave up)",
    ["service", "channel", "outcome"],
)

# --- consumers ---------------------------------------------------------------------------------

CONSUMER_LAG = Gauge(
    "referrals_consumer_lag",
    "Records not yet processed and committed: log end offset minus the consumer's committed "
    "position, per partition assigned to this process",
    ["service", "consumer", "topic", "partition"],
)
CONSUMER_EVENTS = Counter(
    "referrals_consumer_events_total",
    "Records a consumer settled, by outcome: ok, retried (applied after failed attempts), "
    "duplicate, skipped (type not handled), dead_lettered, failed (infrastructure fault: "
    "not acknowledged, consumed again)",
    ["service", "consumer", "topic", "outcome"],
)
CONSUMER_HANDLER_DURATION = Histogram(
    "referrals_consumer_handler_duration_seconds",
    "Time of one call of a consumer's handler (each attempt), by event type",
    ["service", "consumer", "event_type"],
)
CONSUMER_DEAD_LETTERS = Counter(
    "referrals_consumer_dead_letters_total",
    "Records a consumer wrote to `<topic>.dlq`, by original topic",
    ["service", "consumer", "topic"],
)

# --- outbox relay ------------------------------------------------------------------------------

OUTBOX_BACKLOG = Gauge(
    "referrals_outbox_backlog",
    "Outbox rows not yet published to Kafka (refreshed every few seconds by the relay)",
    ["service"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "referrals_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox row not yet published; 0 when there is none",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "referrals_outbox_published_total",
    "Outbox rows the relay published to Kafka and marked sent, by topic",
    ["service", "topic"],
)
OUTBOX_RELAY_ERRORS = Counter(
    "referrals_outbox_relay_errors_total",
    "Relay rounds that failed and will be retried, by cause: database or kafka",
    ["service", "cause"],
)


# --- exposition --------------------------------------------------------------------------------


def exposition(accept_header: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (text 0.0.4 by default), and its
    content type."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(REGISTRY), content_type


@dataclass
class MetricsServer:
    """The exposition HTTP server of a process (any path answers with the metrics)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve the registry over HTTP from a daemon thread; port 0 takes a free port (tests)."""
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot serve metrics on {host}:{port} ({exc.strerror}); give each process its own "
            "port (REFERRALS_METRICS__PORT, or REFERRALS_<SERVICE>_METRICS__PORT)",
        ) from exc
    served = MetricsServer(server, thread)
    log.info("metrics at %s", served.url)
    return served


def start_metrics_server(settings: MetricsSettings) -> MetricsServer | None:
    """Serve the metrics as `settings` say: nothing when the port is 0 (off)."""
    if settings.port <= 0:
        return None
    return serve_metrics(settings.host, settings.port)
