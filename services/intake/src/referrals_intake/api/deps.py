"""Who is calling, and the unit of work a request runs in: the edge's dependencies
(`referrals_common.edge.deps`) bound to intake's runtime, key table and principal.

* `RuntimeDep`: the runtime `bootstrap.build_runtime` made for this process.
* `UowDep`: the request's unit of work (its routes commit it).
* `ClientDep`: a partner front end, by its API key (`X-Api-Key`, intake's `api_clients`).
* `CaseAccessDep`: the holder of a case access token (`Authorization: Bearer`) for the case in
  the path. A token for another case gets 404, exactly like a case that does not exist: a caller
  learns nothing about cases that are not theirs.
* `audit`: a row of the access audit in a transaction of its own (a refused change).
* `single_statements(db)`: a connection whose every statement commits on its own, for a write
  that is one statement (opening a case).

Every denied call of an authenticated caller is written to the access audit; refused credentials
(malformed, unknown or revoked keys, invalid tokens) count towards the edge's lockout and are
audited in summary, one row per credential and window (`referrals_common.edge`). A verified
caller spends one of its requests (429 past its rate limit).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import APIKeyHeader

from referrals_common.db import Database
from referrals_common.edge.deps import (
    CaseAccessDep,
    UowDep,
    api_key_principal,
    app_runtime,
    audit,
    case_access,
    case_token,
)
from referrals_common.native_sql import Autocommit, native_connection
from referrals_intake.bootstrap import Runtime
from referrals_intake.clients import Client
from referrals_intake.models import ApiClient

RuntimeDep = Annotated[Runtime, Depends(app_runtime)]

front_end_key = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="FrontEndApiKey",
    auto_error=False,
    description="The partner front end's API key",
)
current_client = api_key_principal(
    front_end_key,
    model=ApiClient,
    principal=lambda key_id, row: Client(key_id=key_id, name=row.name),
    what="the front end's",
    actor_prefix="client",
)
ClientDep = Annotated[Client, Depends(current_client)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        min_length=8,
        description="A unique key per intended operation (e.g. a UUID). Sending the same key "
        "again returns the first result instead of doing it twice.",
    ),
]


def single_statements(db: Database) -> AbstractAsyncContextManager[Autocommit]:
    """A connection of `db`'s pool on which each statement commits by itself (PostgreSQL's
    autocommit: no transaction is opened on it): for a write that is one statement, atomic on
    its own, which then costs one round trip instead of three (no BEGIN, no COMMIT), and no ORM
    session or SQLAlchemy connection around it. `referrals_common.native_sql.native_connection`:
    a connection interrupted, failed or left in a transaction is closed, not given back."""
    return native_connection(db.engine)


__all__ = [
    "CaseAccessDep",
    "ClientDep",
    "IdempotencyKey",
    "RuntimeDep",
    "UowDep",
    "audit",
    "case_access",
    "case_token",
    "current_client",
    "single_statements",
]
