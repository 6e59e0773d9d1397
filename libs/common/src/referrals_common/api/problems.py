"""RFC 9457 problem details: the one shape of every error response of every service.

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/v1/cases/{case_id}", responses=problem_responses(401, 404))
    async def get_case(case_id: UUID) -> Case:
        raise NotFound(f"There is no case {case_id}.")

Every error leaves as `application/problem+json`, whoever raised it: our code (`ProblemError`
and its subclasses), request validation (422), the framework (404 for an unknown route, 405), a
fault of the infrastructure (503 with `Retry-After`: the database or object store is away, the
transaction was rolled back, the same request may be retried) or a bug (500, logged with its
traceback, the body says nothing about the cause).

Problem types. `type` is always `https://referrals.example/problems/<slug>`, never `about:blank`:
one convention, so a client can switch on `type` alone whether the error came from our code
(`consent-missing`) or from the framework (`not-found`, `method-not-allowed`). The URIs identify
a type; they are not promised to resolve. `title` is the same for every occurrence of a type,
`detail` explains this occurrence, `instance` is the request path (without the query string,
which may carry personal data). A service defines its own type by subclassing:

    class ConsentMissing(Conflict):
        type_slug = "consent-missing"
        title = "Consent has not been recorded"

Field errors. The extension member `errors` lists what is wrong with the request, one entry each:

* body: `pointer` is an RFC 6901 JSON pointer into the JSON body (`/contact/phone`,
  `/documents/0/kind`); the empty pointer `""` is the body as a whole;
* query, path, header, cookie: `#/<location>/<name>` (`#/header/idempotency-key`,
  `#/query/limit`), a pointer into the request's parameters; the `#` keeps it apart from body
  pointers, and `location` says the same in one word.

`message` is for people and never repeats the submitted value (it may be a secret or personal
data); `code` is for programs (pydantic's error type, such as `missing` or `string_too_short`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from referrals_common.faults import causes, is_infrastructure_fault, sqlstates
from referrals_common.telemetry import redact_target

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://referrals.example/problems/"

_SCHEMA_REF = "#/components/schemas/"

Location = Literal["body", "query", "path", "header", "cookie"]
_PARAMETER_LOCATIONS: frozenset[str] = frozenset({"query", "path", "header", "cookie"})

# Slugs and titles of the statuses we send. Spelled out rather than taken from HTTPStatus,
# whose phrases differ between Python versions (413 and 422 were renamed by RFC 9110).
_STANDARD: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    406: ("not-acceptable", "Not Acceptable"),
    408: ("request-timeout", "Request Timeout"),
    409: ("conflict", "Conflict"),
    413: ("content-too-large", "Content Too Large"),
    415: ("unsupported-media-type", "Unsupported Media Type"),
    422: ("unprocessable-content", "Unprocessable Content"),
    429: ("too-many-requests", "Too Many Requests"),
    500: ("internal-error", "Internal Server Error"),
    503: ("service-unavailable", "Service Unavailable"),
}

VALIDATION_FAILED_SLUG = "validation-failed"
VALIDATION_FAILED_TITLE = "The request is not valid"
INTERNAL_ERROR_DETAIL = (
    "Something went wrong on our side. The error has been logged; please try again later."
)


def problem_type(slug: str) -> str:
    """The `type` URI of the problem type called `slug`."""
    return PROBLEM_TYPE_BASE + slug


def standard_type(status: int) -> tuple[str, str]:
    """The `(slug, title)` of the problem type we use for a bare HTTP `status`."""
    if status in _STANDARD:
        return _STANDARD[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"http-{status}", f"HTTP {status}"
    return "-".join(phrase.lower().replace("-", " ").split()), phrase


class FieldError(BaseModel):
    """One thing wrong with one part of the request."""

    pointer: str = Field(
        description=(
            "Where in the request: an RFC 6901 JSON pointer into the body ('/contact/phone', '' "
            "for the whole body), or '#/<location>/<name>' for a parameter "
            "('#/header/idempotency-key')."
        ),
        examples=["/contact/phone", "#/query/limit"],
    )
    location: Location = Field(description="The part of the request the pointer points into.")
    message: str = Field(description="What is wrong, for people; never repeats the value.")
    code: str = Field(
        description="What is wrong, for programs (pydantic's error type, or our own code).",
        examples=["missing", "string_too_short"],
    )


class Problem(BaseModel):
    """An RFC 9457 problem details object, with our `errors` extension member.

    Other extension members are kept (`extra="allow"`), so a client can parse any service's
    problem with this model without losing anything.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        default="about:blank",
        description=f"The problem type: a URI '{PROBLEM_TYPE_BASE}<slug>'.",
        examples=[PROBLEM_TYPE_BASE + "not-found"],
    )
    title: str = Field(description="Short summary of the problem type; the same every time.")
    status: int = Field(ge=100, le=599, description="The HTTP status code of this response.")
    detail: str | None = Field(default=None, description="What went wrong this time, for people.")
    instance: str | None = Field(
        default=None, description="The path of the request that had the problem."
    )
    errors: list[FieldError] | None = Field(
        default=None, description="What is wrong with which part of the request, one per item."
    )


