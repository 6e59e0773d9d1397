"""A case's journey from the trace viewer: every span that carries the case id
(`referrals.case_id`), across services and traces, in time order (`devstack timeline <case id>`).

The viewer is Zipkin (API v2): one query, `annotationQuery=referrals.case_id=<id>`, returns every
trace holding a span about the case; what ops read is the spans that say what happened (requests,
publishes, consumers, expiries, sends), without the database and object-storage calls inside
them unless asked (`everything`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

CASE_TAG = "referrals.case_id"
DEFAULT_LOOKBACK_DAYS = 7


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


def case_traces(
    viewer: str,
    case_id: str,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    limit: int = 1000,
    timeout: float = 10.0,
) -> list[list[dict[str, Any]]]:
    """Every trace (a list of Zipkin v2 spans) with a span tagged with `case_id`."""
    params = {
        "annotationQuery": f"{CASE_TAG}={case_id}",
        "endTs": str(int(time.time() * 1000)),
        "lookback": str(int(lookback_days * 86_400_000)),
        "limit": str(limit),
    }
    response = httpx.get(f"{viewer}/api/v2/traces", params=params, timeout=timeout)
    response.raise_for_status()
    traces: list[list[dict[str, Any]]] = response.json()
    return traces


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


def entries(traces: Iterable[list[dict[str, Any]]], *, everything: bool = False) -> list[Entry]:
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


def trace_link(viewer: str, trace_id: str) -> str:
    return f"{viewer}/zipkin/traces/{trace_id}"


def show(
    viewer: str,
    case_id: str,
    traces: list[list[dict[str, Any]]],
    console: Any,
    *,
    everything: bool = False,
) -> None:
    """Print the journey as a table, then its size (spans, traces, services)."""
    from rich.table import Table

    journey = entries(traces, everything=everything)
    spans = sum(len(t) for t in traces)
    if not journey:
        console.print(f"no span carries {CASE_TAG}={case_id} in the trace viewer")
        return
    began = journey[0].at_us
    table = Table(title=f"case {case_id}")
    for column in ("+s", "at (UTC)", "service", "span", "event type", "status", "trace"):
        table.add_column(column)
    for entry in journey:
        table.add_row(
            f"{(entry.at_us - began) / 1e6:8.2f}",
            entry.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            entry.service,
            entry.name,
            entry.event_type.removeprefix("referrals.").removesuffix(".v1"),
            entry.status,
            entry.trace_id,
        )
    console.print(table)
    services = sorted({e.service for e in journey})
    console.print(
        f"{spans} spans in {len(traces)} traces from {len(services)} services "
        f"({', '.join(services)}); the case's root: {trace_link(viewer, case_id.replace('-', ''))}"
    )
    console.print(f"each trace: {viewer}/zipkin/traces/<trace>")
