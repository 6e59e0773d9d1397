"""Traces and logs: OpenTelemetry from the standard OTEL_* variables, structlog JSON with trace ids.

`configure_telemetry("intake")` at start-up:

* `OTEL_TRACES_EXPORTER` = `zipkin` (the platform's trace viewer under devstack, compose and
  Kubernetes, at `OTEL_EXPORTER_ZIPKIN_ENDPOINT`), `otlp` (default when
  `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set: a collector of
  one's own), `console`, or `none` (default otherwise). Each exporter reads
  its endpoint, headers and timeout from the standard variables itself.
* `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured by the SDK's resource detection.
* Instrumentation for asyncpg, httpx and urllib3 (the MinIO SDK's HTTP client) is switched on
  here; a FastAPI app's requests are traced by `instrument_fastapi(app)` (`ServerSpanMiddleware`:
  one server span per request). Kafka spans are made by the outbox relay (publish) and the
  consumer helper (process), which carry the context in the records' `traceparent` header.

**One case, one story.** Whatever a process does about a case runs with the case id in the
OpenTelemetry baggage (`referrals.case_id`), put there once where the work enters the process:
the API edge (from the path), the consumer (from the envelope), the relay (from the outbox row),
the scheduler and sender (from their rows, through `case_context` and `continue_trace`). From
there `CaseSpanProcessor` copies it onto every span as the attribute `referrals.case_id`, and
`configure_logging` onto every log line as the field `case_id`; the relay carries it on to the
next service in the Kafka `baggage` header. Each case also has a root trace whose trace id is
the case id itself (`case_root`): every trace that starts for a case (a request, a scheduled
expiry) links to it, so "everything about case X" is one query by tag, and X's root trace is
`/traces/<X without dashes>` in the viewer. Why links rather than one trace a case:
docs/architecture.md, "One case, one story".
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from uuid import UUID

import structlog
from fastapi.telemetry import TelemetryConfig
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.instrumentation._semconv import _report_new
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor, _hydrate_span_from_args
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common.statement_digest import (
    QUICK_STATEMENTS,
    QUICK_STATEMENTS_MS,
    StatementDigest,
    quick_statement_ms,
)

CASE_ID = "referrals.case_id"
"""The baggage entry and the span attribute naming the case a piece of work is about."""
CASE_LOG_FIELD = "case_id"
"""The structured-log field with the same value."""

_configured = False


def case_root(case_id: UUID | str) -> SpanContext:
    """The span context of the case's root span: trace id = the case id's 128 bits, span id =
    its last 64 (never zero for a UUID4), so any process derives it from the case id alone."""
    value = case_id.int if isinstance(case_id, UUID) else UUID(str(case_id)).int
    return SpanContext(
        trace_id=value,
        span_id=(value & 0xFFFF_FFFF_FFFF_FFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def with_case(case_id: UUID | str, context: otel_context.Context | None = None) -> Any:
    """`context` (default: the current one) with `case_id` in its baggage."""
    return baggage.set_baggage(CASE_ID, str(case_id), context)


def case_context(case_id: UUID | str) -> Any:
    """A fresh context for work that starts a case's trace of its own, with nothing above it
    (a scheduled expiry): its spans carry the case id and its root links to the case's root."""
    return with_case(case_id, otel_context.Context())


def current_case() -> str | None:
    """The case id in the current context's baggage, if any."""
    value = baggage.get_baggage(CASE_ID)
    return value if isinstance(value, str) else None


