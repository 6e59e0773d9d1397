"""Download links: short-lived, for one document, audited at every use, and revoked with the
referral that granted them.

A link is a URL of records itself (`/v1/downloads/<token>`); the token is a JWT (HS256, records'
own key) naming the document, the caller it was issued to and, for a center, the referral that
lets it read. Every request on a link is checked again (the referral still open, the document
not deleted) and written to the audit log before records streams the object from storage: a
presigned storage URL would open the object to whoever holds it, unaudited, until it expires,
whatever happened to the referral meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

AUDIENCE = "referrals-records-download"
ALGORITHM = "HS256"


class InvalidLink(Exception):
    """The link's token is forged, altered or expired; `expired` says which."""

    def __init__(self, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


@dataclass(frozen=True)
class DownloadGrant:
    """What one link lets its holder download, and on whose behalf."""

    document_id: UUID
    case_id: UUID
    actor: str
    """Whom the link was issued to: `case-token:<client>` or `center:<code>`."""
    referral_id: UUID | None
    """For a center, the referral whose openness the link depends on."""
    download_name: str
    expires_at: datetime


class LinkSigner:
    """Issues and opens download tokens with records' signing key."""

    def __init__(self, key: bytes, ttl: timedelta) -> None:
        if len(key) < 32:
            raise ValueError("the link signing key must have at least 32 bytes")
        self._key = key
        self.ttl = ttl

    @classmethod
    def development(cls, pepper: str, ttl: timedelta) -> LinkSigner:
        """A key derived from the API key pepper (development only: other environments set
        their own key; every records process derives the same one)."""
        return cls(hashlib.sha256(b"records-dev-link-key" + pepper.encode()).digest(), ttl)

    @classmethod
    def from_base64(cls, key: str, ttl: timedelta) -> LinkSigner:
        return cls(base64.b64decode(key), ttl)

    def sign(self, grant: DownloadGrant) -> str:
        """The token of `grant`."""
        claims = {
            "aud": AUDIENCE,
            "doc": str(grant.document_id),
            "case": str(grant.case_id),
            "sub": grant.actor,
            "ref": str(grant.referral_id) if grant.referral_id else None,
            "name": grant.download_name,
            "exp": int(grant.expires_at.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def grant(
        self,
        *,
        document_id: UUID,
        case_id: UUID,
        actor: str,
        referral_id: UUID | None,
        download_name: str,
    ) -> DownloadGrant:
        """A grant for `ttl` from now."""
        return DownloadGrant(
            document_id=document_id,
            case_id=case_id,
            actor=actor,
            referral_id=referral_id,
            download_name=download_name,
            expires_at=datetime.now(UTC).replace(microsecond=0) + self.ttl,
        )

    def open(self, token: str) -> DownloadGrant:
        """The grant a token carries; InvalidLink if it is forged, altered or expired."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "aud", "doc", "case", "sub"]},
            )
            return DownloadGrant(
                document_id=UUID(claims["doc"]),
                case_id=UUID(claims["case"]),
                actor=str(claims["sub"]),
                referral_id=UUID(claims["ref"]) if claims.get("ref") else None,
                download_name=str(claims.get("name") or "document"),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except jwt.ExpiredSignatureError:
            raise InvalidLink(expired=True) from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise InvalidLink(expired=False) from None
