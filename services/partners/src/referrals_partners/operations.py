"""What operators see of the platform's running, beyond the registry: a case's timeline across
services, and the dead letters of the platform's topics with their replay.

**A case's timeline** joins three sources, each entry saying which:

- the trace viewer (`trace`): every span tagged with the case id, the way `devstack timeline`
  reads them (`referrals_common.case_timeline`): requests, events published and consumed,
  scheduled steps, e-mails sent, with their status and a link to their trace;
- partners' own rows (`partners`): each offer and its answer (a state change of the referral),
  each information request, each webhook delivery with its attempts and coarse error;
- the dead-letter topics (`dead_letter`): records about the case (keyed by its id) that a
  consumer could not apply.

The trace viewer is optional: not configured, or not answering within its timeout, the
timeline says so (`trace_viewer`) and holds the other two sources, so an operator still sees
what partners knows while the viewer is away.

**Dead letters** are read from Kafka as `referrals-dlq` reads them (`messaging.dlq`); a replay
republishes one record to its original topic with its original key and headers (consumers are
idempotent, so an event applied meanwhile changes nothing). The operator's `Idempotency-Key`
is claimed in a row of `dead_letter_replays` in the replay's transaction: the same request again
publishes nothing and answers the same; the row is also who replayed what, and when.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from opentelemetry import propagate
from opentelemetry import trace as otel_trace

from referrals_common import case_timeline
from referrals_common.api.idempotency import claim_or_replay, request_fingerprint
from referrals_common.contracts import topics
from referrals_common.db import UnitOfWork
from referrals_common.messaging.dlq import (
    DeadLetter,
    dead_letter_counts,
    read_dead_letters,
    replay,
)
from referrals_common.messaging.kafka import Kafka
from referrals_partners.config import PartnersSettings
from referrals_partners.models import (
    DeadLetterReplay,
    InformationRequest,
    Referral,
    WebhookDelivery,
)
from referrals_partners.repository import PartnersRepository

log = logging.getLogger(__name__)

MAX_ERROR_SHOWN = 500
"""Characters of a dead letter's error an operator is shown (the rest is in Kafka)."""


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    source: str
    """`trace`, `partners` or `dead_letter`."""
    kind: str
    """A span's kind (`server`, `client`, `producer`, `consumer`, `internal`), or `state_change`,
    `request`, `delivery`, `dead_letter` for partners' rows and dead letters."""
    service: str
    name: str
    event_type: str | None = None
    status: str | None = None
    error: bool = False
    detail: str | None = None
    trace_id: str | None = None
    trace_url: str | None = None


@dataclass
class CaseTimeline:
    case_id: UUID
    routing_status: str | None
    trace_viewer: str
    """`ok`, `not_configured` or `unavailable`."""
    dead_letters: str
    """`ok` or `unavailable` (Kafka did not answer)."""
    root_trace_url: str | None
    spans: int = 0
    traces: int = 0
    services: list[str] = field(default_factory=list)
    entries: list[TimelineEntry] = field(default_factory=list)


@dataclass(frozen=True)
class TraceViewer:
    """Where the trace viewer's API is (`url`) and where a browser opens it (`public_url`)."""

    url: str
    public_url: str
    timeout: float

    @classmethod
    def from_settings(cls, settings: PartnersSettings) -> TraceViewer | None:
        if not settings.trace_viewer_url:
            return None
        url = settings.trace_viewer_url.rstrip("/")
        return cls(
            url=url,
            public_url=(settings.trace_viewer_public_url or url).rstrip("/"),
            timeout=settings.trace_viewer_timeout_seconds,
        )

    def link(self, trace_id: str) -> str:
        return case_timeline.trace_link(self.public_url, trace_id)


async def _spans(
    viewer: TraceViewer, case_id: UUID, *, lookback_days: float
) -> list[case_timeline.Trace]:
    # The viewer is configuration (an internal address of the operators' choosing), never a
    # caller's: the public-address rule of `referrals_common.outbound` does not apply.
    async with httpx.AsyncClient(timeout=viewer.timeout) as client:
        return await case_timeline.fetch_case_traces(
            client, viewer.url, case_id, lookback_days=lookback_days
        )


def _trace_id_of(headers: dict[str, str]) -> str | None:
    """The trace id in a record's `traceparent` header, if it has one."""
    span = otel_trace.get_current_span(propagate.extract(headers))
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def dead_letter_entry(letter: DeadLetter, viewer: TraceViewer | None) -> TimelineEntry:
    headers = {k: v.decode(errors="replace") for k, v in letter.headers}
    trace_id = _trace_id_of(headers)
    try:
        failed_at = datetime.fromisoformat(letter.header("dlq.failed_at"))
    except ValueError:  # not written by DeadLetterPublisher: shown first, never hidden
        failed_at = datetime.fromtimestamp(0, UTC)
    return TimelineEntry(
        at=failed_at,
        source="dead_letter",
        kind="dead_letter",
        service=letter.header("dlq.consumer") or "?",
        name=f"dead letter on {letter.topic}",
        event_type=letter.event_type or None,
        status=letter.header("dlq.error_type") or None,
        error=True,
        detail=letter.header("dlq.error")[:MAX_ERROR_SHOWN] or None,
        trace_id=trace_id,
        trace_url=viewer.link(trace_id) if viewer and trace_id else None,
    )