class CaseSpanProcessor(SpanProcessor):
    """Copies the case id onto every span started under it, and links every trace root about a
    case (a span with no parent at all) to the case's root span.

    The case id is the baggage's, or else its parent span's attribute: `start_as_current_span(
    name, context=ctx)` makes the span current over the *current* context, not `ctx`, so the
    spans under it see `ctx`'s baggage only through their parent. A few dictionary look-ups per
    span; nothing more when no case is in sight."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        case_id = baggage.get_baggage(CASE_ID, parent_context)
        if case_id is None:
            attributes = getattr(trace.get_current_span(parent_context), "attributes", None)
            case_id = attributes.get(CASE_ID) if attributes else None
            if case_id is None:
                return
        span.set_attribute(CASE_ID, str(case_id))
        if span.parent is None:
            try:
                root = case_root(str(case_id))
            except ValueError:  # not a UUID: an attribute, but no case trace to link to
                return
            if root.trace_id != span.get_span_context().trace_id:
                span.add_link(root)

    def on_end(self, span: ReadableSpan) -> None:
        pass


def note_request_case(case_id: UUID | str) -> None:
    """For a request whose case is known only inside its handler (a download link names a
    token, not a case; a web page learns the case from its session): the request's span is
    marked as about `case_id` and linked to the case's root, and the rest of the request (its
    queries, its object-storage reads, its outgoing calls, a streamed answer) runs with the case
    in its baggage, until the request's task ends."""
    span = trace.get_current_span()
    span.set_attribute(CASE_ID, str(case_id))
    if span.is_recording():
        try:
            root = case_root(case_id)
        except ValueError:
            root = None
        if root is not None and span.get_span_context().trace_id != root.trace_id:
            span.add_link(root)
    otel_context.attach(with_case(case_id))


def open_case_trace(case_id: UUID | str, *, cause: SpanContext | None = None) -> None:
    """Record the case's root span (once, when the case is created), linked to the span that
    created it; every later trace about the case links to this root (`case_root`)."""
    root = case_root(case_id)
    ids = _FIXED_IDS.set((root.trace_id, root.span_id))
    try:
        span = _tracer.start_span(
            "case",
            context=with_case(case_id, otel_context.Context()),
            kind=trace.SpanKind.INTERNAL,
            links=[trace.Link(cause)] if cause is not None and cause.is_valid else None,
        )
    finally:
        _FIXED_IDS.reset(ids)
    span.end()


_FIXED_IDS: ContextVar[tuple[int, int] | None] = ContextVar("referrals_fixed_ids", default=None)
_tracer = trace.get_tracer("referrals_common.telemetry")


class _CaseRootIds(RandomIdGenerator):
    """Random ids, except for the case's root span, whose ids are the case's (`case_root`)."""

    def generate_span_id(self) -> int:
        fixed = _FIXED_IDS.get()
        return fixed[1] if fixed is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        fixed = _FIXED_IDS.get()
        return fixed[0] if fixed is not None else super().generate_trace_id()


_DB_SYSTEM = frozenset({"db.system", "db.system.name"})
"""The attribute naming a database client's system, in the old and the stable conventions."""


class NoLoneStatements(Sampler):
    """Keeps a trace unless it would begin with a database statement made outside any request,
    event or job (a relay's or a scheduler's poll, every second or so while nothing happens).
    Those were each a trace of their own, one to three spans, thousands an hour on an idle
    platform: the trace viewer's storage filled with them (pushing real cases' traces out), and
    every process spent CPU exporting them. A statement inside a request, an event's handling or
    a job follows its parent; any other root span (an outgoing HTTP call too: its receiver's
    trace goes on from it) is kept, as before."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if _is_statement(kind, attributes):
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)

    def get_description(self) -> str:
        return "NoLoneStatements"


_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})


def _is_statement(kind: SpanKind | None, attributes: Any) -> bool:
    """Whether a span about to start is a database statement's (a client span with a
    `db.system` attribute, old or new name)."""
    return (
        kind is SpanKind.CLIENT and bool(attributes) and bool(_DB_SYSTEM.intersection(attributes))
    )


class NoTransactionControl(Sampler):
    """Drops the span of a transaction's BEGIN, COMMIT or ROLLBACK (asyncpg's instrumentation
    makes one for each, as for any statement: two of the three to eight spans of a typical
    transaction, each recorded, queued, encoded and sent to the trace viewer, about 45 µs of CPU
    in the process and more in the viewer, for a name and a duration the span above them shows
    anyway); every other decision is `then`'s."""

    def __init__(self, then: Sampler) -> None:
        self.then = then

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if name.rstrip(";").upper() in _TRANSACTION_CONTROL and _is_statement(kind, attributes):
            return SamplingResult(Decision.DROP)
        return self.then.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoTransactionControl{{{self.then.get_description()}}}"


