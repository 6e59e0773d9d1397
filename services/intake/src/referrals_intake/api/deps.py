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

from collections.abc import AsyncIterator
from typing import Annotated, cast
from uuid import UUID

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from referrals_common.db import UnitOfWork
from referrals_common.edge import authenticated
from referrals_common.edge.principals import CaseAccess, verify_api_key, verify_case_token
from referrals_intake.bootstrap import Runtime
from referrals_intake.clients import Client
from referrals_intake.repository import CaseRepository

api_key_header = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="FrontEndApiKey",
    auto_error=False,
    description="The partner front end's API key",
)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CaseAccessToken",
    bearerFormat="JWT",
    description="A case access token (intake issues it with the case and refreshes it)",
)


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with runtime.db.unit_of_work() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


async def current_client(
    request: Request,
    runtime: RuntimeDep,
    uow: UowDep,
    presented: Annotated[str | None, Security(api_key_header)],
) -> Client:
    """The partner front end whose API key this is (`referrals_common.edge.principals`)."""
    cached = runtime.verified_keys.get(presented) if presented else None
    if cached is not None:
        authenticated(request, f"key:{cached.key_id}")
        return cached
    key_id, row = await verify_api_key(
        request,
        presented,
        lookup=CaseRepository(uow.session).client,
        pepper=runtime.pepper,
        log=runtime.access_log,
        actor_prefix="client",
        missing="This endpoint needs the front end's API key in X-Api-Key.",
    )
    assert presented is not None  # verify_api_key refuses a missing key
    client = Client(key_id=key_id, name=row.name)
    runtime.verified_keys.put(presented, client)
    return client


ClientDep = Annotated[Client, Depends(current_client)]


async def case_access(
    request: Request,
    runtime: RuntimeDep,
    case_id: Annotated[UUID, Path(description="The case id")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> CaseAccess:
    return await verify_case_token(
        request, credentials, case_id, verifier=runtime.verifier, log=runtime.access_log
    )


CaseAccessDep = Annotated[CaseAccess, Depends(case_access)]
