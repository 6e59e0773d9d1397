"""The operators' routes, `/v1/ops/...`: with an operator's key (`X-Api-Key: ops_…`) they manage
the registry and centers' keys, follow routing and overdue cases, read a case's timeline across
the services and replay dead letters (`referrals_partners.operations`). Every call is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from referrals_common.api.problems import (
    Conflict,
    NotFound,
    Unprocessable,
    problem_responses,
)
from referrals_partners import operations
from referrals_partners.api.deps import OperatorDep, RuntimeDep, audit
from referrals_partners.bootstrap import Runtime
from referrals_partners.centers import center_row_values, issue_key
from referrals_partners.centers import revoke_key as revoke_key_of
from referrals_partners.models import (
    CenterRow,
    DeadLetterReplay,
    Referral,
    utcnow,
)
from referrals_partners.registry import Center

router = APIRouter(prefix="/v1")


CaseRoutingStatus = Literal[
    "awaiting_documents",
    "offered",
    "accepted",
    "info_requested",
    "completed",
    "unroutable",
    "withdrawn",
]


class ConcordanceView(BaseModel):
    """How often this platform's second opinions changed the diagnosis or the plan."""

    center_code: str | None = Field(description="The center; null for all centers together")
    opinions: int = Field(description="Opinions delivered")
    with_outcome: int = Field(description="Of those, with a recorded outcome")
    diagnosis_changed: int
    plan_changed: int
    diagnosis_changed_share: float | None = Field(
        description="diagnosis_changed / with_outcome (null without outcomes)"
    )
    plan_changed_share: float | None = Field(
        description="plan_changed / with_outcome (null without outcomes)"
    )


class CenterView(BaseModel):
    code: str
    active: bool
    profile: dict[str, Any]
    updated_at: datetime


class IssuedKey(BaseModel):
    key: str = Field(description="The API key, shown once; store it in a secret manager")


class RoutingView(BaseModel):
    case_id: UUID
    status: str
    attempts: int
    unroutable_reason: str | None
    last_decision: dict[str, Any] | None
    referrals: list[dict[str, Any]]


