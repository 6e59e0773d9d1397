"""Traces and logs: OpenTelemetry from the standard OTEL_* variables, structlog JSON with trace ids.

`configure_telemetry("intake")` at start-up:

* `OTEL_TRACES_EXPORTER` = `otlp` (default when `OTEL_EXPORTER_OTLP_ENDPOINT` or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set), `zipkin` (the local stack's trace viewer, at
  `OTEL_EXPORTER_ZIPKIN_ENDPOINT`), `console`, or `none` (default otherwise). Each exporter reads
  its endpoint, headers and timeout from the standard variables itself.
* `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured by the SDK's resource detection.
* Instrumentation for asyncpg, httpx and urllib3 (the MinIO SDK's HTTP client) is switched on
  here; FastAPI apps are instrumented by
  `instrument_fastapi(app)`. Kafka spans are made by the outbox relay (publish) and the
  consumer helper (process), which carry the context in the records' `traceparent` header.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def _exporter_choice() -> str:
    choice = os.environ.get("OTEL_TRACES_EXPORTER")
    if choice:
        return choice.split(",")[0].strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return "otlp" if endpoint else "none"


def configure_telemetry(
    service_name: str,
    *,
    extra_processor: SpanProcessor | None = None,
    instrument_libraries: bool = True,
) -> TracerProvider:
    """Install the global tracer provider once per process and return it."""
    global _configured
    current = trace.get_tracer_provider()
    if _configured and isinstance(current, TracerProvider):
        if extra_processor is not None:
            current.add_span_processor(extra_processor)
        return current
    choice = _exporter_choice()
    if choice == "none" and extra_processor is None:
        # Nothing would read the spans: keep the API's no-op tracer, which costs nothing per
        # request (the W3C context in Kafka headers is still carried through untouched).
        return TracerProvider()
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif choice == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        provider.add_span_processor(BatchSpanProcessor(ZipkinExporter()))
    elif choice == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    if instrument_libraries:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        AsyncPGInstrumentor().instrument()
        HTTPXClientInstrumentor().instrument()
        URLLib3Instrumentor().instrument()
    _configured = True
    return provider


def instrument_fastapi(app: Any, tracer_provider: Any = None) -> None:
    """Trace every request but the health and metrics probes (with the global provider unless
    one is given)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # No span per ASGI receive or send: an upload arrives in thousands of chunks, each of which
    # became a span of its own (a 200 MB document made over 3 000), burying the request's trace.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="health,metrics",
        exclude_spans=["receive", "send"],
        tracer_provider=tracer_provider,
    )


def _add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def configure_logging(service_name: str, *, level: str = "INFO", json: bool = True) -> None:
    """structlog (and the standard library's logging) as one stream of JSON lines on stdout,
    each with the service, and the trace and span ids of the current span when there is one."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        lambda _, __, ev: {**ev, "service": service_name},
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def untraced() -> Any:
    """A block whose library calls make no spans: the polling loops (outbox relay, sender,
    scheduler) query every fraction of a second, and each query would otherwise be a trace of its
    own. Work such a loop finds starts its own span from the row's stored trace context, with
    `continue_trace`."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


def continue_trace(carrier: dict[str, str] | None) -> Any:
    """The OpenTelemetry context of a stored W3C carrier, on a fresh base: work picked up inside
    `untraced()` is traced again, as part of the trace that caused it."""
    from opentelemetry import context, propagate

    return propagate.extract(carrier or {}, context=context.Context())