def _referral_entries(referral: Referral) -> list[TimelineEntry]:
    found = [
        TimelineEntry(
            at=referral.offered_at,
            source="partners",
            kind="state_change",
            service="partners",
            name=f"offered to {referral.center_code} (attempt {referral.attempt})",
            status="offered",
            detail=f"answer due {referral.answer_due_at.isoformat()}",
        )
    ]
    if referral.answered_at is not None and referral.status != "offered":
        found.append(
            TimelineEntry(
                at=referral.answered_at,
                source="partners",
                kind="state_change",
                service="partners",
                name=f"{referral.status} by {referral.center_code}"
                if referral.status in {"accepted", "declined", "info_requested"}
                else f"{referral.status} at {referral.center_code}",
                status=referral.status,
                error=referral.status == "expired",
                detail=referral.decline_reason,
            )
        )
    return found


def _request_entries(request: InformationRequest) -> list[TimelineEntry]:
    found = [
        TimelineEntry(
            at=request.requested_at,
            source="partners",
            kind="request",
            service="partners",
            name=f"information requested by {request.center_code}",
            status="open",
            detail=f"due {request.due_at.isoformat()}",
        )
    ]
    if request.answered_at is not None:
        found.append(
            TimelineEntry(
                at=request.answered_at,
                source="partners",
                kind="request",
                service="partners",
                name="information answered by the patient",
                status=request.status,
            )
        )
    return found


def _delivery_entry(delivery: WebhookDelivery) -> TimelineEntry:
    return TimelineEntry(
        at=delivery.delivered_at or delivery.created_at,
        source="partners",
        kind="delivery",
        service="partners",
        name=f"webhook to {delivery.center_code}: {delivery.payload.get('type', '?')}",
        event_type=str(delivery.payload.get("type") or "") or None,
        status=delivery.status,
        error=delivery.status == "failed",
        detail=f"{delivery.attempts} attempt(s)"
        + (f", last: {delivery.last_error}" if delivery.last_error else ""),
    )


async def partners_entries(uow: UnitOfWork, case_id: UUID) -> tuple[str | None, list[Any]]:
    """(the case's routing status, the entries of partners' rows about it)."""
    repo = PartnersRepository(uow.session)
    case = await repo.case(case_id)
    referrals = await repo.referrals_of_case(case_id)
    found: list[TimelineEntry] = []
    for referral in referrals:
        found += _referral_entries(referral)
    for request in await repo.information_requests_of_case(case_id):
        found += _request_entries(request)
    found += [_delivery_entry(d) for d in await repo.deliveries_of([r.id for r in referrals])]
    return (case.status if case is not None else None), found


async def case_dead_letters(kafka: Kafka, case_id: UUID) -> list[DeadLetter]:
    """The dead letters of every platform topic keyed by the case."""
    return await read_dead_letters(kafka, topics.PLATFORM_TOPICS, key=str(case_id), wait_ms=1000)


async def build_case_timeline(
    uow: UnitOfWork,
    kafka: Kafka,
    viewer: TraceViewer | None,
    case_id: UUID,
    *,
    everything: bool = False,
    lookback_days: float = case_timeline.DEFAULT_LOOKBACK_DAYS,
) -> CaseTimeline:
    """The case's journey from the trace viewer, partners' rows and the dead letters, in time
    order."""
    routing_status, own = await partners_entries(uow, case_id)
    timeline = CaseTimeline(
        case_id=case_id,
        routing_status=routing_status,
        trace_viewer="not_configured" if viewer is None else "ok",
        dead_letters="ok",
        root_trace_url=viewer.link(case_timeline.root_trace_id(case_id)) if viewer else None,
    )
    spans: list[TimelineEntry] = []
    if viewer is not None:
        try:
            traces = await _spans(viewer, case_id, lookback_days=lookback_days)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("the trace viewer did not answer for case %s: %r", case_id, exc)
            timeline.trace_viewer = "unavailable"
            traces = []
        timeline.traces = len(traces)
        timeline.spans = sum(len(t) for t in traces)
        for entry in case_timeline.entries(traces, everything=everything):
            spans.append(
                TimelineEntry(
                    at=entry.at,
                    source="trace",
                    kind=entry.kind.lower(),
                    service=entry.service,
                    name=entry.name,
                    event_type=entry.event_type or None,
                    status=entry.status or None,
                    error=entry.failed,
                    trace_id=entry.trace_id,
                    trace_url=viewer.link(entry.trace_id),
                )
            )
        timeline.services = sorted({e.service for e in spans})
    try:
        letters = [dead_letter_entry(d, viewer) for d in await case_dead_letters(kafka, case_id)]
    except Exception as exc:  # Kafka away: the rest of the timeline still helps
        log.warning("the dead letters of case %s could not be read: %r", case_id, exc)
        timeline.dead_letters = "unavailable"
        letters = []
    timeline.entries = sorted([*spans, *own, *letters], key=lambda e: e.at)
    return timeline


