"""Every API's documentation pages work without internet (`referrals_common.api.docs`): `/docs`
and `/redoc` name only the service's own assets, and the service serves each of them."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import create_app as create_records_app

pytestmark = pytest.mark.unit

APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
LINKED = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")


def client_of(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


def linked(page: str) -> list[str]:
    """What a page loads: its scripts, styles, icon and OpenAPI document."""
    return [a or b for a, b in LINKED.findall(page)]


def the_content_type_of(asset: str) -> str:
    return next(kind for suffix, kind in CONTENT_TYPES.items() if asset.endswith(suffix))


@pytest.fixture(params=sorted(APPS))
async def api(request: pytest.FixtureRequest):
    async with client_of(APPS[request.param]()) as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_each_docs_page_loads_only_the_services_own_assets(api, page):
    answer = await api.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "://" not in answer.text, "the page names another host"
    urls = linked(answer.text)
    assets = [u for u in urls if u != "/openapi.json"]
    assert "/openapi.json" in urls
    assert assets and all(u.startswith("/docs/") for u in assets), urls
    for asset in assets:
        served = await api.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["content-type"].startswith(the_content_type_of(asset)), asset
        assert served.content, asset


async def test_swagger_ui_and_redoc_are_the_real_distributions(api):
    swagger = await api.get("/docs/swagger-ui-bundle.js")
    redoc = await api.get("/docs/redoc.standalone.js")
    assert "SwaggerUIBundle" in swagger.text
    assert "Redoc" in redoc.text
    assert ".swagger-ui" in (await api.get("/docs/swagger-ui.css")).text


async def test_swagger_ui_asks_no_public_validator_about_the_document(api):
    page = (await api.get("/docs")).text
    assert '"validatorUrl": null' in page


async def test_the_oauth2_redirect_page_is_still_a_page_not_a_missing_asset(api):
    answer = await api.get("/docs/oauth2-redirect")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")


async def test_an_asset_that_does_not_exist_is_a_404_problem(api):
    answer = await api.get("/docs/nothing-here.js")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_behind_a_path_prefix_the_pages_name_their_assets_under_it(page):
    async with client_of(create_intake_app(), root_path="/intake") as api:
        answer = await api.get(page)
    assert answer.status_code == 200
    urls = linked(answer.text)
    assert urls and all(u.startswith("/intake/") for u in urls), urls
