"""The edge of every HTTP API: one ASGI middleware and two calls for the services' authentication
dependencies. See the package's docstring for what is limited and why.

    edge = Edge(streamed_bodies=["POST /v1/cases/{case_id}/documents"])
    app.add_middleware(EdgeMiddleware, edge=edge)

    # in an authentication dependency
    authenticated(request, f"key:{key_id}")             # may raise 429 TooManyRequests
    await authentication_failed(request, actor=f"center:{key_id}", sink=write_summaries)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

from fastapi import HTTPException, Request
from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common.api.problems import (
    ProblemError,
    TooManyRequests,
    problem_response,
    standard_type,
)
from referrals_common.auth.api_keys import InvalidApiKey, parse_api_key
from referrals_common.edge.audit import LOCKED_OUT, AuditSink, FailedAuthentications
from referrals_common.edge.ratelimit import RateLimits
from referrals_common.settings import HttpSettings, RateLimitSettings
from referrals_common.telemetry import CASE_ID, case_root, open_case_trace, with_case

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
"""Never limited: probes and Prometheus scrapes (they carry no credentials and read nothing)."""

MAX_TOKEN_CHARS = 4096
CASE_PATH = re.compile(
    r"/(cases|referrals)/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?:/|$)"
)
"""A path about one case (`…/cases/<case id>…`) or one referral (`…/referrals/<referral id>…`)."""
CREATED_CASE = re.compile(rb"/cases/([0-9a-fA-F-]{36})$")
"""The `Location` of a case a request created (`201 Created`)."""
REFERRAL_CACHE_SIZE = 10_000

CaseOfReferral = Callable[[Any, UUID], Awaitable[UUID | None]]
"""The case of a referral id, looked up in a service's own tables (given the app's state)."""
_CLAIMED = "referrals_edge_claimed"
_AUTHENTICATED = "referrals_edge_authenticated"


class TooManyFailedAuthentications(TooManyRequests):
    """429: too many failed authentications from this address (or naming this credential from
    this address); nothing is checked until `Retry-After` seconds have passed."""

    type_slug = "too-many-failed-authentications"
    title = "Too many failed authentications"


class Edge:
    """The edge's state in one API process (`app.state.edge`): its rate limits, its tally of
    failed authentications, its body limits. Configured from the runtime's settings on the
    first request (`configure`), since a service builds its runtime in the app's lifespan."""

    def __init__(
        self, streamed_bodies: Iterable[str] = (), case_of_referral: CaseOfReferral | None = None
    ) -> None:
        self._streamed: list[tuple[str, re.Pattern[str]]] = []
        self.case_of_referral = case_of_referral
        # A referral's case never changes: found once, kept (the most recent ones).
        self._referral_cases: OrderedDict[UUID, str] = OrderedDict()
        for route in streamed_bodies:
            method, _, template = route.partition(" ")
            self._streamed.append((method.upper(), compile_path(template)[0]))
        self.limits: RateLimits | None = None
        self.failures: FailedAuthentications | None = None
        self.http = HttpSettings()
        self._flushing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def configured(self) -> bool:
        return self.limits is not None

    def configure(
        self, rate_limit: RateLimitSettings | None = None, http: HttpSettings | None = None
    ) -> None:
        """Start counting under these limits (the defaults when not given)."""
        rate_limit = rate_limit or RateLimitSettings()
        self.limits = RateLimits(rate_limit)
        self.failures = FailedAuthentications(rate_limit.audit_window_seconds)
        self.http = http or HttpSettings()

    def configure_from(self, app_state: Any) -> None:
        """Configure from `app_state.runtime.settings` (defaults for a runtime without)."""
        settings = getattr(getattr(app_state, "runtime", None), "settings", None)
        self.configure(getattr(settings, "rate_limit", None), getattr(settings, "http", None))

    def streams_body(self, method: str, path: str) -> bool:
        """Whether `method path` is a streamed upload, which keeps its own size limits."""
        return any(m == method and p.match(path) for m, p in self._streamed)

    async def case_of(self, path: str, app_state: Any) -> str | None:
        """The case a request is about, from its path: the case id of `…/cases/<id>`, or the
        case of the referral of `…/referrals/<id>` (when the service can say,
        `case_of_referral`); None for anything else."""
        found = CASE_PATH.search(path)
        if found is None:
            return None
        kind, value = found.groups()
        if kind == "cases":
            return value.lower()
        if self.case_of_referral is None:
            return None
        referral_id = UUID(value)
        cached = self._referral_cases.get(referral_id)
        if cached is not None:
            self._referral_cases.move_to_end(referral_id)
            return cached
        try:
            case_id = await self.case_of_referral(app_state, referral_id)
        except Exception:  # a label for traces and logs: never the reason a request fails
            return None
        if case_id is None:  # not (yet) known here: asked again next time
            return None
        self._referral_cases[referral_id] = str(case_id)
        if len(self._referral_cases) > REFERRAL_CACHE_SIZE:
            self._referral_cases.popitem(last=False)
        return str(case_id)

    # ---------------------------------------------------------------- flushing
    def start_flushing(self) -> None:
        """Write finished windows of failed authentications every window, until `close()`."""
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            window = self.failures.window_seconds if self.failures else 60.0
            await asyncio.sleep(window)
            if self.failures is not None:
                await self.failures.flush()

    async def close(self) -> None:
        """Stop the periodic writes and write every count still in memory."""
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
            self._flushing = None
        if self.failures is not None:
            await self.failures.flush(everything=True)

    async def flush(self, *, everything: bool = True) -> int:
        """Write the failed authentications counted so far (tests, shutdown)."""
        return await self.failures.flush(everything=everything) if self.failures else 0