def problem_response(problem: Problem, *, headers: Mapping[str, str] | None = None) -> Response:
    """The HTTP response carrying `problem`: its status, `application/problem+json`, members that
    are None left out, and `headers` added."""
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


class ProblemError(Exception):
    """An error that leaves the service as a problem details response.

    Raise a subclass (`NotFound("There is no case 3f2c….")`) or subclass one to name a problem
    type of your own (set `type_slug` and `title`). `detail` is shown to the caller: say what
    went wrong and what to do, never internals. `extensions` become extra members of the body.
    """

    status: int = 500
    title: str = "Internal Server Error"
    type_slug: str = "internal-error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        title: str | None = None,
        type_slug: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        if status is not None:
            self.status = status
            # A bare status borrows its standard type, unless the caller names another.
            if type_slug is None and title is None:
                self.type_slug, self.title = standard_type(status)
        if not 400 <= self.status <= 599:
            raise ValueError(f"a problem is an error: status {self.status} is not 4xx or 5xx")
        if title is not None:
            self.title = title
        if type_slug is not None:
            self.type_slug = type_slug
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions: dict[str, Any] = dict(extensions or {})
        clash = set(self.extensions) & set(Problem.model_fields)
        if clash:
            raise ValueError(f"extensions may not replace standard members: {sorted(clash)}")
        super().__init__(detail or self.title)

    def to_problem(self, instance: str | None = None) -> Problem:
        """The problem details of this error, for the request at path `instance`."""
        return Problem(
            type=problem_type(self.type_slug),
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
            **self.extensions,
        )


class BadRequest(ProblemError):
    """400: the request cannot be understood as sent (bad syntax, contradictory parameters)."""

    status = 400
    title = "Bad Request"
    type_slug = "bad-request"


class Unauthorized(ProblemError):
    """401: no credentials, or credentials we do not accept; answers with a Bearer challenge.

    `error` is the RFC 6750 error code for the challenge (`invalid_token` for an expired or
    forged token); the reason in words belongs in `detail`.
    """

    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"

    def __init__(
        self,
        detail: str | None = None,
        *,
        error: Literal["invalid_request", "invalid_token", "insufficient_scope"] | None = None,
        **kwargs: Any,
    ) -> None:
        challenge = "Bearer" if error is None else f'Bearer error="{error}"'
        headers = {"WWW-Authenticate": challenge, **dict(kwargs.pop("headers", None) or {})}
        super().__init__(detail, headers=headers, **kwargs)


class Forbidden(ProblemError):
    """403: the caller is known but may not do this (a token without the scope it needs)."""

    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(ProblemError):
    """404: there is no such resource, or the caller may not know that there is one."""

    status = 404
    title = "Not Found"
    type_slug = "not-found"


