"""The edge's dependencies, written once in `referrals_common.edge.deps` and bound by every
service's `api/deps.py`: an API-key principal (missing, malformed, unknown, revoked, wrong role,
cached, revoked while cached), the case-token holder, the audit row, the runtime lookup. On an app
built by `create_service_app`, in-process, with an in-memory key table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import APIRouter, Depends
from fastapi.security import APIKeyHeader

from referrals_common.auth.api_keys import VerifiedKeys, generate_api_key, hash_secret
from referrals_common.auth.case_tokens import (
    CaseTokenIssuer,
    CaseTokenVerifier,
    generate_private_key_pem,
    public_jwks,
)
from referrals_common.edge.deps import (
    CaseAccessDep,
    api_key_principal,
    app_runtime,
    audit,
)
from referrals_common.service_app import create_service_app
from referrals_common.settings import ServiceSettings

pytestmark = pytest.mark.unit
PEPPER = b"pepper-for-tests"


@dataclass
class KeyRow:
    secret_hash: str | None
    role: str
    revoked_at: datetime | None = None


@dataclass
class Session:
    rows: dict[str, KeyRow]
    reads: list[str]

    async def get(self, model: type[Any], key_id: str) -> KeyRow | None:
        self.reads.append(key_id)
        return self.rows.get(key_id)


@dataclass
class Db:
    rows: dict[str, KeyRow] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Any]:
        @dataclass
        class Uow:
            session: Session

        yield Uow(Session(self.rows, self.reads))


@dataclass
class Log:
    rows: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    async def record(self, actor: str, action: str, *, outcome: str = "ok", **ids: Any) -> None:
        self.rows.append((actor, action, outcome, ids))

    async def authentication_failed(self, request: Any, actor: str) -> None:
        self.failed.append(actor)


@dataclass
class Runtime:
    settings: ServiceSettings
    verifier: CaseTokenVerifier | None
    db: Db = field(default_factory=Db)
    pepper: bytes = PEPPER
    verified_keys: VerifiedKeys[Any] = field(default_factory=lambda: VerifiedKeys(PEPPER))
    access_log: Log = field(default_factory=Log)


@dataclass(frozen=True)
class Caller:
    key_id: str
    role: str


center_key = APIKeyHeader(name="X-Api-Key", scheme_name="CenterApiKey", auto_error=False)
current_center = api_key_principal(
    center_key,
    model=KeyRow,
    principal=lambda key_id, row: Caller(key_id, row.role),
    what="the center's",
    actor_prefix="center",
    accept=lambda caller: caller.role == "center",
)
CenterDep = Annotated[Caller, Depends(current_center)]
RuntimeDep = Annotated[Runtime, Depends(app_runtime)]


def make_app(runtime: Runtime) -> Any:
    router = APIRouter(prefix="/v1")

    @router.get("/partner/me")
    async def me(center: CenterDep, rt: RuntimeDep) -> dict[str, Any]:
        return {"key_id": center.key_id, "same_runtime": rt is runtime}

    @router.get("/cases/{case_id}")
    async def case(access: CaseAccessDep) -> dict[str, str]:
        return {"case": str(access.case_id), "client": access.client_id}

    app = create_service_app(
        title="deps",
        description="deps",
        router=router,
        build_runtime=lambda: runtime,
        runtime=runtime,
        service="deps-tests",
    )
    app.state.runtime = runtime
    return app


def public_jwk_of(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issue(runtime: Runtime, role: str) -> str:
    key = generate_api_key("ccr")
    runtime.db.rows[key.key_id] = KeyRow(hash_secret(key.secret, PEPPER), role)
    return key.display


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 4000)), base_url="http://t"
    )


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(ServiceSettings(), verifier=None)


async def test_a_valid_key_is_the_caller_and_is_read_from_the_table_once(runtime: Runtime) -> None:
    key = issue(runtime, "center")
    async with client(make_app(runtime)) as api:
        first = await api.get("/v1/partner/me", headers={"X-Api-Key": key})
        second = await api.get("/v1/partner/me", headers={"X-Api-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json()["same_runtime"] is True
    assert len(runtime.db.reads) == 1  # the second call was served from the verified keys


def test_the_key_is_documented_as_the_services_security_scheme(runtime: Runtime) -> None:
    document = make_app(runtime).openapi()
    operation = document["paths"]["/v1/partner/me"]["get"]
    assert operation["security"] == [{"CenterApiKey": []}]
    assert "parameters" not in operation  # the header is the scheme, not a query parameter
    assert document["components"]["securitySchemes"]["CenterApiKey"]["in"] == "header"


@pytest.mark.parametrize(
    ("presented", "detail"),
    [
        (None, "This endpoint needs the center's API key in X-Api-Key."),
        ("not-a-key", "The API key is malformed."),
        ("unknown", "The API key is not valid here: this endpoint needs the center's key."),
    ],
)
async def test_a_missing_malformed_or_unknown_key_is_401(
    runtime: Runtime, presented: str | None, detail: str
) -> None:
    if presented == "unknown":
        presented = generate_api_key("ccr").display
    headers = {"X-Api-Key": presented} if presented else {}
    async with client(make_app(runtime)) as api:
        answer = await api.get("/v1/partner/me", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["detail"] == detail
    assert len(runtime.access_log.failed) == (0 if presented is None else 1)


async def test_a_revoked_key_and_a_wrong_secret_are_refused(runtime: Runtime) -> None:
    key = issue(runtime, "center")
    key_id = key.split("_")[1]
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    async with client(make_app(runtime)) as api:
        assert (await api.get("/v1/partner/me", headers={"X-Api-Key": forged})).status_code == 401
        runtime.db.rows[key_id].revoked_at = datetime.now(UTC)
        assert (await api.get("/v1/partner/me", headers={"X-Api-Key": key})).status_code == 401
    assert runtime.access_log.failed == [f"center:{key_id}", f"center:{key_id}"]


async def test_a_valid_key_of_another_role_is_refused_and_audited_as_denied(
    runtime: Runtime,
) -> None:
    key = issue(runtime, "operator")
    async with client(make_app(runtime)) as api:
        for _ in range(2):  # refused again: a key of the wrong role is never cached as accepted
            answer = await api.get("/v1/partner/me", headers={"X-Api-Key": key})
            assert answer.status_code == 401
    assert [row[2] for row in runtime.access_log.rows] == ["denied", "denied"]
    assert runtime.access_log.rows[0][1] == "GET /v1/partner/me"
    assert runtime.access_log.failed == []  # a real key is not a failed authentication


async def test_the_case_token_holder_of_the_path_case_only() -> None:
    private = generate_private_key_pem()
    issuer = CaseTokenIssuer(private)
    public = public_jwk_of(private)
    runtime = Runtime(ServiceSettings(), verifier=CaseTokenVerifier(public_jwks(public)))
    case, other = uuid4(), uuid4()
    token = issuer.issue(case, "frontend-1").token
    async with client(make_app(runtime)) as api:
        own = await api.get(f"/v1/cases/{case}", headers={"Authorization": f"Bearer {token}"})
        theirs = await api.get(f"/v1/cases/{other}", headers={"Authorization": f"Bearer {token}"})
        none = await api.get(f"/v1/cases/{case}")
        bad = await api.get(f"/v1/cases/{case}", headers={"Authorization": "Bearer a.b.c"})
    assert own.status_code == 200
    assert own.json() == {"case": str(case), "client": "frontend-1"}
    assert theirs.status_code == 404  # as if the case did not exist
    assert runtime.access_log.rows[-1][2] == "denied"
    assert runtime.access_log.rows[-1][3]["case_id"] == other
    assert none.status_code == 401 and bad.status_code == 401
    assert runtime.access_log.failed == ["case-token:invalid"]


async def test_without_a_verifier_case_tokens_are_refused(runtime: Runtime) -> None:
    async with client(make_app(runtime)) as api:
        answer = await api.get(f"/v1/cases/{uuid4()}", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 401


async def test_an_audit_row_names_the_route_and_its_subjects(runtime: Runtime) -> None:
    @dataclass
    class Request:
        app: Any
        scope: dict[str, Any]
        method: str = "GET"

        @property
        def url(self) -> Any:
            return type("U", (), {"path": "/v1/x"})()

    app = make_app(runtime)
    case_id: UUID = uuid4()
    await audit(Request(app, {}), "center:AAA", case_id=case_id, outcome="denied")  # type: ignore[arg-type]
    assert runtime.access_log.rows == [("center:AAA", "GET /v1/x", "denied", {"case_id": case_id})]
