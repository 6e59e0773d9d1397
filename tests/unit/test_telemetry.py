"""Logs are JSON lines that carry the current trace and span ids."""

import json
import logging

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from referrals_common.telemetry import configure_logging

pytestmark = pytest.mark.unit


def test_a_log_line_written_inside_a_span_carries_its_trace_and_span_ids(capsys):
    configure_logging("intake", level="INFO", json=True)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("submit case") as span:
        structlog.get_logger("intake.cases").info("case submitted", case_id="c-1")
        logging.getLogger("aiokafka").warning("plain stdlib logging is JSON too")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ctx = span.get_span_context()
    assert lines[0]["event"] == "case submitted"
    assert lines[0]["case_id"] == "c-1"
    assert lines[0]["service"] == "intake"
    assert lines[0]["trace_id"] == format(ctx.trace_id, "032x")
    assert lines[0]["span_id"] == format(ctx.span_id, "016x")
    assert lines[1]["event"] == "plain stdlib logging is JSON too"
    assert lines[1]["trace_id"] == format(ctx.trace_id, "032x")


def test_a_log_line_outside_any_span_has_no_trace_id(capsys):
    configure_logging("records")
    assert not trace.get_current_span().get_span_context().is_valid
    structlog.get_logger().info("idle")
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "trace_id" not in line
    assert line["service"] == "records"


async def test_an_upload_is_one_server_span_not_a_span_per_chunk():
    import httpx
    from fastapi import FastAPI, Request
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from referrals_common.telemetry import instrument_fastapi

    app = FastAPI()

    @app.post("/upload")
    async def receive_upload(request: Request) -> dict[str, int]:
        return {"bytes": sum([len(chunk) async for chunk in request.stream()])}

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_fastapi(app, tracer_provider=provider)

    async def body():
        for _ in range(64):
            yield b"x" * 16_384

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/upload", content=body())
    assert r.json() == {"bytes": 64 * 16_384}
    spans = exporter.get_finished_spans()
    assert [s.kind for s in spans] == [trace.SpanKind.SERVER], [s.name for s in spans]
