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


def _traced_app():
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from referrals_common.telemetry import current_case, instrument_fastapi

    app = FastAPI()

    @app.get("/v1/cases/{case_id}")
    async def read_case(case_id: str) -> dict[str, str | None]:
        return {"case": case_id, "baggage": current_case()}

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_fastapi(app, tracer_provider=provider)
    return app, exporter


async def test_a_request_is_one_server_span_named_by_its_route_under_the_callers_traceparent():
    import httpx

    app, exporter = _traced_app()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {
        "traceparent": f"00-{trace_id}-{parent_id}-01",
        "baggage": "referrals.case_id=c-42",
        "user-agent": "front-end/1.0",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/v1/cases/abc?name=Olena", headers=headers)
        assert (await c.get("/health")).status_code == 200
    assert r.json() == {"case": "abc", "baggage": "c-42"}  # the caller's baggage is current
    [span] = exporter.get_finished_spans()  # the probe is not traced
    assert span.kind is trace.SpanKind.SERVER
    assert span.name == "GET /v1/cases/{case_id}"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id
    assert span.attributes["http.method"] == "GET"
    assert span.attributes["http.route"] == "/v1/cases/{case_id}"
    assert span.attributes["http.status_code"] == 200
    assert span.attributes["http.target"] == "/v1/cases/abc"  # no query: it may name a patient
    assert span.attributes["http.user_agent"] == "front-end/1.0"
    assert span.status.status_code is trace.StatusCode.UNSET


async def test_a_request_that_fails_is_a_server_span_with_the_error_status():
    import httpx

    app, exporter = _traced_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/v1/broken")
    assert r.status_code == 500
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /v1/broken"
    assert span.parent is None  # no traceparent: a trace of its own
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


async def test_an_app_built_elsewhere_still_makes_one_server_span_a_request(monkeypatch):
    """FastAPI's own telemetry would add a server span of its own around ours once a tracer
    provider is installed (the web app builds its FastAPI itself, then calls
    `instrument_fastapi`)."""
    import httpx
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    app, exporter = _traced_app()
    installed = TracerProvider()  # what configure_telemetry installs, into the same exporter
    installed.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: installed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/v1/cases/abc")).status_code == 200
    servers = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /v1/cases/{case_id}"]


async def test_a_download_links_token_never_reaches_a_span():
    """Whoever holds `/v1/downloads/<token>` may fetch the document: the trace viewer (no
    authentication of its own) gets the route's parameter name instead, on the server span and on
    the client span of whoever followed the link; a query (a presigned request's signature) is
    dropped from client spans as from server spans."""
    import httpx
    from fastapi import FastAPI
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from referrals_common.telemetry import (
        instrument_fastapi,
        redact_client_span_async,
        redact_target,
    )

    secret = "eyJhbGciOiJFZERTQSJ9.eyJkb2MiOiIxIn0.c2lnbmF0dXJl"
    app = FastAPI()

    @app.get("/v1/downloads/{token}")
    async def download(token: str) -> dict[str, int]:
        return {"length": len(token)}

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_fastapi(app, tracer_provider=provider)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://records")
    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=provider, request_hook=redact_client_span_async
    )
    async with client:
        answer = await client.get(f"/v1/downloads/{secret}?X-Amz-Signature=abc123")
    assert answer.json() == {"length": len(secret)}  # the route itself still gets the token
    spans = exporter.get_finished_spans()
    assert {span.kind for span in spans} == {trace.SpanKind.SERVER, trace.SpanKind.CLIENT}
    for span in spans:
        kept = json.dumps(dict(span.attributes or {})) + span.name
        assert secret not in kept and "abc123" not in kept, kept
    [server] = [s for s in spans if s.kind is trace.SpanKind.SERVER]
    assert server.attributes["http.target"] == "/v1/downloads/{token}"
    [client_span] = [s for s in spans if s.kind is trace.SpanKind.CLIENT]
    urls = [client_span.attributes.get(k) for k in ("http.url", "url.full")]
    assert "http://records/v1/downloads/{token}" in urls
    # Other paths keep their values; only a query and fragment go.
    assert redact_target("/v1/cases/abc/documents?name=Olena#x") == "/v1/cases/abc/documents"