class RequestTimeout(ProblemError):
    """408: the request did not arrive in time (a body that trickled or stalled); the connection
    is closed. Send it again, faster."""

    status = 408
    title = "Request Timeout"
    type_slug = "request-timeout"


class Conflict(ProblemError):
    """409: the request clashes with the resource's current state (already submitted, reused
    idempotency key with a different body)."""

    status = 409
    title = "Conflict"
    type_slug = "conflict"


class PayloadTooLarge(ProblemError):
    """413: the body is larger than we accept: a document upload over its limit, or any other
    request's body over the API's limit (`referrals_common.edge`)."""

    status = 413
    title = "Content Too Large"
    type_slug = "content-too-large"


class UnsupportedMediaType(ProblemError):
    """415: the body is in a format we do not accept."""

    status = 415
    title = "Unsupported Media Type"
    type_slug = "unsupported-media-type"


class Unprocessable(ProblemError):
    """422: the request is well-formed but breaks a rule of the domain (consent for another
    country, a center that does not take this cancer type); pass `errors` to point at fields."""

    status = 422
    title = "Unprocessable Content"
    type_slug = "unprocessable-content"


class TooManyRequests(ProblemError):
    """429: the caller is over its rate limit; `retry_after` (seconds) sets `Retry-After`.

    `referrals_common.edge` answers it for a caller over its rate limit (`too-many-requests`)
    and, as `TooManyFailedAuthentications`, for a source locked out after repeated failed
    authentications."""

    status = 429
    title = "Too Many Requests"
    type_slug = "too-many-requests"

    def __init__(
        self, detail: str | None = None, *, retry_after: int | None = None, **kwargs: Any
    ) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        if retry_after is not None:
            headers["Retry-After"] = str(max(0, int(retry_after)))
        super().__init__(detail, headers=headers, **kwargs)


def _json_pointer(path: Iterable[str | int]) -> str:
    # RFC 6901: '~' and '/' inside a reference token are escaped, '~' first.
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _message(error: Mapping[str, Any], location: str, path: Sequence[Any]) -> str:
    kind = error.get("type")
    if kind == "json_invalid":
        # The parser's reason ("Expecting ',' delimiter") names no content; the position helps.
        reason = str((error.get("ctx") or {}).get("error", "")).strip()
        where = f" at character {path[0]}" if path and isinstance(path[0], int) else ""
        return f"The body is not valid JSON{where}" + (f": {reason}" if reason else "")
    if kind == "missing" and location == "body" and not path:
        return "A request body is required"
    message = str(error.get("msg") or "Invalid value")
    # pydantic prefixes the text of a ValueError or assert in a validator; people need the text.
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def field_errors(
    errors: Iterable[Mapping[str, Any]], *, location: Location | None = None
) -> list[FieldError]:
    """One `FieldError` per pydantic error, with its pointer, location, message and code.

    FastAPI's errors start their `loc` with the location (`("body", "contact", "phone")`); for a
    pydantic `ValidationError` of your own, whose `loc` starts inside the document, pass the
    `location` it was found in. The submitted values (`input`, `ctx`) are never copied.
    """
    result: list[FieldError] = []
    for error in errors:
        loc = tuple(error.get("loc") or ())
        where: str
        if location is not None:
            where, path = location, loc
        elif loc and loc[0] in _PARAMETER_LOCATIONS | {"body"}:
            where, path = str(loc[0]), loc[1:]
        else:
            where, path = "body", loc
        code = str(error.get("type") or "invalid")
        if code == "json_invalid":
            pointer = ""
        elif where == "body":
            pointer = _json_pointer(path)
        else:
            pointer = f"#/{where}{_json_pointer(path)}"
        result.append(
            FieldError(
                pointer=pointer,
                location=where,
                message=_message(error, where, path),
                code=code,
            )
        )
    return result


def _instance(request: Request) -> str:
    return request.url.path


