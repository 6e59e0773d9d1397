"""The pages, and what a visitor sees when something goes wrong: a form that lost its session
(403), a case the session may not see (to signing in), the platform away (503), a missing page.
In the center console: no staff session (to the console's sign-in), a referral the center may
not see (404, as if it did not exist), the center's key missing or refused (503). On the ops
screen: no operator's session (to its sign-in), the operator key missing or refused (503)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from referrals_common.faults import is_infrastructure_fault
from referrals_web.ops_api import NoOpsKey
from referrals_web.pages import (
    case,
    center_choice,
    console,
    console_signin,
    meetings,
    new_case,
    opinion,
    ops,
    signin,
    start,
    status,
)
from referrals_web.pages.common import CsrfRefused, NoCase, redirect, render
from referrals_web.pages.console import CenterKeyMissing, NoStaff
from referrals_web.platform import PlatformProblem, PlatformUnavailable
from referrals_web.realms import is_console, is_ops

log = logging.getLogger(__name__)

router = APIRouter()
for module in (
    start,
    new_case,
    case,
    status,
    center_choice,
    opinion,
    meetings,
    signin,
    console_signin,
    console,
    ops,
):
    router.include_router(module.router)


def install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return render(request, "errors/csrf.html", status_code=403)

    @app.exception_handler(NoCase)
    async def no_case(request: Request, exc: NoCase) -> Response:
        return redirect("/sign-in")

    @app.exception_handler(NoStaff)
    async def no_staff(request: Request, exc: NoStaff) -> Response:
        return redirect("/center/sign-in")

    @app.exception_handler(ops.NoOperator)
    async def no_operator(request: Request, exc: ops.NoOperator) -> Response:
        return redirect("/ops/sign-in")

    @app.exception_handler(NoOpsKey)
    async def no_ops_key(request: Request, exc: NoOpsKey) -> Response:
        log.warning("the web application holds no operator key (REFERRALS_WEB_OPS_API_KEY)")
        return render(request, "ops/no_key.html", status_code=503)

    @app.exception_handler(CenterKeyMissing)
    async def no_center_key(request: Request, exc: CenterKeyMissing) -> Response:
        log.warning("no usable API key is kept for center %s", exc)
        return render(request, "center/no_key.html", status_code=503)

    @app.exception_handler(PlatformUnavailable)
    async def unavailable(request: Request, exc: PlatformUnavailable) -> Response:
        log.warning("platform unavailable: %s", exc)
        response = render(request, "errors/unavailable.html", status_code=503)
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(PlatformProblem)
    async def refused(request: Request, exc: PlatformProblem) -> Response:
        log.warning("platform refused a page's request: %s", exc)
        if is_ops(request.url.path):
            if exc.status == 404:
                return render(request, "errors/not_found.html", status_code=404)
            if exc.status in (401, 403):
                return render(request, "ops/no_key.html", status_code=503)
            return render(
                request, "errors/refused.html", status_code=409 if exc.status == 409 else 400
            )
        if is_console(request.url.path):
            if exc.status == 404:  # another center's referral is not shown, nor said to exist
                return render(request, "errors/not_found.html", status_code=404)
            if exc.status in (401, 403):
                return render(request, "center/no_key.html", status_code=503)
            return render(
                request, "errors/refused.html", status_code=409 if exc.status == 409 else 400
            )
        if exc.status in (401, 404):
            return redirect("/sign-in")
        return render(request, "errors/refused.html", status_code=409 if exc.status == 409 else 400)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        if is_infrastructure_fault(exc):  # the web application's own database is away
            log.warning("infrastructure fault: %s", type(exc).__name__)
            response = render(request, "errors/unavailable.html", status_code=503)
        else:
            log.exception("a page failed", exc_info=exc)
            response = render(request, "errors/unavailable.html", status_code=500)
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return render(request, "errors/not_found.html", status_code=404)
        if exc.status_code == 405:
            return render(request, "errors/not_found.html", status_code=405)
        return Response(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
