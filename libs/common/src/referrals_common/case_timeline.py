"""A case's journey as the trace viewer holds it: every span that carries the case id
(`referrals.case_id`), across services and traces, in time order. One implementation for the
two readers: `devstack timeline <case id>` (a terminal table) and partners' ops API
(`GET /v1/ops/cases/{case_id}/timeline`, with what partners itself knows of the case).

The viewer is one that serves Zipkin's query API v2: the Zipkin that the local platform,
Compose and Kubernetes all run (one query API everywhere, the one this reader is tested
against). One query, `annotationQuery=referrals.case_id=<id>`, returns every trace holding a
span about the case. What ops read is the spans that say what happened (requests, publishes,
consumers, expiries, sends), without the database and object-storage calls inside them unless
asked (`everything`).

The viewer's address is configuration (an operator's internal address), never a caller's: see
docs/security.md on why `referrals_common.outbound`'s public-address rule does not apply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

from referrals_common.telemetry import CASE_ID

CASE_TAG = CASE_ID
"""The span tag the viewer is queried by."""
DEFAULT_LOOKBACK_DAYS = 7
DEFAULT_LIMIT = 1000
"""Traces one query returns at most (a journey is a few dozen)."""

Trace = list[dict[str, Any]]
"""One trace: its Zipkin v2 spans."""


@dataclass(frozen=True)
class Entry:
    """One span of the journey, as the timeline shows it."""

    at_us: int
    duration_us: int
    service: str
    name: str
    kind: str
    event_type: str
    status: str
    trace_id: str
    span_id: str

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_us / 1e6, UTC)

    @property
    def failed(self) -> bool:
        """The span recorded an error (an exception, an error status, a 5xx answer)."""
        return self.status.startswith("error") or self.status.startswith("5")


def _query(case_id: str, lookback_days: float, limit: int) -> dict[str, str]:
    return {
        "annotationQuery": f"{CASE_TAG}={case_id}",
        "endTs": str(int(time.time() * 1000)),
        "lookback": str(int(lookback_days * 86_400_000)),
        "limit": str(limit),
    }


def _traces(response: httpx.Response) -> list[Trace]:
    response.raise_for_status()
    found = response.json()
    if not isinstance(found, list) or not all(isinstance(t, list) for t in found):
        raise httpx.DecodingError("the trace viewer's answer is not a list of traces")
    return found


def case_traces(
    viewer: str,
    case_id: str,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    limit: int = DEFAULT_LIMIT,
    timeout: float = 10.0,
) -> list[Trace]:
    """Every trace (a list of Zipkin v2 spans) with a span tagged with `case_id`."""
    response = httpx.get(
        f"{viewer.rstrip('/')}/api/v2/traces",
        params=_query(case_id, lookback_days, limit),
        timeout=timeout,
        follow_redirects=False,
    )
    return _traces(response)


async def fetch_case_traces(
    client: httpx.AsyncClient,
    viewer: str,
    case_id: UUID | str,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    limit: int = DEFAULT_LIMIT,
) -> list[Trace]:
    """`case_traces` with the caller's asynchronous client (its timeouts; redirects are not
    followed)."""
    response = await client.get(
        f"{viewer.rstrip('/')}/api/v2/traces",
        params=_query(str(case_id), lookback_days, limit),
        follow_redirects=False,
    )
    return _traces(response)


def _status(tags: dict[str, str]) -> str:
    if "error" in tags:
        return f"error: {tags['error']}"[:60]
    code = tags.get("http.response.status_code") or tags.get("http.status_code")
    if code:
        return code
    return tags.get("otel.status_code", "").lower()


def is_inner(span: dict[str, Any]) -> bool:
    """A database or object-storage call inside a step, not a step of the journey itself."""
    tags = span.get("tags", {})
    return span.get("kind") == "CLIENT" and (
        "db.system" in tags
        or "db.system.name" in tags
        or "http.method" in tags
        or "http.request.method" in tags
    )


def entries(traces: Iterable[Trace], *, everything: bool = False) -> list[Entry]:
    """The spans of `traces` as timeline entries in time order (without the inner calls
    unless `everything`)."""
    found = []
    for spans in traces:
        for span in spans:
            if not everything and is_inner(span):
                continue
            tags = span.get("tags", {})
            found.append(
                Entry(
                    at_us=int(span.get("timestamp", 0)),
                    duration_us=int(span.get("duration", 0)),
                    service=span.get("localEndpoint", {}).get("serviceName", "?"),
                    name=span.get("name", ""),
                    kind=span.get("kind", "INTERNAL"),
                    event_type=tags.get("cloudevents.event_type", ""),
                    status=_status(tags),
                    trace_id=span["traceId"],
                    span_id=span["id"],
                )
            )
    return sorted(found, key=lambda e: (e.at_us, e.span_id))


def root_trace_id(case_id: UUID | str) -> str:
    """The trace id of the case's root trace (`telemetry.case_root`): the case id's hex."""
    return UUID(str(case_id)).hex


def trace_link(viewer: str, trace_id: str) -> str:
    """Where a person opens one trace in the viewer's UI."""
    return f"{viewer.rstrip('/')}/zipkin/traces/{trace_id}"
