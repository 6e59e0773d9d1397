"""The center console's sign-in: a staff member's e-mail address, then a 6-digit code sent to it
(`one_time_codes`, the patients' mechanism with a store and namespace of its own).

The answer is the same whether or not the address is a staff member's, so the form tells nobody
who works where. Signing in starts a new staff session (a new cookie value); signing out ends
it. English first (the console's `default_locale`), Ukrainian one tap away.
"""

from __future__ import annotations

from fastapi import Request

from referrals_web.models import utcnow
from referrals_web.pages import staff_signin
from referrals_web.pages.common import runtime
from referrals_web.repository import ConsoleAction, StaffMember
from referrals_web.staff import CENTER_ROLE


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
router = staff_signin.router_for(REALM)