class QuickStatementsInstrumentor(AsyncPGInstrumentor):
    """OpenTelemetry's asyncpg instrumentation, except that a statement made under a span open in
    this process is timed first and made a span only if it was slow (`min_ms` or more) or
    failed; a quick one is counted on that span (`referrals.db.quick_statements` and
    `_ms`), and a transaction's BEGIN, COMMIT or ROLLBACK (a `begin; …` too) is neither.

    That is what `StatementDigest` and `NoTransactionControl` did with the spans the
    instrumentation made, decided before any span is made rather than after: each statement's
    span was started (its attributes gathered, the sampler asked, the case processor run, the
    context attached), ended and then dropped, ~60 µs of CPU in the process for each of the
    twenty to forty statements of a staged case's events in every service. A slow or failed
    statement is a span with its text, start and end as before (the digest passes it on). A
    statement under no open span of this process (none at all, or only a caller's context from
    another process), a cursor's, and every statement when `min_ms` is 0 go through the
    instrumentation as before."""

    _instance = None  # its own singleton, not AsyncPGInstrumentor's (BaseInstrumentor.__new__)

    def __init__(self, min_ms: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # the instrumentation is untyped
        self.min_ns = int(min_ms * 1_000_000)
        self._lock = threading.Lock()

    async def _do_execute(self, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        query = args[0] if args else None
        return await self._timed(super()._do_execute, func, instance, args, kwargs, query, instance)

    async def _do_prepared_execute(self, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return await self._timed(
            super()._do_prepared_execute,
            func,
            instance,
            args,
            kwargs,
            instance._query,
            instance._connection,
        )

    async def _timed(
        self,
        traced: Callable[[Any, Any, Any, Any], Awaitable[Any]],
        func: Any,
        instance: Any,
        args: Any,
        kwargs: Any,
        query: Any,
        connection: Any,
    ) -> Any:
        parent = trace.get_current_span()
        if (
            not self.min_ns
            or not isinstance(parent, Span)
            or not parent.is_recording()
            or not isinstance(query, str)
            or not is_instrumentation_enabled()
        ):
            return await traced(func, instance, args, kwargs)
        words = query.split(None, 1)
        name = words[0] if words else ""
        if name.rstrip(";").upper() in _TRANSACTION_CONTROL:
            return await func(*args, **kwargs)
        start = time.time_ns()
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            self._statement_span(name, query, connection, start, exc)
            raise
        took = time.time_ns() - start
        if took >= self.min_ns:
            self._statement_span(name, query, connection, start, None)
        else:
            with self._lock:  # as StatementDigest counts them: a parent may be another thread's
                attributes: Any = parent.attributes or {}
                total = float(attributes.get(QUICK_STATEMENTS_MS, 0.0)) + took / 1_000_000
                parent.set_attribute(QUICK_STATEMENTS, int(attributes.get(QUICK_STATEMENTS, 0)) + 1)
                parent.set_attribute(QUICK_STATEMENTS_MS, round(total, 3))
        return result

    def _statement_span(
        self, name: str, query: str, connection: Any, start: int, error: Exception | None
    ) -> None:
        """The span the instrumentation would have made for the statement, made once it ended."""
        assert self._tracer is not None  # set by `instrument`
        mode = self._semconv_opt_in_mode
        span = self._tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=_hydrate_span_from_args(connection, query, None, semconv_opt_in_mode=mode),
            start_time=start,
        )
        if error is not None and span.is_recording():
            span.set_status(Status(StatusCode.ERROR))
            if _report_new(mode):
                span.set_attribute(ERROR_TYPE, type(error).__qualname__)
        span.end()


def platform_sampler() -> Sampler | None:
    """The platform's sampler: a transaction's BEGIN, COMMIT and ROLLBACK are not recorded
    (`NoTransactionControl`); otherwise a sampled parent's children are sampled, and a root
    span is unless it is a lone database statement (`NoLoneStatements`). None when
    OTEL_TRACES_SAMPLER chooses."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return NoTransactionControl(ParentBased(root=NoLoneStatements()))


def _exporter_choice() -> str:
    choice = os.environ.get("OTEL_TRACES_EXPORTER")
    if choice:
        return choice.split(",")[0].strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return "otlp" if endpoint else "none"


CONSTANT_RESOURCE_TAGS = frozenset(
    {"service.name", "telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version"}
)
"""Resource attributes the Zipkin exporter is not to copy onto every span: the same on every span
of every service but the name, which is the span's `localEndpoint.serviceName` already."""


def lean_zipkin_encoder(max_tag_value_length: int | None = None) -> Any:
    """Zipkin's JSON v2 encoder (OpenTelemetry's), whose spans' tags leave out what says nothing
    of the span: the SDK's name, language and version and the service's name, copied from the
    resource onto every span (`CONSTANT_RESOURCE_TAGS`), the instrumentation scope's deprecated
    copy (`otel.library.name` and `.version`) and an empty scope version. The span's own
    attributes, the other resource attributes (`service.instance.id`, `referrals.role`: which
    process), the scope's name, the status and the dropped counts stay. About a third of a
    span's bytes, which the viewer parses and keeps for every span: its CPU per span with them
    gone, measured on a bench run's spans, 300 -> 263 us (median of 4 rounds of 2,048)."""
    from opentelemetry.exporter.zipkin.encoder import _SCOPE_NAME_KEY, _SCOPE_VERSION_KEY
    from opentelemetry.exporter.zipkin.json.v2 import JsonV2Encoder

    class LeanJsonV2Encoder(JsonV2Encoder):
        def __init__(self, max_tag_value_length: int | None) -> None:
            # None: values whole, as the exporter makes its own encoder (its hint says int).
            super().__init__(max_tag_value_length)  # type: ignore[arg-type]
            self._resource_tags: tuple[Any, dict[str, str]] | None = None

        def _extract_tags_from_span(self, span: Any) -> dict[str, str]:
            tags: dict[str, str] = self._extract_tags_from_dict(span.attributes)
            resource = span.resource
            if resource is not None:
                # One resource per process: its tags are worked out once, not per span.
                if self._resource_tags is None or self._resource_tags[0] is not resource:
                    kept = {
                        k: v
                        for k, v in resource.attributes.items()
                        if k not in CONSTANT_RESOURCE_TAGS
                    }
                    self._resource_tags = (resource, self._extract_tags_from_dict(kept))
                tags.update(self._resource_tags[1])
            scope = span.instrumentation_scope
            if scope is not None:
                tags[_SCOPE_NAME_KEY] = scope.name
                if scope.version:
                    tags[_SCOPE_VERSION_KEY] = scope.version
            status = span.status.status_code
            if status is not StatusCode.UNSET:
                tags["otel.status_code"] = status.name
                if status is StatusCode.ERROR:
                    tags["error"] = span.status.description or ""
            for count, name in (
                (span.dropped_attributes, "otel.dropped_attributes_count"),
                (span.dropped_events, "otel.dropped_events_count"),
                (span.dropped_links, "otel.dropped_links_count"),
            ):
                if count:
                    tags[name] = str(count)
            return tags

    return LeanJsonV2Encoder(max_tag_value_length)


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
    provider = TracerProvider(
        resource=resource, id_generator=_CaseRootIds(), sampler=platform_sampler()
    )
    # First, so the exporters' processors see the attribute (they read spans when they end).
    provider.add_span_processor(CaseSpanProcessor())
    exporter: SpanExporter | None = None
    min_ms = quick_statement_ms()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif choice == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        exporter = ZipkinExporter()
        exporter.encoder = lean_zipkin_encoder(exporter.encoder.max_tag_value_length)
    elif choice == "console":
        exporter = ConsoleSpanExporter()
    if exporter is not None:
        # Quick statements are counted on their parent span, not exported (statement_digest).
        exporting: SpanProcessor = BatchSpanProcessor(exporter)
        provider.add_span_processor(
            StatementDigest(exporting, min_ms=min_ms) if min_ms else exporting
        )
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    if instrument_libraries:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        # Quick statements are timed, not made spans, when the digest would not export them.
        QuickStatementsInstrumentor(min_ms if exporter is not None else 0.0).instrument()
        HTTPXClientInstrumentor().instrument(
            request_hook=redact_client_span, async_request_hook=redact_client_span_async
        )
        URLLib3Instrumentor().instrument(request_hook=redact_client_span)
    _configured = True
    return provider


SERVER_SPAN_EXCLUDED_PATHS = frozenset({"/health", "/metrics"})
"""Probes and Prometheus scrapes: never traced (each would be a trace of its own)."""


class _HeaderGetter(Getter[dict[str, str]]):
    """The W3C propagators' view of the propagation headers of a request (lowercase names)."""

    def get(self, carrier: dict[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: dict[str, str]) -> list[str]:
        return list(carrier)


_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})
_GETTER = _HeaderGetter()


class ServerSpanMiddleware:
    """One SERVER span per HTTP request (`<METHOD> <route template>`, e.g. `POST /v1/cases`,
    or the method alone when no route matched), the child of the caller's W3C `traceparent`
    (its `tracestate` and `baggage` too) and the current span while the app runs; with the
    request's method, scheme, target path (no query: it may name a patient), route, status
    code, HTTP version, host, peer address and user agent as attributes (OpenTelemetry's HTTP
    conventions, the names the trace viewer's queries use), and the error status for a 5xx or an
    exception. No span per ASGI receive or send: an upload arrives in thousands of chunks, each
    of which became a span of its own with OpenTelemetry's ASGI instrumentation.

    Ours rather than that instrumentation's: it matched the request against every route before
    the app did (for the span's name), collected a dozen attributes and recorded five
    histograms per request through the metrics API, whether or not anything exported them; the
    route is known once the app has matched it (`scope["route"]`), and the platform's request
    metrics are Prometheus's (`service_app`). With no tracer provider installed (no
    exporter), the caller's context is still carried through, so what the request writes (an
    outbox row's `traceparent`) continues the caller's trace."""

    def __init__(
        self,
        app: ASGIApp,
        tracer_provider: Any = None,
        excluded_paths: frozenset[str] = SERVER_SPAN_EXCLUDED_PATHS,
    ) -> None:
        self.app = app
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.excluded_paths = excluded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _PROPAGATED
        }
        parent = propagate.extract(carrier, getter=_GETTER) if carrier else None
        method = scope["method"]
        span = self.tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=_request_attributes(scope)
        )
        status_code = 500

        async def send_noting(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_noting)
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")
                span.set_attribute("http.status_code", status_code)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()


