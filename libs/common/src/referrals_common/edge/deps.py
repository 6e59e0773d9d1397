"""The FastAPI dependencies every API uses, written once: the process's runtime, a unit of work,
a caller with an API key, the holder of a case's access token, and one row of the access audit.

A service binds them in its `api/deps.py`, one line each, to its own runtime type, key table and
principal; its routes then take the `Annotated` aliases. The runtime is the object a process's
bootstrap built and `create_service_app` put on `app.state.runtime`: routes are handed it by
the request, and never import the module that built it.

    RuntimeDep = Annotated[Runtime, Depends(app_runtime)]
    current_client = api_key_principal(
        client_key, model=ApiClient, principal=lambda key_id, row: Client(key_id, row.name),
        actor_prefix="client", what="the front end's",
    )
    ClientDep = Annotated[Client, Depends(current_client)]

What the runtime must carry is `EdgeRuntime`: the database, the pepper of its key hashes, the
recently verified keys, the access log, and the case-token verifier (None where a service
takes no case tokens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Protocol, TypeVar, cast
from uuid import UUID

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from referrals_common.api.problems import Unauthorized
from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import CaseTokenVerifier
from referrals_common.db import Database, UnitOfWork
from referrals_common.edge.middleware import authenticated
from referrals_common.edge.principals import (
    AccessLog,
    CaseAccess,
    StoredKey,
    key_table,
    route_of,
    verify_api_key,
    verify_case_token,
)

P = TypeVar("P")
Row = TypeVar("Row", bound=StoredKey)


class EdgeRuntime(Protocol):
    """What the edge's dependencies read of a process's runtime."""

    @property
    def db(self) -> Database: ...
    @property
    def pepper(self) -> bytes: ...
    @property
    def verified_keys(self) -> VerifiedKeys[Any]: ...
    @property
    def access_log(self) -> AccessLog: ...


async def app_runtime(request: Request) -> Any:
    """The runtime the process's bootstrap built (`app.state.runtime`); a service types it with
    its own alias, `Annotated[Runtime, Depends(app_runtime)]`. A coroutine function although it
    awaits nothing: FastAPI runs a plain function dependency in its thread pool, a thread hop
    (and a GIL hand-over) per request for one attribute read."""
    return request.app.state.runtime


def edge_runtime(request: Request) -> EdgeRuntime:
    return cast(EdgeRuntime, request.app.state.runtime)


async def unit_of_work(request: Request) -> AsyncIterator[UnitOfWork]:
    """One unit of work for the request: committed when the route returns, rolled back when it
    raises."""
    async with edge_runtime(request).db.unit_of_work() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(unit_of_work)]

case_token = HTTPBearer(
    auto_error=False,
    scheme_name="CaseAccessToken",
    bearerFormat="JWT",
    description="A case access token (intake issues it with the case and refreshes it)",
)


async def case_access(
    request: Request,
    case_id: Annotated[UUID, Path(description="The case id")],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(case_token)],
) -> CaseAccess:
    """The holder of the token of the case in the path; another case's token is a 404, as if
    the case did not exist (`verify_case_token`)."""
    runtime = request.app.state.runtime
    verifier: CaseTokenVerifier | None = getattr(runtime, "verifier", None)
    return await verify_case_token(
        request, credentials, case_id, verifier=verifier, log=runtime.access_log
    )


CaseAccessDep = Annotated[CaseAccess, Depends(case_access)]


def api_key_principal(
    header: APIKeyHeader,
    *,
    model: type[Row],
    principal: Callable[[str, Row], P],
    what: str,
    actor_prefix: str = "key",
    accept: Callable[[P], bool] | None = None,
    digest: Callable[[str], str] | None = None,
) -> Callable[..., Awaitable[P]]:
    """A dependency giving the caller whose API key (`header`) is valid in `model`'s table, as
    `principal(key id, row)`; 401 otherwise.

    * A missing key: "This endpoint needs <what> API key in X-Api-Key."; an unknown, wrong or
      revoked one counts towards the edge's lockout and its audit summary (`verify_api_key`).
    * `accept`: whether this principal may call these routes (a center's key on an operator's
      route). A valid key it does not accept is an authenticated caller: audited as denied,
      per call, and refused with 401 like an unknown key.
    * A verified key is remembered for the runtime's `verified_keys` time (no database read per
      request; a revoked key stops working within it) and spends one of its caller's requests.
    * `digest`: the table stores the hash of `digest(secret)` (a key another service issued).
    """
    missing = f"This endpoint needs {what} API key in X-Api-Key."
    refused = (
        f"The API key is not valid here: this endpoint needs {what} key."
        if accept
        else "The API key is not valid."
    )

    async def current(request: Request, presented: Annotated[str | None, Security(header)]) -> P:
        runtime = edge_runtime(request)
        cached = runtime.verified_keys.get(presented) if presented else None
        if cached is not None and (accept is None or accept(cached[1])):
            authenticated(request, f"key:{cached[0]}")
            return cast(P, cached[1])
        key_id, row = await verify_api_key(
            request,
            presented,
            lookup=key_table(runtime.db, model),
            pepper=runtime.pepper,
            log=runtime.access_log,
            actor_prefix=actor_prefix,
            missing=missing,
            refused=refused,
            digest=digest,
        )
        caller = principal(key_id, row)
        if accept is not None and not accept(caller):
            await runtime.access_log.record(f"key:{key_id}", route_of(request), outcome="denied")
            raise Unauthorized(refused)
        assert presented is not None  # verify_api_key refuses a missing key
        runtime.verified_keys.put(presented, (key_id, caller))
        return caller

    current.__doc__ = f"The caller presenting {what} API key in {header.model.name}."
    # The annotations as objects: under `from __future__ import annotations` they are strings
    # FastAPI would resolve in this module's globals, where this call's `header` is not.
    current.__annotations__ = {
        "request": Request,
        "presented": Annotated[str | None, Security(header)],
        "return": object,
    }
    return current


async def audit(
    request: Request,
    actor: str,
    action: str | None = None,
    *,
    outcome: str = "ok",
    **subjects: Any,
) -> None:
    """One row of the service's access audit, in a transaction of its own: who (`actor`) did
    what (`action`, by default the route), to which case, document or referral (`subjects`),
    with which `outcome` (`ok`, `denied`)."""
    await edge_runtime(request).access_log.record(
        actor, action or route_of(request), outcome=outcome, **subjects
    )


__all__ = [
    "CaseAccessDep",
    "EdgeRuntime",
    "UowDep",
    "api_key_principal",
    "app_runtime",
    "audit",
    "case_access",
    "case_token",
    "unit_of_work",
]
