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


class _Connection:
    """What the asyncpg instrumentation reads of a connection for a statement's attributes."""

    class _params:
        database = "partners"
        user = "partners"

    _addr = ("127.0.0.1", 5432)


def _statements(min_ms: float = 5.0):
    """The platform's provider (sampler, case processor, digest before the exporter) with the
    quick-statement instrumentation on its tracer; every span started is noted too."""
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from referrals_common.statement_digest import StatementDigest
    from referrals_common.telemetry import (
        CaseSpanProcessor,
        QuickStatementsInstrumentor,
        platform_sampler,
    )

    started: list[str] = []

    class Started(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:
            started.append(span.name)

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=platform_sampler())
    provider.add_span_processor(Started())
    provider.add_span_processor(CaseSpanProcessor())
    provider.add_span_processor(
        StatementDigest(SimpleSpanProcessor(exporter), min_ms=min_ms)
        if min_ms
        else SimpleSpanProcessor(exporter)
    )
    instrumentor = QuickStatementsInstrumentor(min_ms)
    instrumentor._tracer = provider.get_tracer("asyncpg")
    instrumentor._semconv_opt_in_mode = _StabilityMode.DEFAULT
    return instrumentor, provider.get_tracer("test"), exporter, started


async def _run(instrumentor, query: str, *, sleep_ms: float = 0.0, fails: bool = False) -> str:
    import asyncio

    async def statement(*args, **kwargs) -> str:
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        if fails:
            raise RuntimeError("duplicate key")
        return "done"

    return await instrumentor._do_execute(statement, _Connection(), (query,), {})


async def test_a_quick_statement_is_counted_on_its_span_and_no_span_is_made_for_it():
    """No span is started for a quick statement (the digest used to drop one made for each), nor
    for BEGIN or COMMIT: the event's span counts the statements it made and how long they took."""
    from referrals_common.statement_digest import QUICK_STATEMENTS, QUICK_STATEMENTS_MS

    instrumentor, tracer, exporter, started = _statements()
    with tracer.start_as_current_span("process referrals.documents.v1"):
        assert await _run(instrumentor, "begin; insert into inbox values (1)") == "done"
        assert await _run(instrumentor, "SELECT status FROM routing_cases") == "done"
        assert await _run(instrumentor, "WITH stored AS (INSERT INTO case_documents) SELECT 1")
        assert await _run(instrumentor, "commit") == "done"
    assert started == ["process referrals.documents.v1"]
    [event] = exporter.get_finished_spans()
    assert event.attributes[QUICK_STATEMENTS] == 2
    assert 0 < event.attributes[QUICK_STATEMENTS_MS] < 5


async def test_a_slow_or_failed_statement_is_still_a_span_with_its_text_under_its_parent():
    instrumentor, tracer, exporter, _ = _statements(min_ms=5.0)
    with tracer.start_as_current_span("process referrals.cases.v1") as parent:
        await _run(instrumentor, "SELECT pg_sleep(0.01)", sleep_ms=10)
        with pytest.raises(RuntimeError):
            await _run(instrumentor, "INSERT INTO inbox VALUES (1)", fails=True)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    slow, failed = spans["SELECT"], spans["INSERT"]
    for span in (slow, failed):
        assert span.kind is trace.SpanKind.CLIENT
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.attributes["db.system"] == "postgresql"
        assert span.attributes["db.name"] == "partners"
    assert slow.attributes["db.statement"] == "SELECT pg_sleep(0.01)"
    assert slow.end_time - slow.start_time >= 10_000_000
    assert slow.status.status_code is trace.StatusCode.UNSET
    assert failed.status.status_code is trace.StatusCode.ERROR


async def test_statements_outside_any_open_span_or_with_the_digest_off_are_traced_as_before():
    """A lone statement (a poll's) is dropped by the sampler as before; with the threshold at 0
    every statement is a span, BEGIN and COMMIT dropped by the sampler."""
    instrumentor, tracer, exporter, started = _statements()
    await _run(instrumentor, "SELECT 1")
    assert started == [] and exporter.get_finished_spans() == ()

    instrumentor, tracer, exporter, _ = _statements(min_ms=0)
    with tracer.start_as_current_span("job"):
        await _run(instrumentor, "begin")
        await _run(instrumentor, "SELECT 1")
        await _run(instrumentor, "commit")
    assert [s.name for s in exporter.get_finished_spans()] == ["SELECT", "job"]


def test_the_platform_installs_the_quick_statements_instrumentation_not_its_own():
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    from referrals_common.telemetry import QuickStatementsInstrumentor

    AsyncPGInstrumentor()  # the library's singleton, made first
    quick = QuickStatementsInstrumentor(20.0)
    assert type(quick) is QuickStatementsInstrumentor and quick.min_ns == 20_000_000


def test_the_viewers_spans_leave_out_the_tags_every_span_has_and_keep_the_rest():
    """What the Zipkin exporter sends: each span's own attributes, which process made it, its
    scope and status, as OpenTelemetry's encoder writes them, without the SDK's name, language
    and version, the service's name (the span's local endpoint already) and the scope's
    deprecated copy; long values whole."""
    import json as json_module

    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    from referrals_common.telemetry import lean_zipkin_encoder

    memory = InMemorySpanExporter()
    resource = Resource.create({"service.name": "partners", "referrals.role": "consumer"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    statement = "SELECT " + ", ".join(f"column_{i}" for i in range(40)) + " FROM routing_cases"
    with provider.get_tracer("referrals_common.consumer").start_as_current_span(
        "process referrals.cases.v1", attributes={"referrals.case_id": "c-1", "db.x": statement}
    ) as span:
        span.set_status(Status(StatusCode.ERROR, "boom"))
    spans, stock = memory.get_finished_spans(), ZipkinExporter()
    stock.local_node.service_name = "partners"  # as `export` sets it, from the resource
    [old] = json_module.loads(stock.encoder.serialize(spans, stock.local_node))
    lean = lean_zipkin_encoder(stock.encoder.max_tag_value_length)
    [new] = json_module.loads(lean.serialize(spans, stock.local_node))

    assert new["localEndpoint"] == old["localEndpoint"] == {"serviceName": "partners"}
    left_out = {
        "service.name",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "otel.library.name",
        "otel.library.version",
        "otel.scope.version",  # empty
    }
    assert left_out <= set(old["tags"])
    assert new["tags"] == {k: v for k, v in old["tags"].items() if k not in left_out}
    assert new["tags"]["referrals.role"] == "consumer" and "service.instance.id" in new["tags"]
    assert new["tags"]["otel.scope.name"] == "referrals_common.consumer"
    assert new["tags"]["error"] == "boom" and new["tags"]["db.x"] == statement
    assert {k: v for k, v in new.items() if k != "tags"} == {
        k: v for k, v in old.items() if k != "tags"
    }


def test_a_request_without_a_server_port_gets_no_port_tag():
    """An ASGI server on a Unix socket (or a test client) gives no port: the request span had
    `net.host.port` None, which the viewer's encoder could not serialize (a warning a span)."""
    from referrals_common.telemetry import _request_attributes

    scope = {"method": "GET", "path": "/health", "headers": [], "client": ("10.0.0.7", 50000)}
    assert "net.host.port" not in _request_attributes({**scope, "server": ("/run/api.sock", None)})
    assert _request_attributes({**scope, "server": ("127.0.0.1", 8001)})["net.host.port"] == 8001
    assert "net.host.port" not in _request_attributes(scope)
