"""Signing in again without a password: the case's reference (or number) and the e-mail address
or phone number given with it, then a 6-digit code sent by e-mail.

The answer is the same whether or not the details match a case ("if they match, we sent a
code"), so the form tells nobody which cases exist or whose they are. Codes are stored as an HMAC,
work for `login_code_minutes` and `login_code_attempts` tries, once (`one_time_codes`).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_web import one_time_codes
from referrals_web.forms import normalise_phone
from referrals_web.i18n import N_
from referrals_web.one_time_codes import Verdict
from referrals_web.pages.common import (
    checked_form,
    ensure_session,
    redirect,
    render,
    runtime,
    text,
)
from referrals_web.platform import PlatformProblem
from referrals_web.rendering import Form

router = APIRouter()
log = logging.getLogger(__name__)

SIGN_IN = "signin"
CODE_NAMESPACE = "login-code"
CODE_MESSAGES = {
    Verdict.WRONG: N_(
        "The code is not right. Check the e-mail and try again, or ask for a new code"
    ),
    Verdict.EXPIRED: N_("This code has expired. Ask for a new code: what you typed before is kept"),
    Verdict.TOO_MANY: N_("Too many tries with this code. Ask for a new code"),
}
_REFERENCE = re.compile(r"^[0-9A-F]{4}-?[0-9A-F]{4}$")


def _candidates(typed: str) -> tuple[list[UUID], str | None]:
    """(case ids to try, the reference to look up) for what the patient typed."""
    cleaned = typed.strip()
    try:
        return [UUID(cleaned)], None
    except ValueError:
        pass
    upper = cleaned.upper().replace(" ", "")
    if _REFERENCE.match(upper):
        plain = upper.replace("-", "")
        return [], f"{plain[:4]}-{plain[4:]}"
    return [], None


def _matches(case: dict[str, Any], contact: str) -> bool:
    given = case.get("contact") or {}
    typed = contact.strip()
    if "@" in typed:
        return bool(given.get("email")) and given["email"].casefold() == typed.casefold()
    return bool(given.get("phone")) and given["phone"] == normalise_phone(typed)


@router.get("/sign-in")
async def sign_in(request: Request) -> Response:
    session = ensure_session(request)
    pending = session.data.get(SIGN_IN) or {}
    form = Form(
        values={"reference": pending.get("reference", ""), "contact": pending.get("contact", "")}
    )
    return render(request, "signin/start.html", form=form)


@router.post("/sign-in")
async def ask_for_code(request: Request) -> Response:
    posted = await checked_form(request)
    form = Form(
        values={"reference": text(posted, "reference", 60), "contact": text(posted, "contact", 200)}
    )
    ids, reference = _candidates(form.values["reference"])
    if not form.values["reference"]:
        form.error("reference", N_("Enter your case reference, for example 3F0F-6C7D"))
    elif not ids and reference is None:
        form.error(
            "reference",
            N_("Enter the case reference as it is written in our e-mails, for example 3F0F-6C7D"),
        )
    if not form.values["contact"]:
        form.error(
            "contact", N_("Enter the e-mail address or phone number you gave with your case")
        )
    if not form.ok:
        return render(request, "signin/start.html", form=form, status_code=422)
    await _send_code(request, form.values["reference"], form.values["contact"])
    return redirect("/sign-in/code")


async def _send_code(request: Request, reference: str, contact: str) -> None:
    """Find the case, check the contact, e-mail a code: every outcome looks the same outside."""
    rt = runtime(request)
    session = ensure_session(request)
    ids, ref = _candidates(reference)
    if ref is not None:
        ids = await rt.directory.find(ref)
    matched: UUID | None = None
    email: str | None = None
    for case_id in ids[:5]:
        try:
            token = await rt.platform.access_token(case_id)
            case = await rt.platform.read_case(case_id, token.token)
        except PlatformProblem:
            continue  # not a case of this front end
        if _matches(case, contact):
            matched, email = case_id, (case.get("contact") or {}).get("email")
            break
    session.set(
        SIGN_IN,
        {"reference": reference, "contact": contact, "case_id": str(matched) if matched else None},
    )
    if matched is None or not email:
        return
    minutes = rt.settings.login_code_minutes
    code = await one_time_codes.issue(
        rt.codes, rt.sessions, matched, namespace=CODE_NAMESPACE, minutes=minutes
    )
    try:
        await rt.mailer.send_code(email, code, locale=session.locale, minutes=minutes)
    except Exception:  # the page says the same; the log says why
        log.exception("the sign-in code could not be sent")


@router.get("/sign-in/code")
async def code_page(request: Request) -> Response:
    session = ensure_session(request)
    if not session.data.get(SIGN_IN):
        return redirect("/sign-in")
    return render(request, "signin/code.html", form=Form(values={"code": ""}))


@router.post("/sign-in/code")
async def check_code(request: Request) -> Response:
    posted = await checked_form(request)
    session = ensure_session(request)
    pending = session.data.get(SIGN_IN)
    if not pending:
        return redirect("/sign-in")
    rt = runtime(request)
    if posted.get("action") == "resend":
        await _send_code(request, pending["reference"], pending["contact"])
        return render(request, "signin/code.html", form=Form(values={"code": ""}), resent=True)
    typed = re.sub(r"\s", "", text(posted, "code", 20))
    form = Form(values={"code": typed})
    if not re.fullmatch(r"\d{6}", typed):
        form.error("code", N_("Enter the 6-digit code from the e-mail"))
        return render(request, "signin/code.html", form=form, status_code=422)
    case_id = UUID(pending["case_id"]) if pending.get("case_id") else None
    verdict = await one_time_codes.check(
        rt.codes,
        rt.sessions,
        case_id,
        typed,
        namespace=CODE_NAMESPACE,
        attempts=rt.settings.login_code_attempts,
    )
    if verdict is not Verdict.OK or case_id is None:
        form.error("code", CODE_MESSAGES[verdict])
        return render(request, "signin/code.html", form=form, status_code=422)
    try:
        token = await rt.platform.access_token(case_id)
    except PlatformProblem:
        return redirect("/sign-in")
    # A new session id on signing in: a cookie planted before cannot ride along.
    fresh = rt.sessions.new(session.locale)
    fresh.open_case(case_id, token.token, token.expires_at)
    await rt.sessions.end(session)
    request.scope["state"]["web_session"] = fresh
    return redirect("/case")


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await checked_form(request)
    session = ensure_session(request)
    locale = session.locale
    await runtime(request).sessions.end(session)
    request.scope["state"]["web_session"] = runtime(request).sessions.new(locale)
    return redirect("/")
