"""Quick database statements are counted on the span that made them instead of being exported;
slow ones, failed ones and those with no open parent are exported as before."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from referrals_common.statement_digest import (
    ENV,
    QUICK_STATEMENTS,
    QUICK_STATEMENTS_MS,
    StatementDigest,
    quick_statement_ms,
)

pytestmark = pytest.mark.unit

DB = {"db.system": "postgresql", "db.statement": "SELECT 1"}
MS = 1_000_000


def _traced(min_ms: float = 5.0):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(StatementDigest(SimpleSpanProcessor(exporter), min_ms=min_ms))
    return provider.get_tracer("test"), exporter


def _statement(tracer, start: int, took_ms: float, *, error: bool = False, **attrs) -> None:
    span = tracer.start_span(
        "SELECT", kind=SpanKind.CLIENT, attributes={**DB, **attrs}, start_time=start
    )
    if error:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=start + int(took_ms * MS))


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    found: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_quick_statements_are_counted_on_their_parent_not_exported() -> None:
    tracer, exporter = _traced()
    with tracer.start_as_current_span("POST /v1/cases", kind=SpanKind.SERVER):
        _statement(tracer, 1_000 * MS, 0.8)
        _statement(tracer, 1_010 * MS, 1.2)
        _statement(tracer, 1_020 * MS, 2.0)
    spans = _by_name(exporter)
    assert list(spans) == ["POST /v1/cases"]
    request = spans["POST /v1/cases"][0]
    assert request.attributes[QUICK_STATEMENTS] == 3
    assert request.attributes[QUICK_STATEMENTS_MS] == pytest.approx(4.0)


def test_slow_and_failed_statements_stay_spans_of_their_own() -> None:
    tracer, exporter = _traced()
    with tracer.start_as_current_span("process referrals.cases.v1", kind=SpanKind.CONSUMER):
        _statement(tracer, 1_000 * MS, 5.0)  # at the threshold: slow
        _statement(tracer, 1_010 * MS, 0.3, error=True)
        _statement(tracer, 1_020 * MS, 0.3)
    spans = _by_name(exporter)
    assert len(spans["SELECT"]) == 2
    assert {s.status.status_code for s in spans["SELECT"]} == {StatusCode.UNSET, StatusCode.ERROR}
    consumer = spans["process referrals.cases.v1"][0]
    assert consumer.attributes[QUICK_STATEMENTS] == 1


def test_a_statement_with_no_open_parent_is_exported() -> None:
    tracer, exporter = _traced()
    _statement(tracer, 1_000 * MS, 0.2)  # no parent at all
    with tracer.start_as_current_span("job") as job:
        late = tracer.start_span("SELECT", kind=SpanKind.CLIENT, attributes=DB)
    assert not job.is_recording()
    late.end()  # its parent ended first: nothing left to count it on
    assert [s.name for s in exporter.get_finished_spans()].count("SELECT") == 2


def test_other_client_spans_are_never_digested() -> None:
    tracer, exporter = _traced()
    with tracer.start_as_current_span("event", kind=SpanKind.CONSUMER):
        span = tracer.start_span("PUT", kind=SpanKind.CLIENT, attributes={"http.method": "PUT"})
        span.end()
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["PUT", "event"]


def test_zero_exports_every_statement_as_before() -> None:
    tracer, exporter = _traced(min_ms=0)
    with tracer.start_as_current_span("POST /v1/cases"):
        _statement(tracer, 1_000 * MS, 0.1)
    spans = _by_name(exporter)
    assert len(spans["SELECT"]) == 1
    assert QUICK_STATEMENTS not in spans["POST /v1/cases"][0].attributes


def test_statements_of_one_parent_ending_in_threads_are_all_counted() -> None:
    tracer, exporter = _traced()
    with tracer.start_as_current_span("GET /v1/documents") as parent:
        from opentelemetry import trace

        context = trace.set_span_in_context(parent)

        def work() -> None:
            for _ in range(200):
                span = tracer.start_span(
                    "SELECT", kind=SpanKind.CLIENT, attributes=DB, context=context
                )
                span.end()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    spans = _by_name(exporter)
    exported = len(spans.get("SELECT", []))
    assert spans["GET /v1/documents"][0].attributes[QUICK_STATEMENTS] + exported == 800


def test_the_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert quick_statement_ms() == 20.0
    monkeypatch.setenv(ENV, "0")
    assert quick_statement_ms() == 0.0
    monkeypatch.setenv(ENV, "12.5")
    assert quick_statement_ms() == 12.5
    for bad in ("fast", "-1"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=ENV):
            quick_statement_ms()
