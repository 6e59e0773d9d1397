"""Who is calling: what every API's authentication does the same way, written once.

* `AccessLog`: a service's access audit table (`actor`, `action`, `case_id`, `outcome`, and the
  service's own columns), written in transactions of its own, so a refused change still leaves
  its row; refused credentials go to the edge's summaries (`failed_authentication x<n>`).
* `verify_api_key`: an `X-Api-Key` (`<prefix>_<key id>_<secret>`) checked against the
  service's own key table; a refused key counts towards the edge's lockout, a valid one spends
  one of its caller's requests.
* `verify_case_token` / `CaseAccess`: the holder of a case access token intake issued, for the
  case in the path; another case's token is a 404, as if the case did not exist, and audited.

The services keep what is theirs: where their keys live, what a key may do, their caches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials

from referrals_common.api.problems import NotFound, Unauthorized
from referrals_common.auth.api_keys import InvalidApiKey, parse_api_key, verify_secret
from referrals_common.auth.case_tokens import CaseTokenVerifier, InvalidCaseToken
from referrals_common.db import Database
from referrals_common.edge.audit import FailureSummary
from referrals_common.edge.middleware import authenticated, authentication_failed
from referrals_common.tables import access_audit_values


def route_of(request: Request) -> str:
    """`GET /v1/cases/{case_id}`: the route template, not the path, so no identifier is
    written twice into an audit row."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"[:120]


class AccessLog:
    """A service's access audit table (a SQLModel with `actor`, `action`, `case_id`,
    `outcome` and the service's own columns), each row in a transaction of its own, on the
    database's side pool (`Database.side_unit_of_work`): a route writes its rows while it holds
    its own unit of work's connection."""

    def __init__(self, db: Database, model: type[Any]) -> None:
        self.db = db
        self.model = model

    async def record(
        self,
        actor: str,
        action: str,
        *,
        case_id: UUID | None = None,
        outcome: str = "ok",
        **columns: Any,
    ) -> None:
        """One row: who, did what, on which case, with which outcome."""
        async with self.db.side_unit_of_work() as uow:
            uow.session.add(
                self.model(
                    **access_audit_values(actor, action),
                    case_id=case_id,
                    outcome=outcome,
                    **columns,
                )
            )
            await uow.commit()

    async def failures(self, summaries: Sequence[FailureSummary]) -> None:
        """One row per summary of failed authentications (`failed_authentication x<count> from
        <address>`), in one transaction: a flood adds a few rows a window, not one an attempt."""
        async with self.db.side_unit_of_work() as uow:
            for summary in summaries:
                uow.session.add(
                    self.model(
                        actor=summary.actor[:120],
                        action=summary.action,
                        case_id=None,
                        outcome="denied",
                    )
                )
            await uow.commit()

    async def authentication_failed(self, request: Request, actor: str) -> None:
        """A refused credential: counted towards the lockout, audited in summary."""
        await authentication_failed(request, actor=actor, sink=self.failures)


class StoredKey(Protocol):
    """What `verify_api_key` needs of a row of a service's key table (read only: a table may
    keep no hash for a key it knows only as revoked)."""

    @property
    def secret_hash(self) -> str | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...


Row = TypeVar("Row", bound=StoredKey)


def key_table(db: Database, model: type[Row]) -> Callable[[str], Awaitable[Row | None]]:
    """`verify_api_key`'s lookup of a key id in a service's key table (its primary key)."""

    async def lookup(key_id: str) -> Row | None:
        async with db.unit_of_work() as uow:
            return await uow.session.get(model, key_id)

    return lookup


async def verify_api_key(
    request: Request,
    presented: str | None,
    *,
    lookup: Callable[[str], Awaitable[Row | None]],
    pepper: bytes,
    log: AccessLog,
    actor_prefix: str,
    missing: str,
    refused: str = "The API key is not valid.",
    digest: Callable[[str], str] | None = None,
) -> tuple[str, Row]:
    """(key id, its row) for a valid, unrevoked key; 401 otherwise (`missing` when no key was
    presented, `refused` when the key is unknown, wrong or revoked). A refused key counts
    towards the edge's lockout and its summary row (`<actor_prefix>:<key id>`, or
    `<actor_prefix>:malformed-key`); a valid key spends one of its caller's requests. `digest`:
    the table stores the peppered hash of `digest(secret)`, not of the secret (a key another
    service issued, known by its `key_digest`)."""
    if not presented:
        raise Unauthorized(missing)
    try:
        _, key_id, secret = parse_api_key(presented)
    except InvalidApiKey:
        await log.authentication_failed(request, f"{actor_prefix}:malformed-key")
        raise Unauthorized("The API key is malformed.") from None
    row = await lookup(key_id)
    if (
        row is None
        or row.revoked_at is not None
        or row.secret_hash is None
        or not verify_secret(digest(secret) if digest else secret, row.secret_hash, pepper)
    ):
        await log.authentication_failed(request, f"{actor_prefix}:{key_id}")
        raise Unauthorized(refused)
    authenticated(request, f"key:{key_id}")
    return key_id, row


@dataclass(frozen=True)
class CaseAccess:
    """The holder of one case's access token, issued to the front end `client_id`; `locale` is
    the case's language the token names (`loc`), None for a token without one."""

    case_id: UUID
    client_id: str
    locale: str | None = None

    @property
    def actor(self) -> str:
        return f"case-token:{self.client_id}"


async def verify_case_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    case_id: UUID,
    *,
    verifier: CaseTokenVerifier | None,
    log: AccessLog,
) -> CaseAccess:
    """The access of a valid token for `case_id`. No token or an invalid one: 401 (an invalid
    one counts towards the lockout); a valid token of another case: 404, as if the case did not
    exist, audited as denied with the case asked for."""
    if credentials is None:
        raise Unauthorized("This endpoint needs the case access token: Authorization: Bearer …")
    if verifier is None:
        raise Unauthorized("Case tokens are not configured on this service.")
    try:
        claims = verifier.verify(credentials.credentials)
    except InvalidCaseToken as exc:
        await log.authentication_failed(request, "case-token:invalid")
        raise Unauthorized(f"The case access token is not valid: {exc.reason}.") from None
    authenticated(request, f"case:{claims.case_id}")
    if claims.case_id != case_id:
        await log.record(
            f"case-token:{claims.client_id}", route_of(request), case_id=case_id, outcome="denied"
        )
        raise NotFound(f"There is no case {case_id}.")
    return CaseAccess(case_id=case_id, client_id=claims.client_id, locale=claims.locale)


__all__ = [
    "AccessLog",
    "CaseAccess",
    "StoredKey",
    "key_table",
    "route_of",
    "verify_api_key",
    "verify_case_token",
]