def client_ip(scope: Scope) -> str:
    """The caller's address: the peer, or what a trusted proxy said (uvicorn's proxy_headers)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def claimed_credential(headers: Headers) -> str | None:
    """Who the request says it is, before anything is verified: `key:<key id>` for an API key
    of our shape (the key id is not secret), `case:<subject>` for a Bearer token's subject;
    None for anything else. Only ever used to *refuse* early or to count failures: a request
    is charged to a caller only once its credential was verified (`authenticated`)."""
    presented = headers.get("x-api-key")
    if presented:
        try:
            return "key:" + parse_api_key(presented).key_id
        except InvalidApiKey:
            return None
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() != "bearer ":
        return None
    token = authorization[7:].strip()
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(subject, str) and 0 < len(subject) <= 64:
        return "case:" + subject
    return None


def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    if not edge.configured:
        edge.configure_from(request.app.state)
    return edge


def authenticated(request: Request, credential: str) -> None:
    """The request proved it is `credential` (`key:<key id>`, `case:<case id>`): spend one
    of that caller's requests, or refuse with 429 and `Retry-After` when none is left."""
    state = request.scope.setdefault("state", {})
    if state.get(_AUTHENTICATED) == credential:
        return
    state[_AUTHENTICATED] = credential
    edge = _edge(request)
    assert edge.limits is not None
    wait = edge.limits.spend_client(credential)
    if wait is not None:
        raise TooManyRequests(
            f"Too many requests for this credential; try again in {wait} seconds.",
            retry_after=wait,
        )


async def authentication_failed(request: Request, *, actor: str, sink: AuditSink) -> None:
    """The request's credential was refused (malformed, unknown, wrong secret, revoked, an
    invalid token): count it towards the lockout of its address and of the credential it named
    from that address, and towards the access audit's summary row of `actor` (written through
    `sink` once per window). Missing credentials are not failures."""
    edge = _edge(request)
    assert edge.limits is not None
    assert edge.failures is not None
    ip = client_ip(request.scope)
    claimed = request.scope.get("state", {}).get(_CLAIMED)
    edge.limits.failed(ip, claimed)
    edge.failures.sink = sink
    edge.failures.add(actor, ip)
    if edge.failures.due:
        await edge.failures.flush()


class _BodyRefused(HTTPException):
    """Raised from `receive` into the app: FastAPI passes HTTPExceptions from body parsing
    through, and the problem handlers answer them as problems of their status."""


def _too_large(limit: int) -> _BodyRefused:
    return _BodyRefused(
        413,
        f"The request body is larger than {limit} bytes, the most this endpoint accepts.",
        headers={"Connection": "close"},
    )


def _too_slow(reason: str) -> _BodyRefused:
    return _BodyRefused(
        408,
        f"The request body {reason}; the connection is closed. Send it again.",
        headers={"Connection": "close"},
    )


