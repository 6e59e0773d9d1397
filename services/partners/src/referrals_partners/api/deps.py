"""Partners' bindings of the edge's dependencies (`referrals_common.edge.deps`): who is calling,
the runtime and the unit of work a request runs in, and the access audit. Nothing of the edge
is written here, only bound to partners' runtime, key table and texts.

* `CenterDep`: the code of the cancer center whose API key (`X-Api-Key: ccr_…`) this is.
* `OperatorDep`: an operator, by their key (`X-Api-Key: ops_…`), as the audit names them
  (`ops:<key id>`).
  One header, two schemes: both keys live in `api_clients`, and a valid key of the other role is
  an authenticated caller refused with 401, audited as denied, per call.
* `CaseAccessDep`: the holder of the case access token (`Authorization: Bearer`) for the case in
  the path; another case's token is a 404, as if the case did not exist.
* `RuntimeDep`, `UowDep`, `audit`: the process's runtime, the request's unit of work, one row
  of partners' access audit.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from referrals_common.edge.deps import UowDep, api_key_principal, app_runtime, audit, case_access
from referrals_common.edge.principals import CaseAccess
from referrals_partners.bootstrap import Runtime
from referrals_partners.centers import KeyHolder
from referrals_partners.models import ApiClient

RuntimeDep = Annotated[Runtime, Depends(app_runtime)]

center_key = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="CenterApiKey",
    auto_error=False,
    description="The center's API key (`ccr_…`), issued by the platform's operators",
)
operator_key = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="OperatorApiKey",
    auto_error=False,
    description="An operator's API key (`ops_…`)",
)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CaseAccessToken",
    bearerFormat="JWT",
    description="The case access token issued by intake",
)

current_center = api_key_principal(
    center_key,
    model=ApiClient,
    principal=KeyHolder.of,
    what="the center's",
    accept=lambda holder: holder.is_center,
)
current_operator = api_key_principal(
    operator_key,
    model=ApiClient,
    principal=KeyHolder.of,
    what="an operator's",
    accept=lambda holder: holder.is_operator,
)


async def center_code(holder: Annotated[KeyHolder, Depends(current_center)]) -> str:
    """The calling center's code (a center's key always names one: `KeyHolder.is_center`)."""
    assert holder.center_code is not None
    return holder.center_code


async def operator_actor(holder: Annotated[KeyHolder, Depends(current_operator)]) -> str:
    """The calling operator as the audit and the dead letters' replays name them."""
    return f"ops:{holder.key_id}"


CenterDep = Annotated[str, Depends(center_code)]
OperatorDep = Annotated[str, Depends(operator_actor)]


async def patient_access(
    request: Request,
    case_id: Annotated[UUID, Path()],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> CaseAccess:
    """The edge's `case_access`, declared with partners' scheme text and path parameter (the
    OpenAPI document says what it always said)."""
    return await case_access(request, case_id, credentials)


CaseAccessDep = Annotated[CaseAccess, Depends(patient_access)]

__all__ = [
    "CaseAccessDep",
    "CenterDep",
    "OperatorDep",
    "RuntimeDep",
    "UowDep",
    "audit",
]
