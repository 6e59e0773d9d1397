"""Bootstrap: builds the web application's parts from settings, once, when the process starts
(nothing connects at import). `create_app()` is the ASGI application; `app_from_environment()`
the factory `python -m referrals_web serve` runs.

Every request first meets the platform's edge (`referrals_common.edge`: rate limits per address
or per session, body limits, slow bodies), then the session middleware (the cookie's session
loaded before the page, saved with its answer), then the page. The center console (/center…)
and the ops screen (/ops…) have sessions of their own realm and cookie (`sessions.STAFF`,
`sessions.OPS`), never a patient's nor each other's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common import metrics
from referrals_common.edge import Edge, EdgeMiddleware
from referrals_common.telemetry import instrument_fastapi, note_request_case
from referrals_web.bootstrap import Runtime, build_runtime
from referrals_web.config import WebSettings
from referrals_web.realms import CONSOLE_PREFIX, OPS_PREFIX
from referrals_web.sessions import Sessions

MIGRATIONS = Path(__file__).parent / "migrations"
STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_ROUTES = (
    "POST /case/documents",
    "PUT /case/uploads/{upload_id}/parts/{number}",  # records bounds a part: its declared size
    "POST /center/referrals/{referral_id}/opinion",
    "PUT /center/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{number}",
    "POST /center/referrals/{referral_id}/follow-up/{question_id}",  # up to 5 documents
)
log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class PagesEdge(EdgeMiddleware):
    """The platform's edge, but static files (the pages' own CSS and scripts) pass untouched:
    they would spend a visitor's requests several times per page."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _untouched(path: str) -> bool:
    return path.startswith("/static/") or path in ("/health", "/metrics")


class SessionMiddleware:
    """Loads the cookie's session before the page (`scope["state"]["web_session"]`) and, as
    the answer starts, saves it if it changed and sets the cookie (HttpOnly, SameSite=Lax,
    Secure outside development). Adds the pages' security headers. The console's pages read
    and set the staff cookie (Path=/center) only, the ops screen's the ops cookie (Path=/ops)
    only; every other page the patient's only. The request's span is marked as about the
    session's case, if it has one (`note_request_case`), so the web app's spans and its calls
    to the platform are found by the case id like the services'."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _untouched(scope["path"]):
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        sessions = runtime.sessions_of(scope["path"])
        key = HTTPConnection(scope).cookies.get(sessions.cookie_name)
        state = scope.setdefault("state", {})
        state["web_session"] = await sessions.load(key) if key else None
        if state["web_session"] is not None and state["web_session"].case_id is not None:
            note_request_case(state["web_session"].case_id)

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                session = state.get("web_session")
                if state.get("web_session_ended"):
                    headers.append("Set-Cookie", _cookie("", runtime, sessions, max_age=0))
                elif session is not None and session.changed:
                    await sessions.save(session)
                    headers.append("Set-Cookie", _cookie(session.key, runtime, sessions))
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_session)


def _cookie(value: str, runtime: Runtime, sessions: Sessions, *, max_age: int | None = None) -> str:
    age = max_age if max_age is not None else runtime.settings.session_idle_minutes * 60
    path = {id(runtime.staff_sessions): CONSOLE_PREFIX, id(runtime.ops_sessions): OPS_PREFIX}.get(
        id(sessions), "/"
    )
    parts = [
        f"{sessions.cookie_name}={value}",
        f"Path={path}",
        f"Max-Age={age}",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if runtime.settings.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def create_app(settings: WebSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The web application; `runtime` (tests) is used as is and left open for its owner."""
    from referrals_web.pages import install_error_pages, router

    settings = runtime.settings if runtime is not None else (settings or WebSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime(settings)
        app.state.runtime = rt
        edge.configure_from(app.state)
        try:
            yield
        finally:
            if runtime is None:
                await rt.close()

    edge = Edge(UPLOAD_ROUTES)
    app = FastAPI(
        title="Second opinion on cancer",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.edge = edge
    if runtime is not None:  # routes may run without the lifespan (tests' clients)
        app.state.runtime = runtime
    app.include_router(router)
    install_error_pages(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    vendor = settings.vendor_dir
    if vendor is not None and Path(vendor).is_dir():  # before /static, which would take it
        app.mount("/static/vendor", StaticFiles(directory=vendor), name="vendor")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SessionMiddleware)
    app.add_middleware(PagesEdge, edge=edge)
    instrument_fastapi(app)
    return app


def app_from_environment() -> FastAPI:
    return create_app(WebSettings())
