"""Who is calling, and the unit of work a request runs in.

* `ClientDep`: a partner front end, by its API key (`X-Api-Key`).
* `CaseAccessDep`: the holder of a case access token (`Authorization: Bearer`) for the case in
  the path. A token for another case gets 404, exactly like a case that does not exist: a caller
  learns nothing about cases that are not theirs. Every denied call of an authenticated caller is
  written to the access audit; refused credentials (malformed, unknown or revoked keys, invalid
  tokens) count towards the edge's lockout and are audited in summary, one row per credential
  and window (`referrals_common.edge`). A verified caller spends one of its requests (429 past
  its rate limit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from referrals_common.api.problems import NotFound, Unauthorized
from referrals_common.auth.api_keys import InvalidApiKey, parse_api_key, verify_secret
from referrals_common.auth.case_tokens import InvalidCaseToken
from referrals_common.db import UnitOfWork
from referrals_common.edge import FailureSummary, authenticated, authentication_failed
from referrals_intake.main import Runtime
from referrals_intake.models import AccessAudit
from referrals_intake.repository import CaseRepository

api_key_header = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="The partner front end's API key"
)
bearer = HTTPBearer(auto_error=False, description="A case access token")


def _route(request: Request) -> str:
    """`GET /v1/cases/{case_id}`: the route, not the path, so no identifier is logged twice."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"[:120]


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with runtime.db.unit_of_work() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


@dataclass(frozen=True)
class Client:
    key_id: str
    name: str

    @property
    def actor(self) -> str:
        return f"client:{self.key_id}"


async def _audit_denied(runtime: Runtime, actor: str, action: str, case_id: UUID | None) -> None:
    async with runtime.db.unit_of_work() as uow:
        CaseRepository(uow.session).audit(actor, action, case_id, outcome="denied")
        await uow.commit()


async def audit_failed_authentications(
    runtime: Runtime, summaries: Sequence[FailureSummary]
) -> None:
    """One audit row per summary of failed authentications (`failed_authentication x<count>
    from <address>`), in one transaction."""
    async with runtime.db.unit_of_work() as uow:
        for summary in summaries:
            uow.session.add(
                AccessAudit(actor=summary.actor[:120], action=summary.action, outcome="denied")
            )
        await uow.commit()


async def _authentication_failed(request: Request, runtime: Runtime, actor: str) -> None:
    await authentication_failed(
        request, actor=actor, sink=partial(audit_failed_authentications, runtime)
    )


async def current_client(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    presented: Annotated[str | None, Security(api_key_header)],
) -> Client:
    if not presented:
        raise Unauthorized("This endpoint needs the front end's API key in X-Api-Key.")
    cached = runtime.verified_keys.get(presented)
    if cached is not None:
        authenticated(request, f"key:{cached.key_id}")
        return cached  # type: ignore[no-any-return]
    try:
        _, key_id, secret = parse_api_key(presented)
    except InvalidApiKey:
        await _authentication_failed(request, runtime, "client:malformed-key")
        raise Unauthorized("The API key is malformed.") from None
    row = await CaseRepository(uow.session).client(key_id)
    if (
        row is None
        or row.revoked_at is not None
        or not verify_secret(secret, row.secret_hash, runtime.pepper)
    ):
        await _authentication_failed(request, runtime, f"client:{key_id}")
        raise Unauthorized("The API key is not valid.")
    client = Client(key_id=row.key_id, name=row.name)
    runtime.verified_keys.put(presented, client)
    authenticated(request, f"key:{client.key_id}")
    return client


ClientDep = Annotated[Client, Depends(current_client)]


@dataclass(frozen=True)
class CaseAccess:
    case_id: UUID
    client_id: str

    @property
    def actor(self) -> str:
        return f"case-token:{self.client_id}"


async def case_access(
    request: Request,
    runtime: RuntimeDep,
    case_id: Annotated[UUID, Path(description="The case id")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> CaseAccess:
    if credentials is None:
        raise Unauthorized("This endpoint needs the case access token: Authorization: Bearer …")
    try:
        claims = runtime.verifier.verify(credentials.credentials)
    except InvalidCaseToken as exc:
        await _authentication_failed(request, runtime, "case-token:invalid")
        raise Unauthorized(f"The case access token is not valid: {exc.reason}.") from None
    authenticated(request, f"case:{claims.case_id}")
    if claims.case_id != case_id:
        await _audit_denied(runtime, f"case-token:{claims.client_id}", _route(request), case_id)
        raise NotFound(f"There is no case {case_id}.")
    return CaseAccess(case_id=case_id, client_id=claims.client_id)


CaseAccessDep = Annotated[CaseAccess, Depends(case_access)]
