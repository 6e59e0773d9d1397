"""The center console's sign-in: a staff member's e-mail address, then a 6-digit code sent to it
(`one_time_codes`, the patients' mechanism with a store and namespace of its own).

The answer is the same whether or not the address is a staff member's, so the form tells nobody
who works where. Signing in starts a new staff session (a new cookie value); signing out ends
it. English first (the console's `default_locale`), Ukrainian one tap away.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from referrals_web.models import utcnow
from referrals_web.pages import staff_signin
from referrals_web.pages.common import runtime
from referrals_web.repository import ConsoleAction, StaffMember
from referrals_web.staff import CENTER_ROLE

router = APIRouter()


async def _signed_in(request: Request, member: StaffMember) -> None:
    await runtime(request).console_audit.record(
        ConsoleAction(utcnow(), member.id, member.center_code, None, "sign_in", "ok")
    )


REALM = staff_signin.StaffRealm(
    role=CENTER_ROLE,
    prefix="/center",
    templates="center",
    pending_key="staff_signin",
    namespace="staff-code",
    purpose="console",
    signed_in=_signed_in,
)


@router.get("/center/sign-in")
async def sign_in(request: Request) -> Response:
    return await staff_signin.sign_in_page(request, REALM)


@router.post("/center/sign-in")
async def ask_for_code(request: Request) -> Response:
    return await staff_signin.ask_for_code(request, REALM)


@router.get("/center/sign-in/code")
async def code_page(request: Request) -> Response:
    return await staff_signin.code_page(request, REALM)


@router.post("/center/sign-in/code")
async def check_code(request: Request) -> Response:
    return await staff_signin.check_code(request, REALM)


@router.post("/center/sign-out")
async def sign_out(request: Request) -> Response:
    return await staff_signin.sign_out(request, REALM)


@router.get("/center/language/{locale}")
async def switch_language(request: Request, locale: str) -> Response:
    """The same console page in the other language."""
    return staff_signin.switch_language(request, REALM, locale)