_CAPABILITY_IN_PATH = re.compile(r"(/v1/downloads/)[^/?#]+")
"""A path segment that is itself a credential: records' download links (`/v1/downloads/<token>`,
whoever holds the link may fetch the document until it expires)."""
_CLIENT_URL_ATTRIBUTES = ("http.url", "url.full")


def redact_target(url: str) -> str:
    """`url` (or a path) as spans may keep it: without its query and fragment (a query may name
    a patient, or carry a presigned request's signature: `X-Amz-Signature`, which
    OpenTelemetry's own redaction leaves) and with a credential in the path replaced by its
    parameter's name (`/v1/downloads/{token}`). The trace viewer has no authentication of its
    own: what reaches it must not open a document."""
    cut = url.split("#", 1)[0].split("?", 1)[0]
    return _CAPABILITY_IN_PATH.sub(r"\1{token}", cut)


def redact_client_span(span: Any, *_: Any) -> None:
    """The httpx and urllib3 instrumentations' request hook: their client span's URL through
    `redact_target` (the hook runs once they have set it, before the span ends)."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in _CLIENT_URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, redact_target(value))


async def redact_client_span_async(span: Any, *_: Any) -> None:
    """`redact_client_span` for httpx's asynchronous transport."""
    redact_client_span(span)