def _guarded(receive: Receive, limit: int | None, http: HttpSettings) -> Receive:
    """`receive` that refuses a body over `limit` bytes (413) and one that stalls or trickles
    (408), both before the app has it all; once the body is complete it is `receive` itself
    (waiting for a disconnect may take as long as it likes)."""
    received = 0
    started: float | None = None
    done = False

    async def guarded() -> Message:
        nonlocal received, started, done
        if done:
            return await receive()
        if started is None:
            started = time.monotonic()
        try:
            # A deadline on this task, not wait_for's task of its own around each message.
            async with asyncio.timeout(http.body_idle_timeout_seconds):
                message = await receive()
        except TimeoutError:
            raise _too_slow(
                f"sent nothing for {http.body_idle_timeout_seconds:g} seconds"
            ) from None
        if message["type"] != "http.request":
            done = True
            return message
        received += len(message.get("body", b""))
        if limit is not None and received > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            done = True
            return message
        elapsed = time.monotonic() - started
        rate = http.body_min_bytes_per_second
        if rate and elapsed > http.body_grace_seconds and received < rate * elapsed:
            raise _too_slow(f"arrives slower than {rate} bytes a second")
        return message

    return guarded


class EdgeMiddleware:
    """Refuses, before the app runs: a locked-out address or credential (429
    `too-many-failed-authentications`), a caller or address over its rate (429
    `too-many-requests`), a declared body over the limit (413); while it runs, a body that grows
    over the limit (413) or stalls or trickles (408). `/health` and `/metrics` pass untouched.
    """

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self.app = app
        self.edge = edge

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: ProblemError
    ) -> None:
        response = problem_response(error.to_problem(scope["path"]), headers=error.headers)
        await response(scope, receive, send)

    def _admit(self, ip: str, claimed: str | None) -> ProblemError | None:
        limits = self.edge.limits
        assert limits is not None
        wait = limits.locked_out(ip, claimed)
        if wait is not None:
            if self.edge.failures is not None:
                self.edge.failures.add(f"lockout:{claimed or 'address'}", ip, LOCKED_OUT)
            return TooManyFailedAuthentications(
                "Too many failed authentications from this address; nothing is checked until "
                f"{wait} seconds have passed.",
                retry_after=wait,
            )
        if claimed is not None:
            # Charged after the app ran: to the caller if it authenticated, else to the address.
            wait = limits.client_exhausted(claimed) or limits.ip_exhausted(ip)
        else:
            wait = limits.spend_ip(ip)
        if wait is not None:
            return TooManyRequests(
                f"Too many requests; try again in {wait} seconds.", retry_after=wait
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        edge = self.edge
        if not edge.configured:
            edge.configure_from(scope["app"].state if "app" in scope else None)
        assert edge.limits is not None
        headers = Headers(scope=scope)
        ip = client_ip(scope)
        claimed = claimed_credential(headers)
        refusal = self._admit(ip, claimed)
        if refusal is not None:
            await self._refuse(scope, receive, send, refusal)
            if edge.failures is not None and edge.failures.due:
                await edge.failures.flush()
            return
        limit = (
            None if edge.streams_body(scope["method"], scope["path"]) else edge.http.max_body_bytes
        )
        declared = headers.get("content-length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, _problem_of(_too_large(limit)))
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state[_CLAIMED] = claimed
        server = trace.get_current_span()  # the request's span (its instrumentation is outside)
        case_id = await edge.case_of(scope["path"], scope["app"].state if "app" in scope else None)
        token = None
        if case_id is not None:
            _about_case(server, case_id)
            token = otel_context.attach(with_case(case_id))
        elif scope["method"] == "POST":
            send = _noting_created_case(send, server)
        try:
            await self.app(scope, _guarded(receive, limit, edge.http), send)
        finally:
            if token is not None:
                otel_context.detach(token)
            if claimed is not None and _AUTHENTICATED not in state:
                edge.limits.spend_ip(ip)


def _about_case(span: trace.Span, case_id: str) -> None:
    """Mark a request's span as about `case_id` and link it to the case's root trace."""
    span.set_attribute(CASE_ID, case_id)
    if span.is_recording():
        root = case_root(case_id)
        if span.get_span_context().trace_id != root.trace_id:
            span.add_link(root)


def _noting_created_case(send: Send, server: trace.Span) -> Send:
    """`send` that notices a case being created (`201` with `Location: …/cases/<id>`): the
    request's span is marked as about it, and the case's root trace starts, linked to it."""

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 201:
            for name, value in message.get("headers", ()):
                if name.lower() == b"location" and (created := CREATED_CASE.search(value)):
                    case_id = created.group(1).decode().lower()
                    _about_case(server, case_id)
                    open_case_trace(case_id, cause=server.get_span_context())
                    break
        await send(message)

    return noting


def _problem_of(error: HTTPException) -> ProblemError:
    slug, title = standard_type(error.status_code)
    return ProblemError(
        str(error.detail),
        status=error.status_code,
        type_slug=slug,
        title=title,
        headers=error.headers,
    )
