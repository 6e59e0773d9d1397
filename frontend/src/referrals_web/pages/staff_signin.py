"""Signing staff in without a password, once for the two staff realms: the center console
(`/center`, role `center`) and the ops screen (`/ops`, role `ops`).

An e-mail address, then a 6-digit code sent to it (`one_time_codes`, the patients' mechanism with
a namespace per realm). The answer is the same whether or not the address is an active member of
the realm's role, so the form tells nobody who works where. Signing in starts a new session of the
realm (a new cookie value); signing out ends it. `router_for(realm)` gives a realm its sign-in
routes under its prefix; its templates are its own (`<templates>/signin.html`, `code.html`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_web import one_time_codes
from referrals_web.i18n import LOCALES, N_
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
from referrals_web.pages.signin import CODE_MESSAGES
from referrals_web.rendering import Form
from referrals_web.repository import StaffMember
from referrals_web.sessions import Sessions
from referrals_web.staff import EMAIL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaffRealm:
    """One staff realm's sign-in: who may sign in, where its pages and templates are, what
    happens once a member signed in."""

    role: str
    prefix: str
    """The realm's pages (`/center`, `/ops`): its home, and `<prefix>/sign-in…`."""
    templates: str
    pending_key: str
    """The session key of a sign-in under way (the address given, the member it matched)."""
    namespace: str
    """The one-time codes' namespace."""
    purpose: str
    """The code e-mail's wording (`referrals_web.mail.code_message`)."""
    signed_in: Callable[[Request, StaffMember], Awaitable[None]]
    """Called once a member signed in (the realm's audit)."""


def _sessions(request: Request, realm: StaffRealm) -> Sessions:
    return runtime(request).sessions_of(realm.prefix)


async def sign_in_page(request: Request, realm: StaffRealm) -> Response:
    session = ensure_session(request)
    if session.staff_id is not None:
        return redirect(realm.prefix)
    pending = session.data.get(realm.pending_key) or {}
    form = Form(values={"email": pending.get("email", "")})
    return render(request, f"{realm.templates}/signin.html", form=form)


async def ask_for_code(request: Request, realm: StaffRealm) -> Response:
    posted = await checked_form(request)
    form = Form(values={"email": text(posted, "email", 254)})
    if not form.values["email"]:
        form.error("email", N_("Enter your work e-mail address"))
    elif not EMAIL.match(form.values["email"]):
        form.error(
            "email", N_("Enter an e-mail address in the right format, like name@example.com")
        )
    if not form.ok:
        return render(request, f"{realm.templates}/signin.html", form=form, status_code=422)
    await _send_code(request, realm, form.values["email"])
    return redirect(f"{realm.prefix}/sign-in/code")


async def _send_code(request: Request, realm: StaffRealm, email: str) -> None:
    """E-mail a code if the address is an active member of the realm's role (an operator's
    address gets no console code, a center's staff no ops code); the page says the same either
    way."""
    rt = runtime(request)
    session = ensure_session(request)
    member = await rt.staff.by_email(email)
    found = member if member is not None and member.active and member.role == realm.role else None
    session.set(realm.pending_key, {"email": email, "staff_id": str(found.id) if found else None})
    if found is None:
        return
    minutes = rt.settings.login_code_minutes
    code = await one_time_codes.issue(
        rt.staff_codes,
        _sessions(request, realm),
        found.id,
        namespace=realm.namespace,
        minutes=minutes,
    )
    try:
        await rt.mailer.send_code(
            found.email, code, locale=session.locale, minutes=minutes, purpose=realm.purpose
        )
    except Exception:  # the page says the same; the log says why
        log.exception("the %s sign-in code could not be sent", realm.purpose)


async def code_page(request: Request, realm: StaffRealm) -> Response:
    session = ensure_session(request)
    if not session.data.get(realm.pending_key):
        return redirect(f"{realm.prefix}/sign-in")
    return render(request, f"{realm.templates}/code.html", form=Form(values={"code": ""}))


async def check_code(request: Request, realm: StaffRealm) -> Response:
    posted = await checked_form(request)
    session = ensure_session(request)
    pending = session.data.get(realm.pending_key)
    if not pending:
        return redirect(f"{realm.prefix}/sign-in")
    rt = runtime(request)
    template = f"{realm.templates}/code.html"
    if posted.get("action") == "resend":
        await _send_code(request, realm, pending["email"])
        return render(request, template, form=Form(values={"code": ""}), resent=True)
    typed = re.sub(r"\s", "", text(posted, "code", 20))
    form = Form(values={"code": typed})
    if not re.fullmatch(r"\d{6}", typed):
        form.error("code", N_("Enter the 6-digit code from the e-mail"))
        return render(request, template, form=form, status_code=422)
    staff_id = UUID(pending["staff_id"]) if pending.get("staff_id") else None
    sessions = _sessions(request, realm)
    verdict = await one_time_codes.check(
        rt.staff_codes,
        sessions,
        staff_id,
        typed,
        namespace=realm.namespace,
        attempts=rt.settings.login_code_attempts,
    )
    if verdict is not Verdict.OK or staff_id is None:
        form.error("code", CODE_MESSAGES[verdict])
        return render(request, template, form=form, status_code=422)
    member = await rt.staff.get(staff_id)
    if member is None or not member.active or member.role != realm.role:  # disabled since
        form.error("code", CODE_MESSAGES[Verdict.WRONG])
        return render(request, template, form=form, status_code=422)
    # A new session id on signing in: a cookie planted before cannot ride along.
    fresh = sessions.new(session.locale)
    fresh.staff_id = member.id
    await sessions.end(session)
    request.scope["state"]["web_session"] = fresh
    await realm.signed_in(request, member)
    return redirect(realm.prefix)


async def sign_out(request: Request, realm: StaffRealm) -> Response:
    await checked_form(request)
    session = current_session(request)
    if session is not None:
        await _sessions(request, realm).end(session)
    end_session(request)
    return redirect(f"{realm.prefix}/sign-in")


def switch_language(request: Request, realm: StaffRealm, locale: str) -> Response:
    """The same page of the realm in the other language."""
    session = ensure_session(request)
    if locale in LOCALES and session.locale != locale:
        session.locale = locale
        session.changed = True
    return redirect(safe_next(request.query_params.get("next"), realm.prefix))


def router_for(realm: StaffRealm) -> APIRouter:
    """The realm's sign-in routes: `<prefix>/sign-in` (the address, then `/code`), `/sign-out`
    and `/language/{locale}`."""
    router = APIRouter()
    at = realm.prefix

    @router.get(f"{at}/sign-in")
    async def sign_in(request: Request) -> Response:
        return await sign_in_page(request, realm)

    @router.post(f"{at}/sign-in")
    async def ask(request: Request) -> Response:
        return await ask_for_code(request, realm)

    @router.get(f"{at}/sign-in/code")
    async def code(request: Request) -> Response:
        return await code_page(request, realm)

    @router.post(f"{at}/sign-in/code")
    async def check(request: Request) -> Response:
        return await check_code(request, realm)

    @router.post(f"{at}/sign-out")
    async def out(request: Request) -> Response:
        return await sign_out(request, realm)

    @router.get(f"{at}/language/{{locale}}")
    async def language(request: Request, locale: str) -> Response:
        return switch_language(request, realm, locale)

    return router
