"""What every page uses: the runtime, the visitor's session, CSRF checks, rendering a template in
the page's language, and calls to the platform with the session's case token (renewed with the
front end's key when it is about to expire or was refused)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID, uuid4

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import FormData

from referrals_web.bootstrap import Runtime
from referrals_web.i18n import LANGUAGE_NAMES, LOCALES
from referrals_web.platform import PlatformProblem
from referrals_web.rendering import Form
from referrals_web.sessions import Sessions, WebSession

T = TypeVar("T")


class CsrfRefused(Exception):
    """A form came without this session's CSRF token."""


class NoCase(Exception):
    """The session may see no case (never signed in, or it ended)."""


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime  # set by create_app
    return found


def realm_sessions(request: Request) -> Sessions:
    """The sessions of this page's realm: the console's under /center, the ops screen's under
    /ops, the patients' elsewhere."""
    return runtime(request).sessions_of(request.url.path)


def current_session(request: Request) -> WebSession | None:
    session: WebSession | None = request.scope.setdefault("state", {}).get("web_session")
    return session


def ensure_session(request: Request) -> WebSession:
    """The visitor's session, started now if there is none (saved with the answer)."""
    session = current_session(request)
    if session is None:
        session = realm_sessions(request).new()
        request.scope["state"]["web_session"] = session
    return session


def end_session(request: Request) -> None:
    request.scope["state"]["web_session"] = None
    request.scope["state"]["web_session_ended"] = True


def locale_of(request: Request) -> str:
    session = current_session(request)
    return session.locale if session is not None else LOCALES[0]


def gettext(request: Request) -> Callable[[str], str]:
    return runtime(request).renderer.gettext(locale_of(request))


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token is this session's; `CsrfRefused` otherwise."""
    form = await request.form()
    session = current_session(request)
    token = form.get("csrf_token")
    if not realm_sessions(request).csrf_valid(session, token if isinstance(token, str) else None):
        raise CsrfRefused
    return form


def text(form: FormData, name: str, max_length: int = 4000) -> str:
    value = form.get(name)
    return value.strip()[:max_length] if isinstance(value, str) else ""


def render(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    session = ensure_session(request)
    rt = runtime(request)
    sessions = realm_sessions(request)
    console = sessions is rt.staff_sessions
    ops = sessions is rt.ops_sessions
    locale = session.locale
    other = next(code for code in LOCALES if code != locale)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        here = request.url.path
    switch = "/center/language" if console else ("/ops/language" if ops else "/language")
    context.setdefault("form", Form())
    html = rt.renderer.render(
        locale,
        template,
        {
            "csrf_token": sessions.csrf_token(session),
            "htmx": rt.htmx,
            "other_locale": other,
            "other_locale_name": LANGUAGE_NAMES[other],
            "switch_url": f"{switch}/{other}?next={quote(here, safe='')}",
            "console": console,
            "ops": ops,
            "signed_in": session.case_id is not None,
            "case_ref": session.case_id,
            "path": request.url.path,
            **context,
        },
    )
    return HTMLResponse(html, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """After a POST: see the next page with GET (303)."""
    return RedirectResponse(url, status_code=303)


def safe_next(url: str | None, default: str = "/") -> str:
    """A local path to go back to (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


# ---------------------------------------------------------------------------- the case


def case_id(request: Request) -> UUID:
    session = current_session(request)
    if session is None or session.case_id is None:
        raise NoCase
    return session.case_id


async def case_token(request: Request, *, renew: bool = False) -> str:
    """The session's case token, renewed with the front end's key when it is about to end."""
    session = current_session(request)
    if session is None or session.case_id is None:
        raise NoCase
    if renew or session.case_token is None or session.token_expires_soon(datetime.now(UTC)):
        try:
            fresh = await runtime(request).platform.access_token(session.case_id)
        except PlatformProblem as problem:
            if problem.status == 404:
                session.case_id = None
                session.case_token = None
                session.changed = True
                raise NoCase from None
            raise
        session.open_case(session.case_id, fresh.token, fresh.expires_at)
    assert session.case_token is not None
    return session.case_token


async def with_case(request: Request, call: Callable[[UUID, str], Awaitable[T]]) -> T:
    """`call(case_id, token)`; once more with a renewed token if the token was refused."""
    the_case = case_id(request)
    token = await case_token(request)
    try:
        return await call(the_case, token)
    except PlatformProblem as problem:
        if problem.status != 401:
            raise
    return await call(the_case, await case_token(request, renew=True))


async def read_case(request: Request) -> dict[str, Any]:
    platform = runtime(request).platform
    return await with_case(request, platform.read_case)


def crosses_border(case: dict[str, Any]) -> bool:
    """Whether the case may go to a center outside Ukraine (then it needs that consent too)."""
    destination = case.get("destination") or {}
    preference = destination.get("preference")
    if preference == "ukraine":
        return False
    if preference == "abroad":
        return True
    return any(c != "UA" for c in destination.get("countries") or [])


def consents_given(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in case.get("consents") or []}


def consent_done(case: dict[str, Any]) -> bool:
    given = consents_given(case)
    return "processing" in given and (not crosses_border(case) or "cross_border" in given)


def open_request(case: dict[str, Any]) -> dict[str, Any] | None:
    """The center's request waiting for the patient's answer, if any."""
    request: dict[str, Any]
    for request in reversed(case.get("information_requests") or []):
        if request.get("status") == "open":
            return request
    return None


def idempotency_key(request: Request, operation: str, body: Any) -> str:
    """The Idempotency-Key of one intended request: the same whenever the same request is sent
    again (a double click, the back button, a retry after a lost answer), so the platform does
    it once; a new one for a different request. `body` names the request: include what makes a
    later, wanted repeat differ (the meeting's booked time for a booking)."""
    digest = hashlib.sha256(
        json.dumps([operation, body], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    name = f"idempotency:{operation}:{digest}"
    session = ensure_session(request)
    key = session.data.get(name) or str(uuid4())
    session.set(name, key)
    return key
