"""Signing in again without a password: the case's reference (or number) and the e-mail address
or phone number given with it, then a 6-digit code sent to what was typed: by text message when
the phone number matches the case's (and an SMS account is configured), by e-mail when the
e-mail address does.

The answer is the same whether or not the details match a case ("if they match, we sent a
code"), so the form tells nobody which cases exist or whose they are: what the pages say
depends only on what was typed and on the configuration, never on the case. Codes are stored as
an HMAC, work for `login_code_minutes` and `login_code_attempts` tries, once
(`one_time_codes`); at most `login_codes_per_hour` are sent for one case, past which nothing is
sent and the pages say the same.

Without an SMS account, a phone number that matches still gets the code by e-mail when the case
has an e-mail address (as before texts existed); a case with only a phone number gets nothing,
and the code page tells whoever typed a phone number to ask their clinic (docs/security.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_common.sms import SmsError
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
TEXT_WRONG_CODE = N_(
    "The code is not right. Check the text message and try again, or ask for a new code"
)
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


def _is_email(contact: str) -> bool:
    return "@" in contact


def _matches(case: dict[str, Any], contact: str) -> bool:
    given = case.get("contact") or {}
    typed = contact.strip()
    if _is_email(typed):
        return bool(given.get("email")) and given["email"].casefold() == typed.casefold()
    return bool(given.get("phone")) and given["phone"] == normalise_phone(typed)


def _by_text(request: Request, contact: str) -> bool:
    """Whether a code asked for with `contact` goes by text message: a phone number was typed
    and an SMS account is configured (what was typed decides, never the case)."""
    return not _is_email(contact) and runtime(request).texter is not None


def _code_page(request: Request, form: Form, **context: Any) -> Response:
    """The code page, worded for where the code went (from what was typed)."""
    pending = ensure_session(request).data.get(SIGN_IN) or {}
    contact = pending.get("contact", "")
    channel = "email" if _is_email(contact) else "sms" if _by_text(request, contact) else "none"
    return render(request, "signin/code.html", form=form, channel=channel, **context)


@router.get("/sign-in")
async def sign_in(request: Request) -> Response:
    session = ensure_session(request)
    pending = session.data.get(SIGN_IN) or {}
    form = Form(
        values={"reference": pending.get("reference", ""), "contact": pending.get("contact", "")}
    )
    return render(request, "signin/start.html", form=form, sms=runtime(request).texter is not None)


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
        sms = runtime(request).texter is not None
        return render(request, "signin/start.html", form=form, sms=sms, status_code=422)
    await _send_code(request, form.values["reference"], form.values["contact"])
    return redirect("/sign-in/code")


async def _send_code(request: Request, reference: str, contact: str) -> None:
    """Find the case, check the contact, send a code by text or e-mail: every outcome looks the
    same outside."""
    rt = runtime(request)
    session = ensure_session(request)
    ids, ref = _candidates(reference)
    if ref is not None:
        ids = await rt.directory.find(ref)
    matched: UUID | None = None
    given: dict[str, Any] = {}
    for case_id in ids[:5]:
        try:
            token = await rt.platform.access_token(case_id)
            case = await rt.platform.read_case(case_id, token.token)
        except PlatformProblem:
            continue  # not a case of this front end
        if _matches(case, contact):
            matched, given = case_id, case.get("contact") or {}
            break
    session.set(
        SIGN_IN,
        {"reference": reference, "contact": contact, "case_id": str(matched) if matched else None},
    )
    if matched is None:
        return
    phone = given.get("phone") if _by_text(request, contact) else None
    email = None if phone else given.get("email")
    if not phone and not email:
        return  # a phone-only case without an SMS account: the code page says to ask the clinic
    if not rt.code_sends.spend(matched):
        log.warning("sign-in code not sent: this case's codes for the hour are spent")
        return
    minutes = rt.settings.login_code_minutes
    code = await one_time_codes.issue(
        rt.codes, rt.sessions, matched, namespace=CODE_NAMESPACE, minutes=minutes
    )
    if phone and rt.texter is not None:
        try:
            await rt.texter.send_code(phone, code, locale=session.locale, minutes=minutes)
        except SmsError as error:  # the page says the same; the log says why (not the number)
            log.warning("the sign-in code could not be sent by SMS: %s", error.failure)
        return
    try:
        await rt.mailer.send_code(str(email), code, locale=session.locale, minutes=minutes)
    except Exception:  # the page says the same; the log says why
        log.exception("the sign-in code could not be sent")


@router.get("/sign-in/code")
async def code_page(request: Request) -> Response:
    session = ensure_session(request)
    if not session.data.get(SIGN_IN):
        return redirect("/sign-in")
    return _code_page(request, Form(values={"code": ""}))


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
        return _code_page(request, Form(values={"code": ""}), resent=True)
    by_text = _by_text(request, pending["contact"])
    typed = re.sub(r"\s", "", text(posted, "code", 20))
    form = Form(values={"code": typed})
    if not re.fullmatch(r"\d{6}", typed):
        if by_text:
            form.error("code", N_("Enter the 6-digit code from the text message"))
        else:
            form.error("code", N_("Enter the 6-digit code from the e-mail"))
        return _code_page(request, form, status_code=422)
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
        wrong = by_text and verdict is Verdict.WRONG
        form.error("code", TEXT_WRONG_CODE if wrong else CODE_MESSAGES[verdict])
        return _code_page(request, form, status_code=422)
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
