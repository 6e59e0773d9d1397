"""Records' bindings of the edge's dependencies (`referrals_common.edge.deps`): who is calling,
the runtime and the unit of work a request runs in, and the access audit. Nothing of the edge
is written here, only bound to records' runtime, key table and texts.

* `CaseAccessDep`: the holder of a case access token (`Authorization: Bearer`) for the case in
  the path, with the language records answers the patient in (`locale`).
* `CenterDep`: the code of the cancer center whose API key (`X-Api-Key`) this is: a key
  partners issued and has not revoked, as its events told records (`center_credentials`);
  records issues no keys.
* `RuntimeDep`, `UowDep`, `audit`: the process's runtime, the request's unit of work, one row
  of records' access audit.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from referrals_common.auth.api_keys import key_digest
from referrals_common.edge.deps import UowDep, api_key_principal, app_runtime, audit, case_access
from referrals_common.edge.principals import CaseAccess
from referrals_common.i18n import SOURCE_LOCALE, negotiate
from referrals_records.bootstrap import Runtime
from referrals_records.models import CenterCredential

RuntimeDep = Annotated[Runtime, Depends(app_runtime)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CaseAccessToken",
    bearerFormat="JWT",
    description="The case access token issued by intake",
)
center_key = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="CenterApiKey",
    auto_error=False,
    description="The center's API key (`ccr_…`), issued by partners' operators (the same key "
    "as for partners' API; revoked there, refused here within seconds)",
)

AcceptLanguage = Annotated[
    str | None,
    Header(
        alias="Accept-Language",
        description="The language of the patient's texts in the answer (`uk` or `en`), such as "
        "why an upload was refused; without it, or naming neither, the case's language as its "
        "access token says (`loc`), else English. The answer's `Content-Language` says which.",
        examples=["uk"],
    ),
]


async def patient_access(
    request: Request,
    case_id: Annotated[UUID, Path()],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    accept_language: AcceptLanguage = None,
) -> CaseAccess:
    """The edge's `case_access`, with the language records answers the patient in: the one
    `Accept-Language` asks for among the platform's, else the case's (the token's `loc`), else
    English: records keeps no case, the token carries its language."""
    access = await case_access(request, case_id, credentials)
    return replace(access, locale=negotiate(accept_language, access.locale or SOURCE_LOCALE))


CaseAccessDep = Annotated[CaseAccess, Depends(patient_access)]

current_center = api_key_principal(
    center_key,
    model=CenterCredential,
    principal=lambda _key_id, row: row.center_code,
    what="the center's",
    actor_prefix="center",
    digest=key_digest,  # partners issued the key: records keeps the hash of its digest
)
CenterDep = Annotated[str, Depends(current_center)]

__all__ = ["CaseAccessDep", "CenterDep", "RuntimeDep", "UowDep", "audit"]
