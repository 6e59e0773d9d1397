"""The center console's sign-in: a staff member's e-mail address, then a 6-digit code sent to it
(`one_time_codes`, the patients' mechanism with a store and namespace of its own).

The answer is the same whether or not the address is a staff member's, so the form tells nobody
who works where. Signing in starts a new staff session (a new cookie value); signing out ends
it. English first (the console's `default_locale`), Ukrainian one tap away.
"""

from __future__ import annotations

import logging
import re
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_web import one_time_codes
from referrals_web.i18n import LOCALES, N_
from referrals_web.models import utcnow
from referrals_web.one_time_codes import Verdict
from referrals_web.pages.common import (
    checked_form,
    current_session,
    end_session,
    ensure_session,
    redirect,
    render,
    runtime,
    safe_next,
    text,
)
from referrals_web.rendering import Form
from referrals_web.repository import ConsoleAction
from referrals_web.staff import CENTER_ROLE, EMAIL

router = APIRouter()
log = logging.getLogger(__name__)

STAFF_SIGN_IN = "staff_signin"
CODE_NAMESPACE = "staff-code"
CODE_MESSAGES = {
    Verdict.WRONG: N_(
        "The code is not right. Check the e-mail and try again, or ask for a new code"
    ),
    Verdict.EXPIRED: N_("This code has expired. Ask for a new code: what you typed before is kept"),
    Verdict.TOO_MANY: N_("Too many tries with this code. Ask for a new code"),
}


@router.get("/center/sign-in")
async def sign_in(request: Request) -> Response:
    session = ensure_session(request)
    if session.staff_id is not None:
        return redirect("/center")
    pending = session.data.get(STAFF_SIGN_IN) or {}
    form = Form(values={"email": pending.get("email", "")})
    return render(request, "center/signin.html", form=form)


@router.post("/center/sign-in")
async def ask_for_code(request: Request) -> Response:
    posted = await checked_form(request)
    form = Form(values={"email": text(posted, "email", 254)})
    if not form.values["email"]:
        form.error("email", N_("Enter your work e-mail address"))
    elif not EMAIL.match(form.values["email"]):
        form.error(
            "email", N_("Enter an e-mail address in the right format, like name@example.com")
        )
    if not form.ok:
        return render(request, "center/signin.html", form=form, status_code=422)
    await _send_code(request, form.values["email"])
    return redirect("/center/sign-in/code")


async def _send_code(request: Request, email: str) -> None:
    """E-mail a code if the address is an active staff member's; the page says the same
    either way."""
    rt = runtime(request)
    session = ensure_session(request)
    member = await rt.staff.by_email(email)
    # An operator's address gets no console code (the ops screen has its own sign-in).
    found = member is not None and member.active and member.role == CENTER_ROLE
    session.set(
        STAFF_SIGN_IN,
        {"email": email, "staff_id": str(member.id) if member is not None and found else None},
    )
    if member is None or not found:
        return
    minutes = rt.settings.login_code_minutes
    code = await one_time_codes.issue(
        rt.staff_codes, rt.staff_sessions, member.id, namespace=CODE_NAMESPACE, minutes=minutes
    )
    try:
        await rt.mailer.send_code(
            member.email, code, locale=session.locale, minutes=minutes, purpose="console"
        )
    except Exception:  # the page says the same; the log says why
        log.exception("the console sign-in code could not be sent")


@router.get("/center/sign-in/code")
async def code_page(request: Request) -> Response:
    session = ensure_session(request)
    if not session.data.get(STAFF_SIGN_IN):
        return redirect("/center/sign-in")
    return render(request, "center/code.html", form=Form(values={"code": ""}))


@router.post("/center/sign-in/code")
async def check_code(request: Request) -> Response:
    posted = await checked_form(request)
    session = ensure_session(request)
    pending = session.data.get(STAFF_SIGN_IN)
    if not pending:
        return redirect("/center/sign-in")
    rt = runtime(request)
    if posted.get("action") == "resend":
        await _send_code(request, pending["email"])
        return render(request, "center/code.html", form=Form(values={"code": ""}), resent=True)
    typed = re.sub(r"\s", "", text(posted, "code", 20))
    form = Form(values={"code": typed})
    if not re.fullmatch(r"\d{6}", typed):
        form.error("code", N_("Enter the 6-digit code from the e-mail"))
        return render(request, "center/code.html", form=form, status_code=422)
    staff_id = UUID(pending["staff_id"]) if pending.get("staff_id") else None
    verdict = await one_time_codes.check(
        rt.staff_codes,
        rt.staff_sessions,
        staff_id,
        typed,
        namespace=CODE_NAMESPACE,
        attempts=rt.settings.login_code_attempts,
    )
    if verdict is not Verdict.OK or staff_id is None:
        form.error("code", CODE_MESSAGES[verdict])
        return render(request, "center/code.html", form=form, status_code=422)
    member = await rt.staff.get(staff_id)
    if member is None or not member.active or member.role != CENTER_ROLE:  # disabled since
        form.error("code", CODE_MESSAGES[Verdict.WRONG])
        return render(request, "center/code.html", form=form, status_code=422)
    # A new session id on signing in: a cookie planted before cannot ride along.
    fresh = rt.staff_sessions.new(session.locale)
    fresh.staff_id = member.id
    await rt.staff_sessions.end(session)
    request.scope["state"]["web_session"] = fresh
    await rt.console_audit.record(
        ConsoleAction(utcnow(), member.id, member.center_code, None, "sign_in", "ok")
    )
    return redirect("/center")


@router.post("/center/sign-out")
async def sign_out(request: Request) -> Response:
    await checked_form(request)
    session = current_session(request)
    if session is not None:
        await runtime(request).staff_sessions.end(session)
    end_session(request)
    return redirect("/center/sign-in")


@router.get("/center/language/{locale}")
async def switch_language(request: Request, locale: str) -> Response:
    """The same console page in the other language."""
    session = ensure_session(request)
    if locale in LOCALES and session.locale != locale:
        session.locale = locale
        session.changed = True
    return redirect(safe_next(request.query_params.get("next"), "/center"))