# ------------------------------------------------------------------------------ overdue


@dataclass(frozen=True)
class Overdue:
    """A case waiting past one of partners' deadlines."""

    case_id: UUID
    what: str
    """`answer` (an offer past its answer deadline, not yet expired: is the scheduler running?),
    `opinion` (an accepted referral past the opinion's expected date), `information` (a
    request for information past its due time, not yet expired), `choice` (a patient's choice of
    center past its deadline, not yet offered)."""
    due_at: datetime
    center_code: str | None = None
    referral_id: UUID | None = None


async def overdue_cases(uow: UnitOfWork, now: datetime, *, limit: int) -> list[Overdue]:
    """Everything past one of partners' deadlines now, the longest overdue first."""
    repo = PartnersRepository(uow.session)
    found: list[Overdue] = []
    found += [
        Overdue(r.case_id, "answer", r.answer_due_at, r.center_code, r.id)
        for r in await repo.offers_past_due(now)
    ]
    found += [
        Overdue(r.case_id, "opinion", r.expected_opinion_at, r.center_code, r.id)
        for r in await repo.opinions_past_due(now)
        if r.expected_opinion_at is not None  # always: the query compared it
    ]
    found += [
        Overdue(r.case_id, "information", r.due_at, r.center_code, r.referral_id)
        for r in await repo.requests_past_due(now)
    ]
    found += [
        Overdue(c.case_id, "choice", c.choose_by)
        for c in await repo.choices_past_due(now)
        if c.choose_by is not None  # always: the query compared it
    ]
    return sorted(found, key=lambda o: o.due_at)[:limit]


# ---------------------------------------------------------------------------- dead letters


class UnknownTopic(LookupError):
    """Not one of the platform's topics (dead letters are read only from those)."""


class NoSuchDeadLetter(LookupError):
    """No record at that partition and offset of the dead-letter topic."""


def platform_topic(topic: str) -> str:
    """`topic` if it is a platform topic; UnknownTopic otherwise."""
    if topic not in topics.PLATFORM_TOPICS:
        raise UnknownTopic(topic)
    return topic


async def topic_counts(kafka: Kafka) -> dict[str, int]:
    return await dead_letter_counts(kafka, topics.PLATFORM_TOPICS)


async def dead_letters(kafka: Kafka, topic: str) -> list[DeadLetter]:
    return await read_dead_letters(kafka, platform_topic(topic))


async def replays_of(uow: UnitOfWork, topic: str) -> dict[tuple[int, int], list[DeadLetterReplay]]:
    """Every replay of the dead letters of `topic`, by (partition, offset)."""
    found: dict[tuple[int, int], list[DeadLetterReplay]] = {}
    for row in await PartnersRepository(uow.session).replays(topic):
        found.setdefault((row.dlq_partition, row.dlq_offset), []).append(row)
    return found


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    replay: DeadLetterReplay
    again: bool
    """The same request was made before with this key: nothing was published now."""


async def replay_dead_letter(
    uow: UnitOfWork,
    kafka: Kafka,
    *,
    operator: str,
    key: str,
    topic: str,
    partition: int,
    offset: int,
) -> Replayed:
    """Republish one dead letter of `topic` to `topic`, once per `key` (see the module doc);
    the caller commits. NoSuchDeadLetter, UnknownTopic, or the key's 422 when it was used for
    another request."""
    letters = await read_dead_letters(kafka, platform_topic(topic))
    letter = next((d for d in letters if d.partition == partition and d.offset == offset), None)
    if letter is None:
        raise NoSuchDeadLetter(f"{topic} {partition}:{offset}")
    record = DeadLetterReplay(
        operator=operator,
        key=key,
        request_hash=request_fingerprint("replay_dead_letter", topic, partition, offset),
        topic=topic,
        dlq_partition=partition,
        dlq_offset=offset,
        event_id=letter.event_id[:64],
        case_id=letter.case_id[:64],
    )
    first = await claim_or_replay(uow.session, record)
    if first is not None:
        return Replayed(letter, first, again=True)
    await replay(kafka, [letter])
    return Replayed(letter, record, again=False)


def letters_newest(letters: Sequence[DeadLetter], limit: int) -> list[DeadLetter]:
    """The `limit` newest dead letters (by the time they failed), newest first."""
    return sorted(letters, key=lambda d: d.header("dlq.failed_at"), reverse=True)[:limit]