async def _on_problem_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    if exc.status >= 500:
        path = redact_target(request.url.path)
        log.warning("%s %s answered %s: %s", request.method, path, exc.status, exc)
    return problem_response(exc.to_problem(_instance(request)), headers=exc.headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    count = len(errors)
    problem = Problem(
        type=problem_type(VALIDATION_FAILED_SLUG),
        title=VALIDATION_FAILED_TITLE,
        status=422,
        detail=(
            f"The request has {count} invalid or missing value{'' if count == 1 else 's'}; "
            "see errors for where and why."
        ),
        instance=_instance(request),
        errors=errors,
    )
    return problem_response(problem)


def _default_detail(request: Request, status: int, headers: Mapping[str, str]) -> str | None:
    if status == 404:
        return "There is nothing at this path."
    if status == 405:
        allowed = headers.get("Allow") or headers.get("allow")
        suffix = f"; use {allowed}" if allowed else ""
        return f"{request.method} is not allowed on this path{suffix}."
    return None


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    status = exc.status_code
    if status < 400 or status in (204, 304):
        # Not an error, and these statuses must not carry a body.
        return Response(status_code=status, headers=headers)
    slug, title = standard_type(status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = title
    # Starlette fills in the status phrase when no detail was given; that says nothing new.
    # A non-string detail (FastAPI allows any JSON) is dropped: raise a ProblemError instead.
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    problem = Problem(
        type=problem_type(slug),
        title=title,
        status=status,
        detail=detail or _default_detail(request, status, headers),
        instance=_instance(request),
    )
    return problem_response(problem, headers=headers)


NUL_SQLSTATES = frozenset({"22021", "22P05"})
"""PostgreSQL's refusals of U+0000 in text: invalid byte sequence, untranslatable character."""


def _refused_nul(exc: BaseException) -> bool:
    """Whether the database refused a text value because it holds U+0000, which PostgreSQL's
    text types cannot store: the client's input is at fault, not the service."""
    return any(state in NUL_SQLSTATES for state in sqlstates(exc))


def _standard_problem(
    request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The problem of a standard `status` type, with this occurrence's `detail`."""
    slug, title = standard_type(status)
    problem = Problem(
        type=problem_type(slug),
        title=title,
        status=status,
        detail=detail,
        instance=_instance(request),
    )
    return problem_response(problem, headers=headers)


UNAVAILABLE_RETRY_AFTER = 5
"""Seconds a client is asked to wait when a service's database or object store is away."""
UNAVAILABLE_DETAIL = (
    "The service cannot reach its storage right now; nothing was changed. "
    "Please try again in a few seconds."
)


def _unavailable(request: Request, exc: BaseException) -> Response:
    """503 for a fault of the infrastructure: the client may retry the same request (with the
    same Idempotency-Key where the route takes one); the transaction was rolled back."""
    # The error's types only: their messages may quote a statement, a URL or an object key.
    log.warning(
        "%s %s answered 503 (storage unavailable): %s",
        request.method,
        redact_target(request.url.path),
        " <- ".join(type(seen).__name__ for seen in causes(exc, limit=5)),
    )
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, "infrastructure unavailable"))
    return _standard_problem(
        request, 503, UNAVAILABLE_DETAIL, {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    )


def _internal_error(request: Request, exc: BaseException) -> Response:
    if is_infrastructure_fault(exc):
        return _unavailable(request, exc)
    if _refused_nul(exc):
        return _standard_problem(
            request, 422, "A text value holds the NUL character (U+0000), which is not accepted."
        )
    log.error(
        "unhandled %s in %s %s",
        type(exc).__name__,
        request.method,
        redact_target(request.url.path),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    return _standard_problem(request, 500, INTERNAL_ERROR_DETAIL)


async def _on_unhandled_error(request: Request, exc: Exception) -> Response:
    return _internal_error(request, exc)


class _UnhandledErrorMiddleware:
    """Turns an exception no handler took into a 500 problem, and ends it there.

    Starlette's own `Exception` handler runs in the outermost middleware and re-raises after
    answering, so every error would be logged twice (by us and by the server) and in-process
    test clients would raise instead of showing the response. Errors raised in middleware added
    before this one still reach the `Exception` handler installed as a fallback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:
            if started:
                # Half a response is out: the server can only drop the connection.
                raise
            response = _internal_error(Request(scope, receive), exc)
            await response(scope, receive, send)


def _problem_media(status: int) -> dict[str, Any]:
    slug, title = standard_type(status)
    example: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "instance": "/v1/cases/0b7d4c1e-5f1a-4d8e-9a53-2f0c6f1d9b2a",
    }
    if status == 422:
        example.update(
            type=problem_type(VALIDATION_FAILED_SLUG),
            title=VALIDATION_FAILED_TITLE,
            detail="The request has 1 invalid or missing value; see errors for where and why.",
            errors=[
                {
                    "pointer": "/contact/phone",
                    "location": "body",
                    "message": "String should have at least 6 characters",
                    "code": "string_too_short",
                }
            ],
        )
    elif status == 500:
        example["detail"] = INTERNAL_ERROR_DETAIL
    elif status == 503:
        example["detail"] = UNAVAILABLE_DETAIL
    return {"schema": {"$ref": _SCHEMA_REF + "Problem"}, "example": example}


_CHALLENGE_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The Bearer challenge (RFC 6750).",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying the same request again.",
            "schema": {"type": "integer"},
        }
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting a problem (`application/problem+json`, schema
    `Problem`, an example) for each of `statuses`.

    The `Problem` schema is added to the document by `install_problem_handlers`, which must be
    installed on the app for the references to resolve.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": standard_type(status)[1],
            "content": {PROBLEM_MEDIA_TYPE: _problem_media(status)},
        }
        if status in _CHALLENGE_HEADERS:
            entry["headers"] = _CHALLENGE_HEADERS[status]
        responses[status] = entry
    return responses


def _document_problems(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template=_SCHEMA_REF + "{model}")
        schemas.update(problem_schema.pop("$defs", {}))
        schemas["Problem"] = problem_schema
        # FastAPI documents its own 422 body on every route with parameters; ours replaces it.
        default_422 = {"$ref": _SCHEMA_REF + "HTTPValidationError"}
        ours = problem_responses(422)[422]
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                # Any route may find its database or object store away for a moment, and any
                # caller may go over its rate limit or be locked out (referrals_common.edge).
                operation.setdefault("responses", {}).setdefault("503", problem_responses(503)[503])
                operation["responses"].setdefault("429", problem_responses(429)[429])
                if "requestBody" in operation:
                    # A body that cannot be parsed at all (not text, truncated multipart), one
                    # over the edge's size limit, one that trickled or stalled.
                    for status in (400, 408, 413):
                        operation["responses"].setdefault(
                            str(status), problem_responses(status)[status]
                        )
                response = (operation.get("responses") or {}).get("422")
                if (
                    response
                    and response.get("content", {}).get("application/json", {}).get("schema")
                    == default_422
                ):
                    operation["responses"]["422"] = ours
        if "HTTPValidationError" not in str(document.get("paths", {})):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of `app` a problem (`application/problem+json`).

    `ProblemError`s answer as themselves; request validation as 422 `validation-failed` with
    one `FieldError` per error and no submitted value echoed; Starlette/FastAPI
    `HTTPException`s (unknown route 404, 405) as the problem of their status, their headers
    kept; anything else as a 500 whose detail says nothing about the cause, logged with its
    traceback and recorded on the current span. The OpenAPI document gains the `Problem`
    schema and documents 422 as a problem. Call once, while building the app.
    """
    if getattr(app.state, "problem_handlers_installed", False):
        return
    app.add_exception_handler(ProblemError, _on_problem_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unhandled_error)
    app.add_middleware(_UnhandledErrorMiddleware)
    _document_problems(app)
    app.state.problem_handlers_installed = True
