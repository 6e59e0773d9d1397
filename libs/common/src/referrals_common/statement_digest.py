"""Quick database statements are counted on the span that made them, not exported one by one.

A staged case makes about forty database statements across the five services, most of them under
a millisecond. Each was a span of its own: recorded, queued, encoded as JSON, posted to the trace
viewer and kept there (about 2 KiB of the viewer's heap each), for a name and a duration that say
little one by one. Exporting such a span cost about 25 µs of the service's CPU (measured with the
Zipkin exporter, 20,000 spans) and more in the viewer; statements were two thirds of the spans
the viewer kept, so it held a third of the cases' history it could.

`StatementDigest` wraps the processor that exports spans (`configure_telemetry` puts it around the
Zipkin, OTLP or console exporter's). When a statement's span (a client span with a `db.system`
attribute) ends faster than `min_ms` and without an error, it is not passed on; instead the span
that made it (its parent: the request, the event's handling, the job) gets two attributes it keeps
up to date:

* `referrals.db.quick_statements`: how many such statements it made;
* `referrals.db.quick_statements_ms`: their total duration in milliseconds.

So a request that makes many quick statements (an N+1 query) still shows it on its own span, and a
statement that is slow or fails is still a span of its own, with its text. A statement whose parent
is not open in this process (none, or already ended) is exported as before: nothing is lost that
could not be counted. `REFERRALS_TELEMETRY_QUICK_STATEMENT_MS` sets `min_ms` (default 20; 0 exports
every statement, as before).

Why 20 ms: the platform's statements take well under a millisecond on an idle machine, and 5 to
20 ms when the processes wait for a core (a busy two-core machine: 137 of the 347 spans of `make
demo`'s journey were statements of 5 ms or more, 12 of 20 ms or more). Those say the machine was
busy, which the request's own duration and its counted statements' total already say; a statement
of 20 ms or more is slow for a reason of its own (a lock, a missing index, a large result).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

QUICK_STATEMENTS: Final = "referrals.db.quick_statements"
QUICK_STATEMENTS_MS: Final = "referrals.db.quick_statements_ms"
ENV: Final = "REFERRALS_TELEMETRY_QUICK_STATEMENT_MS"
DEFAULT_MIN_MS: Final = 20.0
MAX_PENDING: Final = 10_000
"""Statements whose end is awaited at most (a statement span never ended would otherwise keep its
parent referenced for ever); beyond it the oldest are forgotten and exported in full."""

_DB_SYSTEM: Final = ("db.system", "db.system.name")


def quick_statement_ms() -> float:
    """`min_ms` from the environment (`REFERRALS_TELEMETRY_QUICK_STATEMENT_MS`)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MIN_MS
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV} must be a number of milliseconds, not {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{ENV} must be 0 or more, not {raw!r}")
    return value


def _is_statement(span: ReadableSpan | Span) -> bool:
    if span.kind is not SpanKind.CLIENT:
        return False
    attributes = span.attributes
    return attributes is not None and any(name in attributes for name in _DB_SYSTEM)


class StatementDigest(SpanProcessor):
    """Passes every span to `then`, except quick statements, counted on their parent instead."""

    def __init__(self, then: SpanProcessor, *, min_ms: float) -> None:
        self.then = then
        self.min_ns = int(min_ms * 1_000_000)
        self._parents: dict[int, Span] = {}
        """statement span id → the open span that made it."""
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self.min_ns and _is_statement(span):
            parent = trace.get_current_span(parent_context)
            if isinstance(parent, Span) and parent.is_recording():
                with self._lock:
                    if len(self._parents) >= MAX_PENDING:
                        self._parents.pop(next(iter(self._parents)))
                    self._parents[span.get_span_context().span_id] = parent
        self.then.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if self.min_ns and context is not None and self._parents:
            with self._lock:
                parent = self._parents.pop(context.span_id, None)
            if parent is not None and self._digest(span, parent):
                return
        self.then.on_end(span)

    def _digest(self, span: ReadableSpan, parent: Span) -> bool:
        """Count `span` on `parent` if it is quick and fine; whether it was."""
        if span.start_time is None or span.end_time is None or not parent.is_recording():
            return False
        took = span.end_time - span.start_time
        if took >= self.min_ns or span.status.status_code is StatusCode.ERROR:
            return False
        with self._lock:  # two statements of one parent may end in two threads
            attributes: Any = parent.attributes or {}
            count = int(attributes.get(QUICK_STATEMENTS, 0)) + 1
            total = float(attributes.get(QUICK_STATEMENTS_MS, 0.0)) + took / 1_000_000
            parent.set_attribute(QUICK_STATEMENTS, count)
            parent.set_attribute(QUICK_STATEMENTS_MS, round(total, 3))
        return True

    def shutdown(self) -> None:
        self.then.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.then.force_flush(timeout_millis)
