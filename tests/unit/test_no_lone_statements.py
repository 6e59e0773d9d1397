"""The platform's sampler drops traces that would begin with a database statement (a relay's or
a scheduler's poll) and the spans of a transaction's BEGIN, COMMIT and ROLLBACK, and keeps
everything else as before."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from referrals_common.telemetry import platform_sampler

pytestmark = pytest.mark.unit


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=platform_sampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _names(exporter: InMemorySpanExporter) -> list[str]:
    return sorted(span.name for span in exporter.get_finished_spans())


DB = {"db.system": "postgresql"}


def test_a_lone_statement_is_not_a_trace(traced) -> None:
    tracer, exporter = traced
    # Its children go with it.
    with (
        tracer.start_as_current_span("BEGIN;", kind=SpanKind.CLIENT, attributes=DB),
        tracer.start_as_current_span("inner"),
    ):
        pass
    assert _names(exporter) == []


def test_a_lone_outgoing_http_call_still_begins_a_trace(traced) -> None:
    """Its receiver's spans follow its sampling decision: dropping it would drop theirs."""
    tracer, exporter = traced
    with tracer.start_as_current_span(
        "POST", kind=SpanKind.CLIENT, attributes={"http.method": "POST"}
    ):
        pass
    assert _names(exporter) == ["POST"]


def test_requests_events_and_jobs_keep_their_client_calls(traced) -> None:
    tracer, exporter = traced
    with (
        tracer.start_as_current_span("POST /v1/cases", kind=SpanKind.SERVER),
        tracer.start_as_current_span("INSERT", kind=SpanKind.CLIENT, attributes=DB),
    ):
        pass
    with (
        tracer.start_as_current_span("referrals.cases.v1 process", kind=SpanKind.CONSUMER),
        tracer.start_as_current_span("UPDATE", kind=SpanKind.CLIENT, attributes=DB),
    ):
        pass
    with (
        tracer.start_as_current_span("scheduler.expire_offers"),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=DB),
    ):
        pass
    kept = ["POST /v1/cases", "INSERT", "referrals.cases.v1 process", "UPDATE"]
    kept += ["scheduler.expire_offers", "SELECT"]
    assert _names(exporter) == sorted(kept)


def test_a_client_call_under_a_remote_sampled_parent_is_kept(traced) -> None:
    tracer, exporter = traced
    remote = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "INSERT",
        kind=SpanKind.CLIENT,
        attributes=DB,
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
    ):
        pass
    assert _names(exporter) == ["INSERT"]


def test_a_transactions_begin_commit_and_rollback_are_not_recorded(traced) -> None:
    """Their statements' spans say nothing the span above them does not: only the others are
    kept, and the trace goes on."""
    tracer, exporter = traced
    with tracer.start_as_current_span("referrals.cases.v1 process", kind=SpanKind.CONSUMER):
        for name in ("BEGIN;", "INSERT", "COMMIT;", "BEGIN", "SELECT", "ROLLBACK;"):
            with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=DB):
                pass
        # Not a database statement: kept.
        with tracer.start_as_current_span("COMMIT", kind=SpanKind.CLIENT):
            pass
    assert _names(exporter) == sorted(["referrals.cases.v1 process", "INSERT", "SELECT", "COMMIT"])


def test_otel_traces_sampler_still_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert platform_sampler() is None
