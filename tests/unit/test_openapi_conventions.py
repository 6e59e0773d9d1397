"""Every service documents its API the same way (`create_service_app`): operation ids from the
route functions' names, one tag per audience, `servers` from the service's public address, the
platform's contact and licence."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from referrals_common.service_app import ApiTag, create_service_app
from referrals_common.settings import ServiceSettings
from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import create_app as create_records_app

pytestmark = pytest.mark.unit

TAGS = (
    ApiTag("front-end", "A patient's front end", ("/v1/cases",)),
    ApiTag("centers", "A cancer center", ("/v1/partner/",)),
)


class Runtime:
    """Never used: the documents are generated without a request."""


def app_with(router: APIRouter, *, tags=TAGS, settings=None):
    return create_service_app(
        title="test",
        description="test",
        router=router,
        build_runtime=Runtime,
        tags=tags,
        settings=settings,
    )


def a_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/cases/{case_id}/follow-up-questions")
    async def ask_follow_up(case_id: str) -> None:
        """Ask."""

    @router.get("/partner/referrals")
    async def list_referrals() -> None:
        """List."""

    return router


def test_operation_ids_are_the_route_functions_names_in_camel_case():
    paths = app_with(a_router()).openapi()["paths"]
    assert paths["/v1/cases/{case_id}/follow-up-questions"]["post"]["operationId"] == "askFollowUp"
    assert paths["/v1/partner/referrals"]["get"]["operationId"] == "listReferrals"


def test_each_operation_carries_the_tag_of_its_audience_and_the_tags_are_described():
    document = app_with(a_router()).openapi()
    assert document["paths"]["/v1/cases/{case_id}/follow-up-questions"]["post"]["tags"] == [
        "front-end"
    ]
    assert document["paths"]["/v1/partner/referrals"]["get"]["tags"] == ["centers"]
    assert document["tags"] == [
        {"name": "front-end", "description": "A patient's front end"},
        {"name": "centers", "description": "A cancer center"},
    ]


def test_a_route_no_tag_names_is_refused_when_the_app_is_built():
    router = a_router()

    @router.get("/ops/centers")
    async def list_centers() -> None:
        """List."""

    with pytest.raises(ValueError, match="/v1/ops/centers"):
        app_with(router)


def test_two_routes_with_one_operation_id_are_refused_when_the_app_is_built():
    router = a_router()

    @router.get("/cases/{case_id}/other", name="ask_follow_up")
    async def other(case_id: str) -> None:
        """Another."""

    with pytest.raises(ValueError, match="askFollowUp"):
        app_with(router)


def test_servers_name_the_public_address_or_else_the_document_itself():
    configured = ServiceSettings(public_base_url="https://partners.example.org/")
    assert app_with(a_router(), settings=configured).openapi()["servers"] == [
        {"url": "https://partners.example.org", "description": "This API"}
    ]
    assert app_with(a_router()).openapi()["servers"] == [
        {"url": "/", "description": "This API, where this document was served"}
    ]


@pytest.mark.parametrize(
    "factory", [create_intake_app, create_records_app, create_partners_app], ids=str
)
def test_every_service_names_its_contact_and_licence_and_tags_every_operation(factory):
    document = factory().openapi()
    assert document["info"]["contact"]["name"]
    assert document["info"]["license"]["identifier"] == "Apache-2.0"
    declared = {t["name"] for t in document["tags"]}
    ids = []
    for operations in document["paths"].values():
        for operation in operations.values():
            assert len(operation["tags"]) == 1 and operation["tags"][0] in declared
            assert operation["description"].strip()
            ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))
    assert all(i[0].islower() and "_" not in i for i in ids), ids
