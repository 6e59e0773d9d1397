"""Server-side sessions: the cookie holds only a random id; the row keeps the page language, the
case the visitor may see, that case's access token (sealed) and the answers of a form in
progress (sealed), and ends after `session_idle_minutes` without a request.

CSRF: every form carries `csrf_token`, an HMAC of the session id with the server's secret, so a
token is good only for the session it was shown in and needs no storage.

Three realms share the table and never each other's sessions: `patient` (cookie
`referrals_session`, every page but the console's and the ops screen's), `staff` (cookie
`referrals_staff`, the center console under /center, English first) and `ops` (cookie
`referrals_ops`, the ops screen under /ops, English first). A staff or ops session names the
staff member (an operator is a staff account with the role `ops`); no API key is in it (a
center's is sealed in `center_keys`, the operators' is the server's setting).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from referrals_common.crypto import FieldCipher
from referrals_web.models import utcnow
from referrals_web.repository import SessionStore, StoredSession

COOKIE_NAME = "referrals_session"
STAFF_COOKIE_NAME = "referrals_staff"
OPS_COOKIE_NAME = "referrals_ops"
DEFAULT_LOCALE = "uk"
PATIENT = "patient"
STAFF = "staff"
OPS = "ops"
COOKIE_NAMES = {PATIENT: COOKIE_NAME, STAFF: STAFF_COOKIE_NAME, OPS: OPS_COOKIE_NAME}


@dataclass
class WebSession:
    """One visitor's session as the pages use it; `changed` makes it saved with the response."""

    key: str
    """The cookie's value (never stored: the row is keyed by its hash)."""
    created_at: datetime
    expires_at: datetime
    locale: str = DEFAULT_LOCALE
    case_id: UUID | None = None
    case_token: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    is_new: bool = False
    changed: bool = False
    realm: str = PATIENT
    staff_id: UUID | None = None
    """The signed-in staff member (realms `staff` and `ops` only)."""

    @property
    def row_id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()

    def set(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.changed = True

    def pop(self, name: str, default: Any = None) -> Any:
        if name in self.data:
            self.changed = True
        return self.data.pop(name, default)

    def open_case(self, case_id: UUID, token: str, token_expires_at: datetime) -> None:
        """From now on this session may see `case_id` (and nothing of another case)."""
        self.case_id = case_id
        self.case_token = token
        self.data["token_expires_at"] = token_expires_at.isoformat()
        self.changed = True

    def token_expires_soon(self, now: datetime, margin: timedelta = timedelta(seconds=60)) -> bool:
        raw = self.data.get("token_expires_at")
        if not raw:
            return True
        return datetime.fromisoformat(raw) - margin <= now


class Sessions:
    """Loads and saves sessions through a store, sealing what they keep."""

    def __init__(
        self,
        store: SessionStore,
        secret: str,
        *,
        idle: timedelta,
        realm: str = PATIENT,
        default_locale: str = DEFAULT_LOCALE,
    ) -> None:
        self.store = store
        self._secret = secret.encode()
        self._cipher = FieldCipher(hashlib.sha256(b"referrals-web-seal|" + self._secret).digest())
        self.idle = idle
        self.realm = realm
        self.default_locale = default_locale
        self.cookie_name = COOKIE_NAMES[realm]

    def new(self, locale: str | None = None) -> WebSession:
        now = utcnow()
        return WebSession(
            key=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.idle,
            locale=locale or self.default_locale,
            is_new=True,
            changed=True,
            realm=self.realm,
        )

    async def load(self, key: str | None) -> WebSession | None:
        """The live session of this cookie value, or None (unknown, expired, tampered)."""
        if not key or len(key) > 100:
            return None
        row_id = hashlib.sha256(key.encode()).hexdigest()
        row = await self.store.load(row_id)
        now = utcnow()
        if row is None or row.expires_at <= now or row.realm != self.realm:
            return None
        try:
            token = (
                self._cipher.decrypt_json(row.case_token_sealed, bound_to=row_id)
                if row.case_token_sealed
                else None
            )
            data = (
                self._cipher.decrypt_json(row.data_sealed, bound_to=row_id)
                if row.data_sealed
                else {}
            )
        except Exception:  # a secret rotated or a row copied: the session is simply gone
            return None
        session = WebSession(
            key=key,
            created_at=row.created_at,
            expires_at=row.expires_at,
            locale=row.locale,
            case_id=row.case_id,
            case_token=token,
            data=data,
            realm=row.realm,
            staff_id=row.staff_id,
        )
        # Sliding expiry, written at most once a minute per session.
        if row.expires_at - now < self.idle - timedelta(minutes=1):
            session.expires_at = now + self.idle
            session.changed = True
        return session

    async def save(self, session: WebSession) -> None:
        row_id = session.row_id
        await self.store.save(
            StoredSession(
                id=row_id,
                created_at=session.created_at,
                expires_at=session.expires_at,
                locale=session.locale,
                case_id=session.case_id,
                case_token_sealed=self._cipher.encrypt_json(session.case_token, bound_to=row_id)
                if session.case_token
                else None,
                data_sealed=self._cipher.encrypt_json(session.data, bound_to=row_id)
                if session.data
                else None,
                realm=self.realm,
                staff_id=session.staff_id if self.realm != PATIENT else None,
            )
        )
        session.changed = False
        session.is_new = False

    async def end(self, session: WebSession) -> None:
        await self.store.delete(session.row_id)

    # ------------------------------------------------------------------------ CSRF
    def csrf_token(self, session: WebSession) -> str:
        # The realm is in the MAC: a patient page's token is no good on a console form.
        realm = b"" if self.realm == PATIENT else self.realm.encode() + b"|"
        return hmac.new(
            self._secret, b"csrf|" + realm + session.key.encode(), hashlib.sha256
        ).hexdigest()

    def csrf_valid(self, session: WebSession | None, presented: str | None) -> bool:
        if session is None or session.is_new or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session), presented)

    def keyed_hash(self, *parts: str) -> str:
        """An HMAC of `parts` with the server's secret (one-time codes are stored so)."""
        return hmac.new(self._secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()
