"""One case, one story: the case id in the baggage is on every span and every log line, every
trace about a case links to the case's root, and the API edge finds the case of a request."""

from __future__ import annotations

import json
import logging
from uuid import UUID, uuid4

import httpx
import pytest
import structlog
from fastapi import FastAPI, Response
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from referrals_common import telemetry
from referrals_common.edge import Edge, EdgeMiddleware
from referrals_common.telemetry import (
    CASE_ID,
    CaseSpanProcessor,
    case_context,
    case_root,
    configure_logging,
    continue_trace,
    instrument_fastapi,
    with_case,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> tuple[trace.Tracer, InMemorySpanExporter]:
    """A provider as `configure_telemetry` builds it (case processor first, the case root's
    ids), exporting to memory; the telemetry module's own tracer uses it too."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=telemetry._CaseRootIds())
    provider.add_span_processor(CaseSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("referrals_common.telemetry"))
    return provider.get_tracer("test"), exporter


def test_every_span_under_the_case_baggage_carries_the_case_id(traced):
    tracer, exporter = traced
    case_id = uuid4()
    token = otel_context.attach(with_case(case_id))
    try:
        with (
            tracer.start_as_current_span("process referrals.cases.v1"),
            tracer.start_as_current_span("INSERT inbox"),
        ):
            pass
    finally:
        otel_context.detach(token)
    with tracer.start_as_current_span("health"):
        pass
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    assert by_name["process referrals.cases.v1"].attributes[CASE_ID] == str(case_id)
    assert by_name["INSERT inbox"].attributes[CASE_ID] == str(case_id)
    assert CASE_ID not in by_name["health"].attributes


def test_a_trace_started_for_a_case_links_to_the_cases_root_and_its_children_do_not(traced):
    tracer, exporter = traced
    case_id = uuid4()
    with (
        tracer.start_as_current_span("referral expire", context=case_context(case_id)),
        tracer.start_as_current_span("UPDATE referrals"),
    ):
        pass
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    [link] = by_name["referral expire"].links
    assert link.context.trace_id == case_id.int
    assert link.context.span_id == case_root(case_id).span_id
    assert not by_name["UPDATE referrals"].links
    assert by_name["UPDATE referrals"].attributes[CASE_ID] == str(case_id)


def test_the_case_root_trace_id_is_the_case_id():
    case_id = UUID("0f6b3c1e-5a7d-4c2b-9e8f-1a2b3c4d5e6f")
    root = case_root(case_id)
    assert format(root.trace_id, "032x") == case_id.hex
    assert root.span_id == 0x9E8F1A2B3C4D5E6F
    assert root.is_valid and root.trace_flags.sampled


def test_work_continued_from_a_stored_context_keeps_its_trace_and_takes_the_case(traced):
    tracer, _ = traced
    case_id = uuid4()
    with tracer.start_as_current_span("process referrals.routing.v1") as cause:
        carrier: dict[str, str] = {}
        from opentelemetry import propagate

        propagate.inject(carrier)
    with tracer.start_as_current_span(
        "notification accepted send", context=continue_trace(carrier, case_id)
    ) as send:
        pass
    assert send.get_span_context().trace_id == cause.get_span_context().trace_id
    assert send.attributes[CASE_ID] == str(case_id)
    assert not send.links  # not a trace root: its trace is linked where it began


def test_a_log_line_carries_the_case_id_of_the_baggage(capsys):
    configure_logging("partners", level="INFO", json=True)
    case_id = uuid4()
    token = otel_context.attach(with_case(case_id))
    try:
        structlog.get_logger("partners").info("offer expired")
        logging.getLogger("referrals_partners.scheduler").warning("stdlib logging too")
        structlog.get_logger("partners").info("explicit wins", case_id="other")
    finally:
        otel_context.detach(token)
    structlog.get_logger("partners").info("between cases")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("case_id") for line in lines] == [str(case_id), str(case_id), "other", None]


def _app(exporter_tracer_provider: TracerProvider, edge: Edge) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/cases/{case_id}")
    async def read_case(case_id: UUID) -> dict[str, str | None]:
        return {"baggage": telemetry.current_case()}

    @app.get("/v1/partner/referrals/{referral_id}")
    async def read_referral(referral_id: UUID) -> dict[str, str | None]:
        return {"baggage": telemetry.current_case()}

    @app.post("/v1/cases", status_code=201)
    async def create_case(response: Response) -> dict[str, str]:
        case_id = str(app.state.new_case)
        response.headers["Location"] = f"/v1/cases/{case_id}"
        return {"id": case_id}

    app.add_middleware(EdgeMiddleware, edge=edge)
    instrument_fastapi(app, tracer_provider=exporter_tracer_provider)
    return app


async def test_the_edge_puts_the_case_of_the_path_on_the_request_and_links_its_root(traced):
    _, exporter = traced
    provider = TracerProvider()
    provider.add_span_processor(CaseSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    case_id, referral_id = uuid4(), uuid4()
    looked_up: list[UUID] = []

    async def case_of_referral(_: object, rid: UUID) -> UUID | None:
        looked_up.append(rid)
        return case_id if rid == referral_id else None

    edge = Edge(case_of_referral=case_of_referral)
    edge.configure()
    app = _app(provider, edge)
    app.state.new_case = uuid4()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        read = await client.get(f"/v1/cases/{case_id}")
        for _ in range(2):
            referral = await client.get(f"/v1/partner/referrals/{referral_id}")
        unknown = await client.get(f"/v1/partner/referrals/{uuid4()}")
        created = await client.post("/v1/cases")
    assert created.status_code == 201

    assert read.json() == {"baggage": str(case_id)}
    assert referral.json() == {"baggage": str(case_id)}
    assert unknown.json() == {"baggage": None}
    assert looked_up[:1] == [referral_id] and looked_up.count(referral_id) == 1  # cached

    servers = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    about = [s.attributes.get(CASE_ID) for s in servers]
    assert about == [str(case_id), str(case_id), str(case_id), None, str(app.state.new_case)]
    for span in servers[:3]:
        assert [link.context.trace_id for link in span.links] == [case_id.int]

    # A created case gets its root span: trace id and span id the case's, linked to the request.
    new_case = app.state.new_case
    [root] = [s for s in exporter.get_finished_spans() if s.name == "case"]
    assert root.context.trace_id == new_case.int
    assert root.context.span_id == case_root(new_case).span_id
    assert root.parent is None
    assert root.attributes[CASE_ID] == str(new_case)
    assert [link.context.span_id for link in root.links] == [servers[-1].context.span_id]
    assert [link.context.trace_id for link in servers[-1].links] == [new_case.int]
