"""What every service's bootstrap does the same way: logging and tracing for a process, its
database migrations, and the FastAPI application around its router.

A service keeps only what is its own: its `Runtime`, built from settings by its `bootstrap.py`, and
its app factory and processes' entry points in `main.py`. The HTTP app made here documents itself
the same way in every service (`/openapi.json`, checked by Spectral's `spectral:oas` ruleset in
tests/contracts): each operation's id is its route function's name in camelCase (`create_case` →
`createCase`, unique in the service), each is tagged with its audience (`ApiTag`, matched by path),
`servers` is the service's `public_base_url`, and contact and licence are the platform's. It
installs RFC 9457 problem handlers, `/health` and `/metrics` (Prometheus) endpoints outside the
schema, without authentication and without traces, a request latency histogram by route template,
the request's `X-Request-ID` on its answer and log lines (`edge.request_id`), the documentation
pages `/docs` and `/redoc` with their assets served by the service itself (`api.docs`: no CDN), and
the OpenTelemetry instrumentation; it builds the runtime in the app's lifespan (nothing connects at
import); a runtime passed in (tests) is used as is and left open for its owner. Every request first
meets the edge (`referrals_common.edge`): rate limits, lockout after failed authentications, body
limits."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common import heap, metrics
from referrals_common.api.cors import CaseTokenCors
from referrals_common.api.docs import serve_docs
from referrals_common.api.problems import install_problem_handlers
from referrals_common.edge import Edge, EdgeMiddleware
from referrals_common.edge.request_id import HEADER as REQUEST_ID
from referrals_common.edge.request_id import RequestIdMiddleware
from referrals_common.settings import ServiceSettings
from referrals_common.telemetry import (
    NO_FASTAPI_TELEMETRY,
    configure_logging,
    configure_telemetry,
    instrument_fastapi,
    untraced,
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
"""The `route` label of a request no route matched (404s for any path count as one series)."""

CASE_TOKEN_PATHS = ("/v1/cases/",)
"""The paths a case token opens, on every service: the only ones a partner's single-page app
may call from a browser (CORS, per front-end client's origins)."""


CONTACT = {"name": "The referrals platform's maintainers"}
LICENSE = {"name": "Apache 2.0", "identifier": "Apache-2.0"}


@dataclass(frozen=True)
class ApiTag:
    """An OpenAPI tag: who an operation is for (`front-end`, `centers`, `operators`, …). Every
    documented route whose path starts with one of `paths` carries it (the first tag that
    matches); a generated client groups its operations by it."""

    name: str
    description: str
    paths: tuple[str, ...]


def operation_id(route: APIRoute) -> str:
    """The route's operationId: its function's name in camelCase (`answer_follow_up` →
    `answerFollowUp`), stable as long as the function keeps its name."""
    head, *rest = route.name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _document_operations(router: APIRouter, tags: Sequence[ApiTag]) -> None:
    """Check that the router's operation ids are unique and give each documented route its
    audience's tag; a route no tag matches is a mistake of the service, refused when the app is
    built. (On the router's own routes, before the app includes it: the app derives its routes
    from them.)"""
    routes = [r for r in router.routes if isinstance(r, APIRoute) and r.include_in_schema]
    twice = [i for i, n in Counter(map(operation_id, routes)).items() if n > 1]
    if twice:
        raise ValueError(f"operation ids used by more than one route: {sorted(twice)}")
    if not tags:
        return
    untagged = []
    for route in routes:
        if route.tags:
            continue
        found = next((t for t in tags if any(route.path.startswith(p) for p in t.paths)), None)
        if found is None:
            untagged.append(route.path)
        else:
            route.tags = [found.name]
    if untagged:
        raise ValueError(f"routes that no ApiTag names: {sorted(set(untagged))}")


def _document_request_id(app: FastAPI) -> None:
    """Every answer of the document carries `X-Request-ID` (`referrals_common.edge.request_id`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {}).setdefault("headers", {})["RequestId"] = {
            "description": "The request's id: the caller's own `X-Request-ID` when it is 1-128 "
            "letters, digits and `._:-`, else one the service made; our logs name the request "
            "by it.",
            "schema": {"type": "string", "maxLength": 128},
        }
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for answer in operation.get("responses", {}).values():
                    answer.setdefault("headers", {})[REQUEST_ID] = {
                        "$ref": "#/components/headers/RequestId"
                    }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def setup_observability(service: str, settings: ServiceSettings) -> None:
    """Structured logs, traces and the metrics' `service` label for one process of `service`."""
    configure_logging(service, level=settings.telemetry.log_level, json=settings.telemetry.log_json)
    configure_telemetry(service)
    metrics.set_service(service)


class _RequestMetricsMiddleware:
    """Observes each HTTP request's duration under its method, route template and status.

    The template (`/v1/cases/{case_id}`) is the route the router matched, read from the scope
    once the app has answered, so the number of series stays bounded whatever paths clients
    send; unknown methods count as OTHER. A request that raised answers 500 (the problem
    middleware inside) and is counted so.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            metrics.HTTP_REQUEST_DURATION.labels(self.service, method, route, str(status)).observe(
                time.perf_counter() - started
            )


def migrate(settings: ServiceSettings, migrations_dir: Path) -> None:
    """Apply a service's migrations to its database."""
    from referrals_common.migrations import upgrade  # Alembic only where migrations run

    upgrade(settings.postgres.dsn.get_secret_value(), migrations_dir)


def _case_of_referral(table: type[Any]) -> Callable[[Any, UUID], Any]:
    async def case_of(app_state: Any, referral_id: UUID) -> UUID | None:
        # Once per referral and process (the edge keeps the answer): not worth a span.
        with untraced():
            async with app_state.runtime.db.unit_of_work() as uow:
                row = await uow.session.get(table, referral_id)
        return getattr(row, "case_id", None)

    return case_of


def create_service_app(
    *,
    title: str,
    description: str,
    router: APIRouter,
    build_runtime: Callable[[], Any],
    runtime: Any | None = None,
    service: str | None = None,
    streamed_bodies: Collection[str] = (),
    referral_table: type[Any] | None = None,
    tags: Sequence[ApiTag] = (),
    settings: ServiceSettings | None = None,
) -> FastAPI:
    """A service's HTTP API; `app.state.runtime` holds the runtime its routes use.

    `service` labels its metrics (default: the process's, set by `setup_observability`).
    `streamed_bodies` names the routes (`"POST /v1/cases/{case_id}/documents"`) that stream a
    large body and limit it themselves; every other route's body is limited by the edge to
    `settings.http.max_body_bytes`. The edge (`app.state.edge`) takes its limits from the
    runtime's `settings.rate_limit` and `settings.http`. `referral_table` (a table keyed by
    referral id with a `case_id` column) tells the edge the case of a `…/referrals/<id>` path,
    so those requests' spans and logs carry the case id too. `tags` say whom each route is for
    (every documented route must match one). The OpenAPI `servers` entry is the
    `public_base_url` of `settings` (or of the runtime's), where integrators reach the API;
    without one, `/` (relative to the document, wherever it was fetched from)."""
    edge = Edge(
        streamed_bodies,
        case_of_referral=None if referral_table is None else _case_of_referral(referral_table),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime()
        app.state.runtime = rt
        edge.configure_from(app.state)
        edge.start_flushing()
        settling = heap.settle_soon()  # turned on by the `api` command (uvicorn's workers)
        try:
            yield
        finally:
            if settling is not None:
                settling.cancel()
            # Failed authentications still counted are audited while the database is open.
            await edge.close()
            if runtime is None:
                await rt.db.dispose()

    known = settings or getattr(runtime, "settings", None)
    public_url = getattr(known, "public_base_url", None)
    app = FastAPI(
        title=title,
        version="1.0.0",
        description=description,
        lifespan=lifespan,
        contact=CONTACT,
        license_info=LICENSE,
        openapi_tags=[{"name": t.name, "description": t.description} for t in tags],
        servers=[
            {"url": str(public_url).rstrip("/") or "/", "description": "This API"}
            if public_url
            else {"url": "/", "description": "This API, where this document was served"}
        ],
        generate_unique_id_function=operation_id,
        docs_url=None,  # FastAPI's own pages load their assets from a CDN: ours are served here
        redoc_url=None,
        # Requests are traced by `instrument_fastapi` (one server span) and measured by
        # Prometheus: FastAPI's own telemetry would make a second span and histograms.
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    serve_docs(app)
    app.state.edge = edge
    install_problem_handlers(app)
    _document_operations(router, tags)
    app.include_router(router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    # Outside the problem middleware (it answers its own problems), inside the metrics: a
    # refused request is measured like any other (route `unmatched`, its 429 or 413).
    app.add_middleware(EdgeMiddleware, edge=edge)
    # Added after the problem middleware, so it sees the 500 that middleware answers.
    app.add_middleware(_RequestMetricsMiddleware, service=service or metrics.service_name())
    # Outside the edge: a preflight carries no credential and is answered before any limit.
    app.add_middleware(
        CaseTokenCors,
        origins=getattr(known, "front_end_origins", None) or {},
        paths=CASE_TOKEN_PATHS,
    )
    # Outermost of ours: every answer (a refusal of the edge, a 500) carries the request's id,
    # and every log line written for the request has it.
    app.add_middleware(RequestIdMiddleware)
    _document_request_id(app)
    instrument_fastapi(app)
    return app
