"""The center console's accounts: a center's staff members, each bound to one center, and each
center's partner API key, which the web application holds for its staff and never shows; and the
ops screen's operators: staff accounts with the role `ops` and no center, for whom the web
application uses its own operator key of partners (`WebSettings.ops_api_key`), never shown.

A key is sealed (AES-256-GCM) with a key derived from the session secret and bound to its
center's code, the way a session's case token is sealed: a row copied to another center, or a
copy of the table without the secret, opens nothing. Rotating the session secret means storing
every center's key again (`referrals-web staff set-key`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from uuid import uuid4

from referrals_common.crypto import FieldCipher
from referrals_web.models import utcnow
from referrals_web.repository import CenterKeyStore, StaffDirectory, StaffMember

CENTER_CODE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
"""A partner registry code (`referrals_common.contracts.partners.CenterCode`)."""
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CENTER_KEY = re.compile(r"^ccr_[A-Za-z0-9_-]{8,200}$")
CENTER_ROLE = "center"
OPS_ROLE = "ops"


class StaffError(ValueError):
    """A staff account or a center key that cannot be kept (said in words for the CLI)."""


class CenterKeys:
    """Centers' partner API keys, sealed at rest."""

    def __init__(self, store: CenterKeyStore, secret: str) -> None:
        self.store = store
        self._cipher = FieldCipher(
            hashlib.sha256(b"referrals-web-center-key|" + secret.encode()).digest()
        )

    async def put(self, center_code: str, key: str) -> None:
        if not CENTER_KEY.match(key):
            raise StaffError("a center's partner API key looks like ccr_… (as partners issued it)")
        await self.store.put(center_code, self._cipher.encrypt_json(key, bound_to=center_code))

    async def get(self, center_code: str) -> str | None:
        """The center's key, or None when none is kept (or it no longer opens: the secret
        changed)."""
        sealed = await self.store.get(center_code)
        if sealed is None:
            return None
        try:
            return str(self._cipher.decrypt_json(sealed, bound_to=center_code))
        except Exception:
            return None


async def add_staff(
    directory: StaffDirectory,
    keys: CenterKeys,
    *,
    email: str,
    name: str,
    center_code: str,
    key: str | None,
) -> tuple[StaffMember, bool]:
    """Add a staff member of `center_code` (or update the one with this address, enabled
    again); keep `key` as the center's key when given. A center needs a key before its first
    member. Returns (the member, whether it was new)."""
    email = email.strip().casefold()
    name = " ".join(name.split())
    if not EMAIL.match(email) or len(email) > 254:
        raise StaffError(f"{email!r} is not an e-mail address")
    if not name or len(name) > 200:
        raise StaffError("the name is empty or longer than 200 characters")
    if not CENTER_CODE.match(center_code) or len(center_code) > 63:
        raise StaffError(f"{center_code!r} is not a center code (like sample-breast-center-berlin)")
    if key:
        await keys.put(center_code, key)
    elif await keys.get(center_code) is None:
        raise StaffError(
            f"no API key is kept for {center_code}: give the center's partner API key "
            "(REFERRALS_WEB_CENTER_KEY or standard input)"
        )
    found = await directory.by_email(email)
    if found is not None and found.role != CENTER_ROLE:
        raise StaffError(f"{email} is an operator's account, not a center's")
    if found is not None:
        member = replace(found, name=name, center_code=center_code, disabled_at=None)
        await directory.save(member)
        return member, False
    member = StaffMember(
        id=uuid4(), email=email, name=name, center_code=center_code, created_at=utcnow()
    )
    await directory.save(member)
    return member, True


async def add_operator(
    directory: StaffDirectory, *, email: str, name: str
) -> tuple[StaffMember, bool]:
    """Add an operator of the ops screen (or update the one with this address, enabled again).
    Returns (the operator, whether it was new)."""
    email = email.strip().casefold()
    name = " ".join(name.split())
    if not EMAIL.match(email) or len(email) > 254:
        raise StaffError(f"{email!r} is not an e-mail address")
    if not name or len(name) > 200:
        raise StaffError("the name is empty or longer than 200 characters")
    found = await directory.by_email(email)
    if found is not None and found.role != OPS_ROLE:
        raise StaffError(f"{email} is a center's staff account, not an operator's")
    if found is not None:
        member = replace(found, name=name, disabled_at=None)
        await directory.save(member)
        return member, False
    member = StaffMember(
        id=uuid4(), email=email, name=name, center_code="", created_at=utcnow(), role=OPS_ROLE
    )
    await directory.save(member)
    return member, True


async def disable_staff(directory: StaffDirectory, email: str) -> StaffMember:
    """The member can no longer sign in; their open sessions end at their next request."""
    found = await directory.by_email(email.strip().casefold())
    if found is None:
        raise StaffError(f"there is no staff member {email}")
    member = replace(found, disabled_at=found.disabled_at or utcnow())
    await directory.save(member)
    return member
