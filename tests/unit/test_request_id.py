"""`X-Request-ID` (referrals_common.edge.request_id): every answer of every API carries the
request's id, the caller's own when it is a sensible one, and every log line written while the
request runs names it."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import APIRouter

from referrals_common.api.problems import Conflict
from referrals_common.service_app import create_service_app
from referrals_common.telemetry import configure_logging
from referrals_partners.main import create_app as create_partners_app

pytestmark = pytest.mark.unit

log = logging.getLogger("referrals.test.request_id")


class Runtime:
    """A runtime passed in is used as is: nothing to build or dispose."""


def an_app():
    router = APIRouter(prefix="/v1")

    @router.get("/cases/{case_id}")
    async def read_case(case_id: str) -> dict[str, str]:
        """Log, then answer."""
        log.info("reading the case")
        return {"case_id": case_id}

    @router.post("/cases/{case_id}/submit")
    async def submit_case(case_id: str) -> None:
        """Refuse."""
        raise Conflict("The case was submitted already.")

    return create_service_app(
        title="test", description="test", router=router, build_runtime=Runtime, runtime=Runtime()
    )


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=an_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_the_callers_request_id_comes_back_and_names_the_requests_log_lines(client, capsys):
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    configure_logging("test", json=True)
    try:
        answer = await client.get("/v1/cases/c-1", headers={"X-Request-ID": "front-end:42.a_b-c"})
    finally:
        root.handlers, root.level = handlers, level
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "front-end:42.a_b-c"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    (line,) = [x for x in lines if x.get("event") == "reading the case"]
    assert line["request_id"] == "front-end:42.a_b-c"


@pytest.mark.parametrize(
    "given", [None, "", "x" * 129, "has space", "new\\nline", "<script>", "ünïcode".encode()]
)
async def test_a_missing_or_unsafe_request_id_is_replaced_not_refused(client, given):
    headers = {} if given is None else {"X-Request-ID": given}
    answer = await client.get("/v1/cases/c-1", headers=headers)
    assert answer.status_code == 200
    made = answer.headers["X-Request-ID"]
    assert made != given and len(made) == 32 and int(made, 16) >= 0  # a new uuid4, in hex


async def test_problems_and_answers_of_no_route_carry_it_too(client):
    refused = await client.post("/v1/cases/c-1/submit", headers={"X-Request-ID": "r-1"})
    assert refused.status_code == 409
    assert refused.headers["X-Request-ID"] == "r-1"
    nowhere = await client.get("/v1/nowhere", headers={"X-Request-ID": "r-2"})
    assert nowhere.status_code == 404
    assert nowhere.headers["X-Request-ID"] == "r-2"


def test_the_openapi_document_names_the_header_on_every_answer():
    document = create_partners_app().openapi()
    assert "RequestId" in document["components"]["headers"]
    for operations in document["paths"].values():
        for operation in operations.values():
            for answer in operation["responses"].values():
                assert answer["headers"]["X-Request-ID"] == {
                    "$ref": "#/components/headers/RequestId"
                }
