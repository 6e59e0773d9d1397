"""CORS on intake (real PostgreSQL): a partner's single-page app on an origin its front-end
client listed may call the case-token paths from a browser; every other origin, path or
credential gets no CORS header, and a preflight from an unlisted origin is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from referrals_common.auth.api_keys import parse_api_key
from referrals_intake.bootstrap import build_runtime
from referrals_intake.main import create_app

from .conftest import case_body, intake_settings, new_client_key

pytestmark = pytest.mark.integration

SPA = "https://app.kyiv-clinic.example"
OTHER_SPA = "https://app.lviv-clinic.example"


@pytest.fixture
async def world(intake_dsn, kafka_bootstrap) -> AsyncIterator[dict]:
    rt = build_runtime(intake_settings(intake_dsn, kafka_bootstrap))
    kyiv = await new_client_key(rt, "Kyiv clinic")
    lviv = await new_client_key(rt, "Lviv clinic")
    rt.settings = rt.settings.model_copy(
        update={
            "front_end_origins": {
                parse_api_key(kyiv).key_id: [SPA],
                parse_api_key(lviv).key_id: [OTHER_SPA],
            }
        }
    )
    app = create_app(runtime=rt)
    app.state.runtime = rt
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as api:
        created = await api.post("/v1/cases", json=case_body(), headers={"X-Api-Key": kyiv})
        assert created.status_code == 201
        yield {
            "api": api,
            "case_id": created.json()["case"]["id"],
            "token": created.json()["access_token"],
            "kyiv": kyiv,
        }
    await rt.db.dispose()


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_a_preflight_from_a_listed_origin_is_answered(world) -> None:
    response = await world["api"].options(
        f"/v1/cases/{world['case_id']}",
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SPA
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == (
        "authorization, content-type, idempotency-key"
    )
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == "Origin"


async def test_the_token_s_own_front_end_origin_may_read_the_answer(world) -> None:
    response = await world["api"].get(
        f"/v1/cases/{world['case_id']}/timeline",
        headers={"Origin": SPA, "Authorization": f"Bearer {world['token']}"},
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]


async def test_an_unlisted_origin_gets_no_cors_headers(world) -> None:
    stranger = "https://evil.example"
    preflight = await world["api"].options(
        f"/v1/cases/{world['case_id']}",
        headers={"Origin": stranger, "Access-Control-Request-Method": "GET"},
    )
    actual = await world["api"].get(
        f"/v1/cases/{world['case_id']}",
        headers={"Origin": stranger, "Authorization": f"Bearer {world['token']}"},
    )

    assert preflight.status_code == 403
    assert preflight.json()["type"].endswith("/cors-preflight-refused")
    assert cors_headers(preflight) == {}
    assert actual.status_code == 200  # the browser, not the server, withholds the answer
    assert cors_headers(actual) == {}


async def test_another_front_end_s_origin_cannot_read_this_front_end_s_case(world) -> None:
    response = await world["api"].get(
        f"/v1/cases/{world['case_id']}",
        headers={"Origin": OTHER_SPA, "Authorization": f"Bearer {world['token']}"},
    )

    assert cors_headers(response) == {}


async def test_the_api_key_never_crosses_origins(world) -> None:
    preflight = await world["api"].options(
        "/v1/cases/",
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )
    with_key = await world["api"].post(
        f"/v1/cases/{world['case_id']}/access-token",
        headers={"Origin": SPA, "X-Api-Key": world["kyiv"]},
    )

    assert preflight.status_code == 403
    assert "x-api-key" in preflight.json()["detail"]
    assert with_key.status_code == 200
    assert cors_headers(with_key) == {}


async def test_paths_outside_the_case_token_paths_take_no_part(world) -> None:
    response = await world["api"].get("/v1/.well-known/jwks.json", headers={"Origin": SPA})
    preflight = await world["api"].options(
        "/openapi.json", headers={"Origin": SPA, "Access-Control-Request-Method": "GET"}
    )

    assert cors_headers(response) == {} and cors_headers(preflight) == {}
