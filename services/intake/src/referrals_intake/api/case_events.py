"""`GET /v1/cases/{case_id}/events`: the case's timeline as Server-Sent Events, live.

Authorized by the case's access token like every other read of the case. The stream sends the
timeline entries after `Last-Event-ID` (all of them without it), then each new one as intake
commits it (`referrals_intake.case_events`), a heartbeat comment every
`case_stream_heartbeat_seconds`, and ends when the token expires (or after
`case_stream_max_seconds`): the client reconnects with a
fresh token and the last id it saw, and loses nothing. The protocol is sse-starlette's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator
from sqlalchemy import select
from sqlmodel import col
from sse_starlette import EventSourceResponse, ServerSentEvent

from referrals_common.api.problems import ProblemError, problem_responses
from referrals_intake.api.deps import CaseAccessDep, RuntimeDep, case_token
from referrals_intake.case_events import TooManyStreams, case_events
from referrals_intake.models import TimelineEntry
from referrals_intake.rendering import AcceptLanguage, text_locale, timeline_entry
from referrals_intake.repository import CaseRepository
from referrals_intake.schemas import TimelineEntryPublic

router = APIRouter(prefix="/v1")

EVENT_NAME = "timeline_entry"
RECONNECT_MS = 3000
"""What a client waits before reconnecting after the stream ends (the SSE `retry` field)."""

LAST_EVENT_ID_MAX = 2**31 - 1
"""The largest id a timeline entry can have (its column is an `integer`)."""


def _an_entry_id(value: str | None) -> str | None:
    if value is not None and int(value) > LAST_EVENT_ID_MAX:
        raise ValueError(f"is not the id of an event of this stream (at most {LAST_EVENT_ID_MAX})")
    return value


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=10,
        pattern=r"^[0-9]{1,10}$",
        description="The id of the last event received: the stream resumes after it.",
    ),
    AfterValidator(_an_entry_id),
]

STREAM_EVENT_SCHEMA: dict[str, object] = {
    "title": "CaseStreamEvent",
    "description": "One Server-Sent Event of the stream, by its fields",
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "description": "The timeline entry's id (Last-Event-ID)"},
        "event": {"type": "string", "enum": ["timeline_entry"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "The timeline entry as one line of JSON",
        },
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting"},
    },
}
"""A stream's event as OpenAPI clients (Schemathesis among them) validate it: each event is
its fields, not the stream as one string."""

STREAM_DESCRIPTION = """\
`text/event-stream`: one event per timeline entry, oldest first, then live.

```
id: 42
event: timeline_entry
retry: 3000
data: {"id": 42, "at": "…", "from_status": "referred", "to_status": "accepted", …}
```

`data` is one line of JSON: `id`, `at`, `from_status`, `to_status`, `reason_code`, `reason`,
`next_step`, `next_step_code`, `language`: the texts in the case's language as the stream opens
(or the one `Accept-Language` asks for; `Content-Language` says which). A comment line
(`: ping …`) is sent every 15 seconds by default when nothing else is. The stream ends when
the case token expires; reconnect with a fresh token and `Last-Event-ID`. Browsers'
`EventSource` cannot send the `Authorization` header: read the stream with `fetch` (or from
your server)."""


class TimelineEvent(TimelineEntryPublic):
    """A timeline entry as the stream sends it: with its id, which is also the event's id."""

    id: int


@router.get(
    "/cases/{case_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": STREAM_DESCRIPTION,
            "content": {"text/event-stream": {"schema": STREAM_EVENT_SCHEMA}},
        },
        **problem_responses(401, 404, 422, 429, 503),
    },
    summary="The case's timeline as a live stream (Server-Sent Events)",
)
async def case_event_stream(
    access: CaseAccessDep,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(case_token)],
    last_event_id: LastEventId = None,
    accept_language: AcceptLanguage = None,
) -> EventSourceResponse:
    """Every status change of the case as an event: those after `Last-Event-ID`, then each new
    one as it is committed. At most a few streams per case and a bounded number per process
    (429 or 503 with Retry-After past them)."""
    assert credentials is not None  # `access` verified it
    expires_at = min(
        runtime.verifier.verify(credentials.credentials).expires_at,
        datetime.now(UTC) + timedelta(seconds=runtime.settings.case_stream_max_seconds),
    )
    async with runtime.db.unit_of_work() as uow:
        repo = CaseRepository(uow.session)
        case = await repo.get(access.case_id)
        if case is None:
            raise ProblemError(f"There is no case {access.case_id}.", status=404)
        locale = text_locale(case, accept_language, None)
        repo.audit(access.actor, "stream_events", access.case_id)
        await uow.commit()
    try:
        subscription = runtime.case_events.reserve(access.case_id)
    except TooManyStreams as full:
        raise _refused(full.scope) from None
    try:
        await runtime.case_events.listen()
    except Exception:
        await subscription.close()
        raise

    async def read_after(case_id: UUID, last_id: int) -> list[TimelineEntry]:
        async with runtime.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(TimelineEntry)
                .where(col(TimelineEntry.case_id) == case_id, col(TimelineEntry.id) > last_id)
                .order_by(col(TimelineEntry.id))
            )
            return list(rows.scalars())

    return EventSourceResponse(
        case_events(
            subscription,
            read_after,
            last_id=int(last_event_id or 0),
            expires_at=expires_at,
            render=partial(_event, locale=locale),
        ),
        ping=runtime.settings.case_stream_heartbeat_seconds,
        headers={
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "Content-Language": locale,
            "Vary": "Accept-Language",
        },
    )


def _event(entry: TimelineEntry, *, locale: str) -> ServerSentEvent:
    body = TimelineEvent.model_validate(timeline_entry(entry, locale))
    return ServerSentEvent(
        data=body.model_dump_json(), event=EVENT_NAME, id=str(entry.id), retry=RECONNECT_MS
    )


def _refused(scope: str) -> ProblemError:
    if scope == "case":
        return ProblemError(
            "This case already has as many open event streams as allowed. Close one, or "
            "reconnect once the old one ended.",
            status=429,
            title="Too many streams for this case",
            type_slug="too-many-streams",
            headers={"Retry-After": "5"},
            extensions={"limit": "case"},
        )
    return ProblemError(
        "This server serves as many event streams as it can. Try again shortly.",
        status=503,
        title="No room for another stream",
        type_slug="streams-unavailable",
        headers={"Retry-After": "10"},
    )
