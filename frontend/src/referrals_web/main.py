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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common import metrics
from referrals_common.db import Database
from referrals_common.edge import Edge, EdgeMiddleware
from referrals_common.telemetry import instrument_fastapi, note_request_case
from referrals_web.config import WebSettings
from referrals_web.mail import CodeMailer, SmtpCodeMailer
from referrals_web.models import staff_login_codes
from referrals_web.one_time_codes import SendLimit
from referrals_web.platform import Platform
from referrals_web.rendering import Renderer
from referrals_web.repository import (
    CaseDirectory,
    CenterKeyStore,
    ConsoleAudit,
    LoginCodeStore,
    MemoryCaseDirectory,
    MemoryCenterKeyStore,
    MemoryConsoleAudit,
    MemoryLoginCodeStore,
    MemoryOpsAudit,
    MemorySessionStore,
    MemoryStaffDirectory,
    OpsAudit,
    PostgresCaseDirectory,
    PostgresCenterKeyStore,
    PostgresConsoleAudit,
    PostgresLoginCodeStore,
    PostgresOpsAudit,
    PostgresSessionStore,
    PostgresStaffDirectory,
    SessionStore,
    StaffDirectory,
)
from referrals_web.sessions import OPS, STAFF, Sessions
from referrals_web.sms import CodeTexter, texter_from_settings
from referrals_web.staff import CenterKeys

MIGRATIONS = Path(__file__).parent / "migrations"
STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_ROUTES = (
    "POST /case/documents",
    "PUT /case/uploads/{upload_id}/parts/{number}",  # records bounds a part: its declared size
    "POST /center/referrals/{referral_id}/opinion",
    "PUT /center/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{number}",
    "POST /center/referrals/{referral_id}/follow-up/{question_id}",  # up to 5 documents
)
CONSOLE_PREFIX = "/center"
OPS_PREFIX = "/ops"
log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class Runtime:
    settings: WebSettings
    platform: Platform
    sessions: Sessions
    codes: LoginCodeStore
    directory: CaseDirectory
    mailer: CodeMailer
    renderer: Renderer
    staff_sessions: Sessions
    staff: StaffDirectory
    staff_codes: LoginCodeStore
    center_keys: CenterKeys
    console_audit: ConsoleAudit
    ops_sessions: Sessions
    ops_audit: OpsAudit
    code_sends: SendLimit
    """How many patient sign-in codes each case may be sent (`login_codes_per_hour`)."""
    db: Database | None = None
    texter: CodeTexter | None = None
    """Sign-in codes by text message; None when no SMS account is configured."""

    def sessions_of(self, path: str) -> Sessions:
        """The console's sessions for /center…, the ops screen's for /ops…, the patients' for
        every other page."""
        if is_console(path):
            return self.staff_sessions
        if is_ops(path):
            return self.ops_sessions
        return self.sessions

    @property
    def htmx(self) -> bool:
        vendor = self.settings.vendor_dir
        return bool(vendor and (vendor / "htmx.min.js").is_file())

    async def close(self) -> None:
        await self.platform.close()
        close_texter = getattr(self.texter, "aclose", None)
        if close_texter is not None:
            await close_texter()
        if self.db is not None:
            await self.db.dispose()


def build_runtime(
    settings: WebSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    session_store: SessionStore | None = None,
    codes: LoginCodeStore | None = None,
    directory: CaseDirectory | None = None,
    mailer: CodeMailer | None = None,
    renderer: Renderer | None = None,
    staff: StaffDirectory | None = None,
    staff_codes: LoginCodeStore | None = None,
    center_keys: CenterKeyStore | None = None,
    console_audit: ConsoleAudit | None = None,
    ops_audit: OpsAudit | None = None,
    texter: CodeTexter | None = None,
) -> Runtime:
    """The runtime of one process; the stores are PostgreSQL unless given (tests give memory)."""
    given = (
        session_store,
        codes,
        directory,
        staff,
        staff_codes,
        center_keys,
        console_audit,
        ops_audit,
    )
    db = Database(settings.postgres) if any(store is None for store in given) else None

    def database() -> Database:
        assert db is not None  # made above, as a store is missing
        return db

    secret = settings.session_secret.get_secret_value()
    store = session_store or PostgresSessionStore(database())
    idle = timedelta(minutes=settings.session_idle_minutes)
    return Runtime(
        settings=settings,
        platform=Platform(settings, transport=transport),
        sessions=Sessions(store, secret, idle=idle),
        codes=codes or PostgresLoginCodeStore(database()),
        directory=directory or PostgresCaseDirectory(database()),
        mailer=mailer or SmtpCodeMailer(settings.smtp),
        renderer=renderer or Renderer(),
        staff_sessions=Sessions(store, secret, idle=idle, realm=STAFF, default_locale="en"),
        staff=staff or PostgresStaffDirectory(database()),
        staff_codes=staff_codes or PostgresLoginCodeStore(database(), staff_login_codes),
        center_keys=CenterKeys(center_keys or PostgresCenterKeyStore(database()), secret),
        console_audit=console_audit or PostgresConsoleAudit(database()),
        ops_sessions=Sessions(store, secret, idle=idle, realm=OPS, default_locale="en"),
        ops_audit=ops_audit or PostgresOpsAudit(database()),
        code_sends=SendLimit(settings.login_codes_per_hour),
        db=db,
        texter=texter
        or texter_from_settings(
            settings.sms, settings.environment, settings.outbound_allowed_targets
        ),
    )


def memory_runtime(settings: WebSettings, **kwargs: Any) -> Runtime:
    """A runtime whose stores are in memory (tests, a demo without a database)."""
    return build_runtime(
        settings,
        session_store=kwargs.pop("session_store", MemorySessionStore()),
        codes=kwargs.pop("codes", MemoryLoginCodeStore()),
        directory=kwargs.pop("directory", MemoryCaseDirectory()),
        staff=kwargs.pop("staff", MemoryStaffDirectory()),
        staff_codes=kwargs.pop("staff_codes", MemoryLoginCodeStore()),
        center_keys=kwargs.pop("center_keys", MemoryCenterKeyStore()),
        console_audit=kwargs.pop("console_audit", MemoryConsoleAudit()),
        ops_audit=kwargs.pop("ops_audit", MemoryOpsAudit()),
        **kwargs,
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


def is_console(path: str) -> bool:
    """Whether `path` is a page of the center console (its own session realm and cookie)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def is_ops(path: str) -> bool:
    """Whether `path` is a page of the ops screen (its own session realm and cookie)."""
    return path == OPS_PREFIX or path.startswith(OPS_PREFIX + "/")


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
