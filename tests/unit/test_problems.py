"""Problem details (RFC 9457): every error of every service answers as application/problem+json,
points at the fields that are wrong, and never shows internals or submitted secrets."""

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import httpx
import pytest
import urllib3.exceptions
from fastapi import FastAPI, Header
from minio.error import S3Error
from pydantic import BaseModel, Field, SecretStr, field_validator
from sqlalchemy.exc import DBAPIError

from referrals_common.api.problems import (
    PROBLEM_MEDIA_TYPE,
    Conflict,
    FieldError,
    NotFound,
    Problem,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    install_problem_handlers,
    problem_responses,
    problem_type,
)

pytestmark = pytest.mark.unit


class Contact(BaseModel):
    email: str = Field(min_length=3)
    phone: str = Field(min_length=6)


class NewCase(BaseModel):
    contact: Contact
    portal_password: SecretStr = Field(min_length=12)
    country: str

    @field_validator("country")
    @classmethod
    def known_country(cls, value: str) -> str:
        if value not in {"ES", "UA"}:
            raise ValueError("we do not take referrals from this country yet")
        return value


class ConsentMissing(Conflict):
    type_slug = "consent-missing"
    title = "Consent has not been recorded"


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/cases", status_code=201, responses=problem_responses(409, 422))
    async def create_case(
        case: NewCase, idempotency_key: Annotated[str, Header(min_length=8)]
    ) -> dict[str, str]:
        return {"country": case.country}

    @app.get("/v1/cases/{case_id}", responses=problem_responses(401, 404))
    async def get_case(case_id: str) -> dict[str, str]:
        raise NotFound(f"There is no case {case_id}.")

    @app.get("/v1/me")
    async def me() -> dict[str, str]:
        raise Unauthorized("The access token has expired.", error="invalid_token")

    @app.post("/v1/cases/{case_id}/submit")
    async def submit(case_id: str) -> dict[str, str]:
        raise ConsentMissing("Record the patient's consent first.", extensions={"case": case_id})

    @app.post("/v1/cases/{case_id}/center")
    async def choose_center(case_id: str) -> dict[str, str]:
        raise Unprocessable(
            "This center does not take this cancer type.",
            errors=[
                FieldError(
                    pointer="/center_id",
                    location="body",
                    message="does not take sarcoma",
                    code="center_declines",
                )
            ],
        )

    @app.get("/v1/busy")
    async def busy() -> dict[str, str]:
        raise TooManyRequests("Slow down.", retry_after=30)

    @app.get("/v1/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("connection to postgresql://intake:hunter2@db failed")

    @app.get("/v1/database-restarting")
    async def database_restarting() -> dict[str, str]:
        # As SQLAlchemy raises it while PostgreSQL shuts down: the driver's error inside.
        try:
            raise asyncpg.exceptions.AdminShutdownError(
                "terminating connection due to administrator command"
            )
        except asyncpg.PostgresError as exc:
            raise DBAPIError("select 1 -- hunter2", {}, exc) from exc

    @app.get("/v1/object-store-away")
    async def object_store_away() -> dict[str, str]:
        # As the MinIO SDK raises it when nothing listens: urllib3 gave up retrying.
        raise urllib3.exceptions.MaxRetryError(
            None, "/cases/hunter2", urllib3.exceptions.NewConnectionError(None, "refused")
        )

    @app.get("/v1/object-store-starting")
    async def object_store_starting() -> dict[str, str]:
        raise S3Error(None, "XMinioServerNotInitialized", "starting", "/cases/x", "r", "h")

    @app.get("/v1/object-missing")
    async def object_missing() -> dict[str, str]:
        raise S3Error(None, "NoSuchKey", "no such key", "/cases/x", "r", "h")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # In process: the app is called through ASGI, no server and no socket.
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def valid_case() -> dict:
    return {
        "contact": {"email": "ana@example.org", "phone": "+34600111222"},
        "portal_password": "a-long-enough-pass",
        "country": "ES",
    }


async def test_a_raised_not_found_answers_as_a_problem(client):
    response = await client.get("/v1/cases/abc")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json() == {
        "type": "https://referrals.example/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "There is no case abc.",
        "instance": "/v1/cases/abc",
    }


async def test_a_valid_request_is_not_touched(client):
    response = await client.post(
        "/v1/cases", json=valid_case(), headers={"Idempotency-Key": "k-123456"}
    )
    assert response.status_code == 201
    assert response.json() == {"country": "ES"}


async def test_an_invalid_nested_field_is_pointed_at(client):
    body = valid_case()
    body["contact"]["phone"] = "12"
    response = await client.post("/v1/cases", json=body, headers={"Idempotency-Key": "k-123456"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem = response.json()
    assert problem["type"] == problem_type("validation-failed")
    assert problem["instance"] == "/v1/cases"
    assert problem["errors"] == [
        {
            "pointer": "/contact/phone",
            "location": "body",
            "message": "String should have at least 6 characters",
            "code": "string_too_short",
        }
    ]


async def test_every_invalid_part_of_the_request_gets_its_own_error(client):
    body = valid_case()
    del body["contact"]["email"]
    body["country"] = "FR"
    response = await client.post("/v1/cases", json=body, headers={"Idempotency-Key": "short"})
    errors = {
        (e["pointer"], e["location"], e["code"]): e["message"] for e in response.json()["errors"]
    }
    assert errors == {
        ("#/header/idempotency-key", "header", "string_too_short"): (
            "String should have at least 8 characters"
        ),
        ("/contact/email", "body", "missing"): "Field required",
        ("/country", "body", "value_error"): "we do not take referrals from this country yet",
    }
    assert response.json()["detail"].startswith("The request has 3 invalid or missing values")


async def test_a_submitted_secret_is_never_echoed(client):
    body = valid_case()
    body["portal_password"] = "hunter2"
    response = await client.post("/v1/cases", json=body, headers={"Idempotency-Key": "k-123456"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/portal_password"
    assert "hunter2" not in response.text
    assert "input" not in response.text


async def test_a_body_that_is_not_json_is_a_problem_about_the_whole_body(client):
    response = await client.post(
        "/v1/cases",
        content=b'{"contact": ',
        headers={"Idempotency-Key": "k-123456", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["pointer"] == ""
    assert error["code"] == "json_invalid"
    assert error["message"].startswith("The body is not valid JSON")


async def test_a_missing_body_is_named_as_such(client):
    response = await client.post("/v1/cases", headers={"Idempotency-Key": "k-123456"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "pointer": "",
            "location": "body",
            "message": "A request body is required",
            "code": "missing",
        }
    ]


async def test_unauthorized_carries_a_bearer_challenge(client):
    response = await client.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["detail"] == "The access token has expired."


def test_a_plain_unauthorized_still_challenges_for_a_bearer_token():
    assert Unauthorized().headers == {"WWW-Authenticate": "Bearer"}


async def test_a_service_defined_problem_type_keeps_its_slug_title_and_extensions(client):
    response = await client.post("/v1/cases/c-1/submit")
    assert response.status_code == 409
    assert response.json() == {
        "type": "https://referrals.example/problems/consent-missing",
        "title": "Consent has not been recorded",
        "status": 409,
        "detail": "Record the patient's consent first.",
        "instance": "/v1/cases/c-1/submit",
        "case": "c-1",
    }


async def test_a_domain_rule_violation_can_point_at_fields(client):
    response = await client.post("/v1/cases/c-1/center")
    assert response.status_code == 422
    assert response.json()["type"] == problem_type("unprocessable-content")
    assert response.json()["errors"][0]["pointer"] == "/center_id"


async def test_too_many_requests_says_when_to_retry(client):
    response = await client.get("/v1/busy")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"


async def test_an_unhandled_error_is_a_logged_500_problem_that_leaks_nothing(client, caplog):
    with caplog.at_level(logging.ERROR, logger="referrals_common.api.problems"):
        response = await client.get("/v1/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    problem = response.json()
    assert problem["type"] == problem_type("internal-error")
    assert problem["instance"] == "/v1/boom"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "postgresql" not in response.text
    [record] = [r for r in caplog.records if r.name == "referrals_common.api.problems"]
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError


@pytest.mark.parametrize(
    "path", ["/v1/database-restarting", "/v1/object-store-away", "/v1/object-store-starting"]
)
async def test_storage_away_is_a_503_that_says_when_to_retry(client, path, caplog):
    with caplog.at_level(logging.WARNING, logger="referrals_common.api.problems"):
        response = await client.get(path)
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"] == problem_type("service-unavailable")
    assert "try again" in problem["detail"]
    assert "hunter2" not in response.text
    # Logged as a warning, without the statement or its traceback: an outage, not a bug.
    [record] = [r for r in caplog.records if r.name == "referrals_common.api.problems"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "hunter2" not in record.getMessage()


async def test_an_object_store_refusal_about_the_request_stays_a_500(client):
    assert (await client.get("/v1/object-missing")).status_code == 500


async def test_an_unknown_route_is_a_404_problem(client):
    response = await client.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json() == {
        "type": "https://referrals.example/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "There is nothing at this path.",
        "instance": "/v1/nowhere",
    }


async def test_a_wrong_method_is_a_405_problem_that_keeps_the_allow_header(client):
    response = await client.delete("/v1/cases/abc")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["allow"] == "GET"
    assert response.json()["type"] == problem_type("method-not-allowed")
    assert response.json()["detail"] == "DELETE is not allowed on this path; use GET."


def test_a_problem_from_another_service_parses_without_losing_extensions():
    problem = Problem.model_validate(
        {"type": problem_type("consent-missing"), "title": "t", "status": 409, "case": "c-1"}
    )
    assert problem.model_dump(exclude_none=True)["case"] == "c-1"


async def test_the_openapi_document_describes_problems(client):
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"Problem", "FieldError"} <= schemas.keys()
    assert set(schemas["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "errors",
    }
    not_found = document["paths"]["/v1/cases/{case_id}"]["get"]["responses"]["404"]
    media = not_found["content"][PROBLEM_MEDIA_TYPE]
    assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert media["example"]["status"] == 404
    unauthorized = document["paths"]["/v1/cases/{case_id}"]["get"]["responses"]["401"]
    assert "WWW-Authenticate" in unauthorized["headers"]
    unavailable = document["paths"]["/v1/cases/{case_id}"]["get"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]


async def test_the_openapi_document_describes_validation_errors_as_problems(client):
    document = (await client.get("/openapi.json")).json()
    # Declared by the route and added where FastAPI would document its own validation body.
    for path, method in [("/v1/cases", "post"), ("/v1/cases/{case_id}", "get")]:
        content = document["paths"][path][method]["responses"]["422"]["content"]
        assert list(content) == [PROBLEM_MEDIA_TYPE]
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_an_error_in_an_outer_middleware_is_still_a_500_problem():
    app = make_app()

    @app.middleware("http")
    async def broken(request, call_next):
        raise RuntimeError("secret internals")

    # Starlette re-raises after answering from its outermost layer; the response is what counts.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/v1/cases/abc")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert "secret internals" not in response.text
