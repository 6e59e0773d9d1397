"""`X-Request-ID`: one id per HTTP request that the caller and our logs share.

A caller may send its own (`X-Request-ID: <1-128 of A-Z a-z 0-9 . _ : -; no other character>`),
so its logs and ours name the request alike; anything else (none, too long, other characters) is
replaced by a new id, never refused. Every answer carries it back in `X-Request-ID` (a refusal of
the edge and a 500 too), every log line written while the request runs has it as `request_id`,
and the request's span as the attribute `http.request.header.x-request-id`.
"""

from __future__ import annotations

import os
import re

import structlog
from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
LOG_FIELD = "request_id"
SPAN_ATTRIBUTE = "http.request.header.x-request-id"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(headers: Headers) -> str:
    """The caller's request id when it is one we accept, else a new one."""
    return _accepted_or_new(headers.get(HEADER, ""))


def _accepted_or_new(given: str) -> str:
    return given if _ACCEPTED.fullmatch(given) else os.urandom(16).hex()


_HEADER_NAME = HEADER.lower().encode("latin-1")


def _request_id_of_scope(scope: Scope) -> str:
    """`request_id_of` the request's headers, read from the scope as they are (no `Headers`)."""
    for name, value in scope["headers"]:
        if name == _HEADER_NAME:
            return _accepted_or_new(value.decode("latin-1"))
    return _accepted_or_new("")


class RequestIdMiddleware:
    """Gives each HTTP request its id (the caller's or a new one), logs and traces under it, and
    echoes it on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_of_scope(scope)
        scope.setdefault("state", {})[LOG_FIELD] = request_id
        trace.get_current_span().set_attribute(SPAN_ATTRIBUTE, request_id)

        async def echo(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(**{LOG_FIELD: request_id}):
            await self.app(scope, receive, echo)