@router.get(
    "/ops/centers",
    response_model=list[CenterView],
    responses=problem_responses(401),
    summary="The registry",
)
async def list_centers(
    operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> list[CenterView]:
    """Every center, active or paused, by code, with the profile routing matches against."""
    async with runtime.db.unit_of_work() as uow:
        rows = await runtime.partners.repo(uow).centers_by_code()
        centers = [CenterView.model_validate(r, from_attributes=True) for r in rows]
    await audit(request, operator)
    return centers


@router.post(
    "/ops/centers",
    response_model=CenterView,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 422),
    summary="Add a center",
)
async def add_center(
    center: Center, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> CenterView:
    """Adds the center and creates its inbox topic."""
    from referrals_common.contracts import topics
    from referrals_common.messaging.kafka import ensure_topics

    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        if await repo.center_row(center.code) is not None:
            raise Conflict(f"There is already a center {center.code}.")
        row = CenterRow(**center_row_values(center))
        repo.add(row)
        await uow.commit()
    kafka = runtime.settings.kafka
    await ensure_topics(
        kafka,
        [topics.partner_inbox(center.code)],
        partitions=1,
        replication_factor=kafka.topic_replication_factor,
    )
    await audit(request, operator)
    return CenterView.model_validate(row, from_attributes=True)


@router.put(
    "/ops/centers/{code}",
    response_model=CenterView,
    responses=problem_responses(401, 404, 422),
    summary="Replace a center's profile",
)
async def update_center(
    code: str, center: Center, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> CenterView:
    """The whole profile is replaced (the body's `code` must be the path's: codes never
    change); the next routing decision uses it."""
    if center.code != code:
        raise Unprocessable("The body's code must be the center's code; codes do not change.")
    async with runtime.db.unit_of_work() as uow:
        row = await runtime.partners.repo(uow).center_row(code, lock=True)
        if row is None:
            raise NotFound(f"There is no center {code}.")
        values = center_row_values(center)
        row.profile, row.active, row.updated_at = values["profile"], values["active"], utcnow()
        await uow.commit()
    await audit(request, operator)
    return CenterView.model_validate(row, from_attributes=True)


async def _set_active(runtime: Runtime, code: str, active: bool) -> CenterView:
    async with runtime.db.unit_of_work() as uow:
        row = await runtime.partners.repo(uow).center_row(code, lock=True)
        if row is None:
            raise NotFound(f"There is no center {code}.")
        row.active = active
        row.profile = {**row.profile, "status": "active" if active else "paused"}
        row.updated_at = utcnow()
        await uow.commit()
    return CenterView.model_validate(row, from_attributes=True)


@router.post(
    "/ops/centers/{code}/pause",
    response_model=CenterView,
    responses=problem_responses(401, 404),
    summary="Pause a center (no new offers)",
)
async def pause_center(
    code: str, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> CenterView:
    """Routing offers it no new case; the referrals it already has go on."""
    view = await _set_active(runtime, code, False)
    await audit(request, operator)
    return view


@router.post(
    "/ops/centers/{code}/resume",
    response_model=CenterView,
    responses=problem_responses(401, 404),
    summary="Resume a paused center",
)
async def resume_center(
    code: str, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> CenterView:
    """Routing considers it again for new cases."""
    view = await _set_active(runtime, code, True)
    await audit(request, operator)
    return view


@router.post(
    "/ops/centers/{code}/keys",
    response_model=IssuedKey,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 404),
    summary="Issue a new API key for a center (rotation: issue, hand over, then revoke the old)",
)
async def issue_center_key(
    code: str, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> IssuedKey:
    """The key is shown once, in this answer; the center's older keys keep working until they
    are revoked."""
    async with runtime.db.unit_of_work() as uow:
        if await runtime.partners.repo(uow).center_row(code) is None:
            raise NotFound(f"There is no center {code}.")
        key = await issue_key(uow, runtime.pepper, role="center", name=code, center_code=code)
        await uow.commit()
    await audit(request, operator)
    return IssuedKey(key=key)


@router.delete(
    "/ops/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404),
    summary="Revoke an API key (at once at records, within a minute here)",
)
async def revoke_key(
    key_id: str, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> Response:
    """The key (named by its id) is refused from then on, within a minute in every partners
    process; a center's key also at records, within seconds (records learns the revocation
    from partners' event). Again changes nothing."""
    async with runtime.db.unit_of_work() as uow:
        if await revoke_key_of(uow, key_id) is None:
            raise NotFound(f"There is no key {key_id}.")
        await uow.commit()
    await audit(request, operator)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _referral_record(r: Referral) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "center_code": r.center_code,
        "attempt": r.attempt,
        "status": r.status,
        "offered_at": r.offered_at.isoformat(),
        "answer_due_at": r.answer_due_at.isoformat(),
        "answered_at": r.answered_at.isoformat() if r.answered_at else None,
        "decline_reason": r.decline_reason,
        "decision": r.decision,
    }


@router.get(
    "/ops/cases",
    response_model=list[RoutingView],
    responses=problem_responses(401),
    summary="Cases by routing status (e.g. `unroutable`, which need ops)",
)
async def list_cases(
    operator: OperatorDep,
    runtime: RuntimeDep,
    request: Request,
    status_: Annotated[CaseRoutingStatus, Query(alias="status")] = "unroutable",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RoutingView]:
    """The most recently changed first, at most `limit`; by default the `unroutable` ones, for
    which no center fits and an operator must act."""
    await audit(request, operator)
    async with runtime.db.unit_of_work() as uow:
        rows = await runtime.partners.repo(uow).cases_by_status(status_, limit)
        return [
            RoutingView(
                case_id=c.case_id,
                status=c.status,
                attempts=c.attempts,
                unroutable_reason=c.unroutable_reason,
                last_decision=c.last_decision,
                referrals=[],
            )
            for c in rows
        ]


@router.get(
    "/ops/concordance",
    response_model=list[ConcordanceView],
    responses=problem_responses(401),
    summary="How often opinions changed the diagnosis or the plan, per center and overall",
)
async def concordance(
    operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> list[ConcordanceView]:
    """From every delivered opinion with a recorded outcome (seed 003; published figures: about
    15 % changed diagnoses, 17 % changed plans). The last row (`center_code` null) is overall."""
    await audit(request, operator)
    async with runtime.db.unit_of_work() as uow:
        rows = await runtime.partners.concordance(uow)
    return [
        ConcordanceView(
            center_code=r.center_code,
            opinions=r.opinions,
            with_outcome=r.with_outcome,
            diagnosis_changed=r.diagnosis_changed,
            plan_changed=r.plan_changed,
            diagnosis_changed_share=r.diagnosis_changed_share,
            plan_changed_share=r.plan_changed_share,
        )
        for r in rows
    ]


@router.get(
    "/ops/cases/{case_id}/routing",
    response_model=RoutingView,
    responses=problem_responses(401, 404),
    summary="Every routing decision of a case, with every center considered",
)
async def case_routing(
    case_id: UUID, operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> RoutingView:
    """Each referral in attempt order, with the decision that chose its center (every center
    considered, and why it was or was not chosen)."""
    async with runtime.db.unit_of_work() as uow:
        repo = runtime.partners.repo(uow)
        case = await repo.case(case_id)
        if case is None:
            raise NotFound(f"Partners has not seen case {case_id}.")
        referrals = [_referral_record(r) for r in await repo.referrals_of_case(case_id)]
    await audit(request, operator, case_id=case_id)
    return RoutingView(
        case_id=case.case_id,
        status=case.status,
        attempts=case.attempts,
        unroutable_reason=case.unroutable_reason,
        last_decision=case.last_decision,
        referrals=referrals,
    )


# ------------------------------------------------------------------- ops: timeline, DLQ
class TimelineEntryView(BaseModel):
    """One thing that happened to the case."""

    at: datetime
    source: Literal["trace", "partners", "dead_letter"] = Field(
        description="`trace`: a span from the trace viewer; `partners`: partners' own rows "
        "(offers and answers, information requests, webhook deliveries); `dead_letter`: a record "
        "about the case that a consumer could not apply"
    )
    kind: str = Field(
        description="A span's kind (`server`, `client`, `producer`, `consumer`, `internal`), or "
        "`state_change`, `request`, `delivery`, `dead_letter`"
    )
    service: str
    name: str = Field(description="The span's name, or what the row says happened")
    event_type: str | None = Field(description="The CloudEvents type published or consumed")
    status: str | None = Field(description="An HTTP status, a state, a delivery's or error's")
    error: bool
    detail: str | None
    trace_id: str | None
    trace_url: str | None = Field(description="The trace in the trace viewer's UI")


class CaseTimelineView(BaseModel):
    """A case's journey across the services, in time order."""

    case_id: UUID
    routing_status: str | None = Field(description="Partners' routing status; null: not routed")
    trace_viewer: Literal["ok", "not_configured", "unavailable"] = Field(
        description="Whether the trace viewer answered: without it, the timeline holds partners' "
        "rows and the dead letters only"
    )
    dead_letters: Literal["ok", "unavailable"]
    root_trace_url: str | None = Field(
        description="The case's root trace (its id is the case id), which every later trace links"
    )
    spans: int = Field(description="Spans of the case's traces (inner calls included)")
    traces: int
    services: list[str] = Field(description="The services whose spans are in the timeline")
    entries: list[TimelineEntryView]


class DeadLetterTopicView(BaseModel):
    topic: str = Field(description="The platform topic")
    dead_letter_topic: str
    count: int = Field(description="Records in its dead-letter topic now")


class ReplayView(BaseModel):
    replayed_at: datetime
    operator: str = Field(description="`ops:<key id>`")


class DeadLetterView(BaseModel):
    """One record a consumer could not apply (its payload is not shown)."""

    topic: str = Field(description="The original topic a replay sends it back to")
    partition: int = Field(description="Its partition in the dead-letter topic")
    offset: int = Field(description="Its offset in the dead-letter topic")
    event_id: str
    event_type: str
    case_id: str = Field(description="The record's key")
    consumer: str
    error_type: str
    error: str = Field(description="Why it failed (the first 500 characters)")
    failed_at: str
    trace_url: str | None
    replays: list[ReplayView] = Field(description="Every replay of this record, oldest first")


DLQ_LIMIT = 100


def _dead_letter_view(
    letter: Any, runtime: Runtime, replays: list[DeadLetterReplay]
) -> DeadLetterView:
    entry = operations.dead_letter_entry(letter, runtime.trace_viewer)
    return DeadLetterView(
        topic=letter.header("dlq.original_topic") or letter.topic.removesuffix(".dlq"),
        partition=letter.partition,
        offset=letter.offset,
        event_id=letter.event_id,
        event_type=letter.event_type,
        case_id=letter.case_id,
        consumer=letter.header("dlq.consumer"),
        error_type=letter.header("dlq.error_type"),
        error=letter.header("dlq.error")[: operations.MAX_ERROR_SHOWN],
        failed_at=letter.header("dlq.failed_at"),
        trace_url=entry.trace_url,
        replays=[ReplayView(replayed_at=r.replayed_at, operator=r.operator) for r in replays],
    )


def _platform_topic(topic: str) -> str:
    try:
        return operations.platform_topic(topic)
    except operations.UnknownTopic:
        raise NotFound(f"{topic} is not a platform topic.") from None


@router.get(
    "/ops/cases/{case_id}/timeline",
    response_model=CaseTimelineView,
    responses=problem_responses(401, 404),
    summary="A case's journey across the services: events, state changes, deliveries, errors",
)
async def case_timeline(
    case_id: UUID,
    operator: OperatorDep,
    runtime: RuntimeDep,
    request: Request,
    everything: Annotated[
        bool, Query(description="Also the database and object-storage calls inside each step")
    ] = False,
    lookback_days: Annotated[
        float, Query(gt=0, le=90, description="How far back the trace viewer looks")
    ] = 7.0,
) -> CaseTimelineView:
    """Every span the trace viewer holds about the case (by its `referrals.case_id` tag), each
    offer and answer, information request and webhook delivery partners recorded, and the
    case's dead letters, in time order, with links into the trace viewer. A trace viewer that is
    not configured or does not answer leaves the rest (`trace_viewer` says which); 404 when no
    source knows the case."""
    async with runtime.db.unit_of_work() as uow:
        timeline = await operations.build_case_timeline(
            uow,
            runtime.settings.kafka,
            runtime.trace_viewer,
            case_id,
            everything=everything,
            lookback_days=lookback_days,
        )
    await audit(request, operator, case_id=case_id)
    if not timeline.entries:
        viewer = {"ok": "", "not_configured": " (no trace viewer is configured)"}.get(
            timeline.trace_viewer, " (the trace viewer did not answer)"
        )
        raise NotFound(f"Nothing is known of case {case_id}{viewer}.")
    return CaseTimelineView.model_validate(timeline, from_attributes=True)


@router.get(
    "/ops/dead-letters",
    response_model=list[DeadLetterTopicView],
    responses=problem_responses(401),
    summary="How many dead letters each platform topic has",
)
async def dead_letter_topics(
    operator: OperatorDep, runtime: RuntimeDep, request: Request
) -> list[DeadLetterTopicView]:
    """Every platform topic with the number of records in its dead-letter topic (`<topic>.dlq`)
    now; 0 when it has none."""
    counts = await operations.topic_counts(runtime.settings.kafka)
    await audit(request, operator)
    return [
        DeadLetterTopicView(topic=t, dead_letter_topic=f"{t}.dlq", count=n)
        for t, n in counts.items()
    ]


@router.get(
    "/ops/dead-letters/{topic}",
    response_model=list[DeadLetterView],
    responses=problem_responses(401, 404),
    summary="The dead letters of one platform topic",
)
async def list_dead_letters(
    topic: str,
    operator: OperatorDep,
    runtime: RuntimeDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = DLQ_LIMIT,
) -> list[DeadLetterView]:
    """The newest `limit` records of the topic's dead-letter topic, newest first: which event,
    which case, which consumer failed and why, and every replay of it. 404 for a topic that is
    not the platform's."""
    letters = await operations.dead_letters(runtime.settings.kafka, _platform_topic(topic))
    async with runtime.db.unit_of_work() as uow:
        replays = await operations.replays_of(uow, topic)
    await audit(request, operator)
    return [
        _dead_letter_view(d, runtime, replays.get((d.partition, d.offset), []))
        for d in operations.letters_newest(letters, limit)
    ]


class OverdueView(BaseModel):
    """A case waiting past one of partners' deadlines."""

    case_id: UUID
    what: Literal["answer", "opinion", "information", "choice"] = Field(
        description="`answer`: an offer past its answer deadline, not yet expired (is the "
        "scheduler running?); `opinion`: an accepted referral past the opinion's expected date; "
        "`information`: a request for information past its due time, not yet expired; `choice`: "
        "a patient's choice of center past its deadline, not yet offered"
    )
    due_at: datetime
    overdue_seconds: int
    center_code: str | None
    referral_id: UUID | None


@router.get(
    "/ops/overdue",
    response_model=list[OverdueView],
    responses=problem_responses(401),
    summary="Cases stuck past one of partners' deadlines",
)
async def overdue(
    operator: OperatorDep,
    runtime: RuntimeDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OverdueView]:
    """Offers, opinions, requests for information and patients' choices past their deadline
    now, the longest overdue first, at most `limit`."""
    now = utcnow()
    async with runtime.db.unit_of_work() as uow:
        found = await operations.overdue_cases(uow, now, limit=limit)
    await audit(request, operator)
    return [
        OverdueView(
            case_id=o.case_id,
            what=o.what,
            due_at=o.due_at,
            overdue_seconds=int((now - o.due_at).total_seconds()),
            center_code=o.center_code,
            referral_id=o.referral_id,
        )
        for o in found
    ]


RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        min_length=8,
        description="A unique key per intended replay (e.g. a UUID), required: the same request "
        "sent again with it publishes nothing and answers the same (200, "
        "`Idempotent-Replayed: true`); the key with a different request is a 422",
    ),
]


@router.post(
    "/ops/dead-letters/{topic}/{partition}/{offset}/replay",
    response_model=DeadLetterView,
    responses=problem_responses(401, 404, 422),
    summary="Send one dead letter back to its topic",
)
async def replay_dead_letter(
    topic: str,
    partition: Annotated[int, Path(ge=0)],
    offset: Annotated[int, Path(ge=0)],
    operator: OperatorDep,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: RequiredIdempotencyKey,
) -> DeadLetterView:
    """Republishes the record at `partition`:`offset` of the topic's dead-letter topic to the
    topic, with its original key and headers (its trace context among them); consumers are
    idempotent, so an event applied meanwhile changes nothing. The record stays in the
    dead-letter topic, now with this replay listed. Audited with the operator's key."""
    _platform_topic(topic)
    try:
        async with runtime.db.unit_of_work() as uow:
            done = await operations.replay_dead_letter(
                uow,
                runtime.settings.kafka,
                operator=operator,
                key=idempotency_key,
                topic=topic,
                partition=partition,
                offset=offset,
            )
            await uow.commit()
        async with runtime.db.unit_of_work() as uow:
            replays = await operations.replays_of(uow, topic)
    except operations.NoSuchDeadLetter:
        await audit(request, operator, outcome="not_found")
        raise NotFound(f"{topic} has no dead letter at {partition}:{offset}.") from None
    case_id = _uuid_or_none(done.letter.case_id)
    await audit(
        request,
        operator,
        case_id=case_id,
        outcome="replayed_again" if done.again else "replayed",
    )
    if done.again:
        response.headers["Idempotent-Replayed"] = "true"
    return _dead_letter_view(done.letter, runtime, replays.get((partition, offset), []))


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None
