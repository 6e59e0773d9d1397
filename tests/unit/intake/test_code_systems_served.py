"""The platform's own code systems resolve: every system URL of intake's FHIR export under
`{public_base_url}/fhir/CodeSystem/` is served by intake at that path, with every code the
export takes from it (intake's app in-process, its runtime's settings only)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from referrals_intake.fhir import TASK_STATUS, case_bundle
from referrals_intake.main import create_app

from ...contracts.test_fhir_validator import _case, _variants

pytestmark = pytest.mark.unit

BASE = "https://intake.example.org"


def _codings(node: Any) -> list[tuple[str, str]]:
    if isinstance(node, dict):
        own = [(node["system"], node["code"])] if {"system", "code"} <= node.keys() else []
        return own + [c for value in node.values() for c in _codings(value)]
    if isinstance(node, list):
        return [c for item in node for c in _codings(item)]
    return []


@pytest.fixture
async def intake() -> httpx.AsyncClient:
    app = create_app()
    app.state.runtime = SimpleNamespace(settings=SimpleNamespace(public_base_url=BASE))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def test_every_own_system_of_an_export_resolves_with_its_codes(intake):
    cases = [_case(status) for status in TASK_STATUS] + list(_variants().values())
    used: dict[str, set[str]] = {}
    for case in cases:
        for system, code in _codings(case_bundle(case, base_url=BASE)):
            if system.startswith(f"{BASE}/fhir/CodeSystem/"):
                used.setdefault(system, set()).add(code)
    assert len(used) >= 8

    for system, codes in used.items():
        r = await intake.get(urlsplit(system).path)
        assert r.status_code == 200, (system, r.text)
        assert r.headers["content-type"] == "application/fhir+json"
        served = r.json()
        assert served["resourceType"] == "CodeSystem" and served["url"] == system
        assert codes <= {c["code"] for c in served["concept"]}, system


async def test_the_search_url_lists_them_and_an_unknown_one_is_a_404_problem(intake):
    listed = (await intake.get("/fhir/CodeSystem")).json()
    assert listed["resourceType"] == "Bundle" and listed["type"] == "searchset"
    assert listed["total"] == len(listed["entry"]) >= 8
    unknown = await intake.get("/fhir/CodeSystem/no-such-system")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
