"""The start page, the language switch, and where "my case" leads."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_web.i18n import LOCALES
from referrals_web.pages.common import current_session, ensure_session, redirect, render, safe_next

router = APIRouter()


@router.get("/")
async def start(request: Request) -> Response:
    return render(request, "start.html")


@router.get("/language/{locale}")
async def switch_language(request: Request, locale: str) -> Response:
    """The same page in the other language (a plain link: works without JavaScript)."""
    session = ensure_session(request)
    if locale in LOCALES and session.locale != locale:
        session.locale = locale
        session.changed = True
    return redirect(safe_next(request.query_params.get("next"), "/"))


@router.get("/my-case")
async def my_case(request: Request) -> Response:
    session = current_session(request)
    return redirect("/case" if session is not None and session.case_id else "/sign-in")
