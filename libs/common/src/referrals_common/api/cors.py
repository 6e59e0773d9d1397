"""CORS for partner single-page apps that call the APIs directly with a case token.

Each front-end client (an API key id, the `cid` of the case tokens issued through it) may name
the web origins its single-page app runs on; by default none does, and then no browser page of
another origin can read any answer. The rules:

- Only the paths a case token opens (`paths`, e.g. `/v1/cases/`) take part; every other path
  answers as if CORS did not exist (no `Access-Control-*` header).
- A preflight (`OPTIONS` with `Access-Control-Request-Method`) cannot carry the token, so it is
  answered for an origin some front end listed, a method the APIs use and request headers from
  `allowed_headers` (never `X-Api-Key`: a front end's API key stays on its server); anything else
  is a 403 problem `cors-preflight-refused` without CORS headers, and the browser sends nothing.
- An actual request gets `Access-Control-Allow-Origin` only when its bearer token was issued
  through a front end that listed that very origin: one partner's origin cannot read answers to
  another partner's patients even with a token it got hold of. The `cid` is read without
  checking the signature here, because the route checks the token itself and a forged `cid`
  buys only the reading of that route's 401.
- No credentials mode (a bearer token, not cookies); `Vary: Origin` on every answer it shapes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import jwt
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common.api.problems import PROBLEM_TYPE_BASE, Problem, problem_response
from referrals_common.settings import FrontEndOrigins, Origin

__all__ = ["CaseTokenCors", "FrontEndOrigins", "Origin"]

REFUSED_SLUG = "cors-preflight-refused"

DEFAULT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_HEADERS = ("authorization", "content-type", "idempotency-key", "last-event-id")
EXPOSED_HEADERS = ("Location", "Retry-After", "X-Request-ID", "Idempotent-Replayed")
MAX_AGE_SECONDS = 600


class CaseTokenCors:
    """The ASGI middleware applying the rules above."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Mapping[str, Collection[str]],
        paths: Sequence[str],
        allowed_headers: Collection[str] = DEFAULT_HEADERS,
        allowed_methods: Collection[str] = DEFAULT_METHODS,
    ) -> None:
        self.app = app
        self.by_client = {client: frozenset(found) for client, found in origins.items()}
        self.any_client: frozenset[str] = frozenset().union(*self.by_client.values())
        self.paths = tuple(paths)
        self.headers = frozenset(h.lower() for h in allowed_headers)
        self.methods = frozenset(m.upper() for m in allowed_methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, headers, origin)(scope, receive, send)
            return
        allowed = origin in self.by_client.get(_token_client(headers) or "", ())

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                shaped = MutableHeaders(scope=message)
                shaped.add_vary_header("Origin")
                if allowed:
                    shaped["Access-Control-Allow-Origin"] = origin
                    shaped["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, scope: Scope, headers: Headers, origin: str) -> ASGIApp:
        method = headers["access-control-request-method"].upper()
        asked = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        if origin not in self.any_client:
            why = "This origin is not allowed to call this API from a browser."
        elif method not in self.methods:
            why = f"{method} is not a method this API takes from a browser."
        elif not asked <= self.headers:
            refused = ", ".join(sorted(asked - self.headers))
            why = f"These headers are not allowed from a browser: {refused}."
        else:
            return _preflight_answer(origin, self.methods, asked)
        return problem_response(
            Problem(
                type=PROBLEM_TYPE_BASE + REFUSED_SLUG,
                title="Cross-origin request refused",
                status=403,
                detail=why,
                instance=scope["path"],
            ),
            headers={"Vary": "Origin"},
        )


def _preflight_answer(origin: str, methods: Collection[str], asked: Collection[str]) -> ASGIApp:
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
            "Access-Control-Allow-Headers": ", ".join(sorted(asked or {"authorization"})),
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            "Vary": "Origin",
        },
    )


def _token_client(headers: Headers) -> str | None:
    """The `cid` claim of the request's bearer token, unverified (see the module's note)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    client = claims.get("cid")
    return client if isinstance(client, str) else None
