"""Database statements as the platform traces them, on real PostgreSQL through asyncpg (issue 25,
cost per case): a quick statement of an event is counted on the event's span without a span of
its own being made, a slow one is still a span with its text, and a poll's lone statement is
no trace at all (`referrals_common.telemetry.QuickStatementsInstrumentor`)."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from referrals_common.statement_digest import QUICK_STATEMENTS, StatementDigest
from referrals_common.telemetry import (
    CaseSpanProcessor,
    QuickStatementsInstrumentor,
    platform_sampler,
)

pytestmark = pytest.mark.integration


class Started(SpanProcessor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
        self.names.append(span.name)


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, Started]]:
    exporter, started = InMemorySpanExporter(), Started()
    provider = TracerProvider(sampler=platform_sampler())
    provider.add_span_processor(started)
    provider.add_span_processor(CaseSpanProcessor())
    provider.add_span_processor(StatementDigest(SimpleSpanProcessor(exporter), min_ms=50))
    # One instrumentor a process (a singleton): a test before this one may have instrumented
    # asyncpg already (`configure_telemetry`, with the global provider), and instrumenting again
    # would then be skipped, its spans going to that provider. Taken over here, given back after.
    instrumentor = QuickStatementsInstrumentor.__new__(QuickStatementsInstrumentor)
    before = instrumentor.is_instrumented_by_opentelemetry
    before_ns = getattr(instrumentor, "min_ns", 0)
    if before:
        instrumentor.uninstrument()
    instrumentor = QuickStatementsInstrumentor(50)
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, exporter, started
    finally:
        instrumentor.uninstrument()
        if before:
            QuickStatementsInstrumentor(before_ns / 1_000_000).instrument()


async def test_an_events_statements_on_asyncpg_are_counted_and_only_a_slow_one_is_a_span(
    new_database, traced
):
    provider, exporter, started = traced
    connection = await asyncpg.connect(await new_database("tracing"))
    try:
        await connection.fetchval("select 1")  # a poll's: no span, no trace
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("process referrals.documents.v1"):
            await connection.execute("begin; create table t (id int primary key)")
            await connection.execute("insert into t values ($1)", 1)
            assert await connection.fetchval("select id from t where id = $1", 1) == 1
            await connection.execute("select pg_sleep(0.06)")
            await connection.execute("commit")
    finally:
        await connection.close()
    assert started.names == ["process referrals.documents.v1", "select"]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"process referrals.documents.v1", "select"}
    assert spans["select"].attributes["db.statement"] == "select pg_sleep(0.06)"
    assert spans["process referrals.documents.v1"].attributes[QUICK_STATEMENTS] == 2
