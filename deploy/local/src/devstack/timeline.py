"""`devstack timeline <case id>`: a case's journey from the trace viewer, as a table in the
terminal. Reading the viewer is `referrals_common.case_timeline`, which partners' ops API
(`GET /v1/ops/cases/{case_id}/timeline`) uses too; this module only prints."""

from __future__ import annotations

from typing import Any

from referrals_common.case_timeline import (
    CASE_TAG,
    DEFAULT_LOOKBACK_DAYS,
    Entry,
    case_traces,
    entries,
    is_inner,
    root_trace_id,
    trace_link,
)

__all__ = [
    "CASE_TAG",
    "DEFAULT_LOOKBACK_DAYS",
    "Entry",
    "case_traces",
    "entries",
    "is_inner",
    "show",
    "trace_link",
]


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
        f"({', '.join(services)}); the case's root: {trace_link(viewer, root_trace_id(case_id))}"
    )
    console.print(f"each trace: {viewer}/zipkin/traces/<trace>")