def _request_attributes(scope: Scope) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.method": scope["method"],
        "http.scheme": scope.get("scheme", "http"),
        "http.target": redact_target(scope["path"]),
        "http.flavor": scope.get("http_version", "1.1"),
    }
    server, client = scope.get("server"), scope.get("client")
    if server and server[1] is not None:  # a Unix socket's, or an ASGI test client's, has none
        attributes["net.host.port"] = server[1]
    if client:
        attributes["net.peer.ip"] = client[0]
    for name, value in scope["headers"]:
        if name == b"host":
            attributes["http.host"] = value.decode("latin-1")
        elif name == b"user-agent":
            attributes["http.user_agent"] = value.decode("latin-1")
    return attributes


def instrument_fastapi(app: Any, tracer_provider: Any = None) -> None:
    """Trace every request but the health and metrics probes (`ServerSpanMiddleware`, with the
    global provider unless one is given): the outermost of the app's own middleware, so a
    refusal of the edge and a 500 are traced too."""
    app.add_middleware(ServerSpanMiddleware, tracer_provider=tracer_provider)
    # FastAPI's own telemetry (0.16x) makes a server span of its own, outside every middleware,
    # as soon as a tracer provider is installed; it stands aside only for OpenTelemetry's ASGI
    # middleware. A second span per request, which the edge's case id never reaches: off. Its
    # switches are the constructor's `telemetry=` (`service_app` passes it); an app built
    # elsewhere (the web app) has them here.
    switches = getattr(app, "_telemetry", None)
    if isinstance(switches, dict):
        switches.update(NO_FASTAPI_TELEMETRY)


NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's `telemetry=` that switches its own off: the server span is `ServerSpanMiddleware`'s,
the request metrics are Prometheus's (`service_app`)."""


def _add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def add_case_id(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the `case_id` of the current context's baggage, if there is one
    (a value the call gave explicitly is kept)."""
    if CASE_LOG_FIELD not in event_dict:
        case_id = baggage.get_baggage(CASE_ID)
        if case_id is None:  # a span started for a case with `context=` (see CaseSpanProcessor)
            attributes = getattr(trace.get_current_span(), "attributes", None)
            case_id = attributes.get(CASE_ID) if attributes else None
        if case_id is not None:
            event_dict[CASE_LOG_FIELD] = case_id
    return event_dict


def configure_logging(service_name: str, *, level: str = "INFO", json: bool = True) -> None:
    """structlog (and the standard library's logging) as one stream of JSON lines on stdout,
    each with the service, the case id of the work in progress (`case_id`), and the trace and
    span ids of the current span when there is one."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        add_case_id,
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


def continue_trace(carrier: dict[str, str] | None, case_id: UUID | str | None = None) -> Any:
    """The OpenTelemetry context of a stored W3C carrier (trace context and baggage), on a
    fresh base: work picked up inside `untraced()` is traced again, as part of the trace that
    caused it, and about its case (`case_id`, when given, over the carrier's baggage)."""
    ctx = propagate.extract(carrier or {}, context=otel_context.Context())
    return ctx if case_id is None else with_case(case_id, ctx)
