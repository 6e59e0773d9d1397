"""One schema per concept across the three OpenAPI documents (intake, records, partners).

A client generated from two of them gets one type per component name: a name that means two
different schemas in two services (two `DocumentPublic`s) would make the same type mean two
things. And one concept published by two services under two names (`RequestedItemPublic` and
`RequestedItem`) makes an integrator map one onto the other by hand. Both fail here. A service's
own input and output models of one thing (`Contact`, `ContactPublic`) are its own business.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import create_app as create_records_app

pytestmark = pytest.mark.unit

SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}
Schemas = dict[str, dict[str, dict[str, Any]]]
"""Service → component name → schema."""


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return {
        service: factory().openapi()["components"]["schemas"]
        for service, factory in SERVICES.items()
    }


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)


def name_clashes(schemas: Schemas) -> dict[str, list[str]]:
    """Component names that two services publish with different schemas: name → services."""
    by_name: dict[str, dict[str, str]] = {}
    for service, components in schemas.items():
        for name, schema in components.items():
            by_name.setdefault(name, {})[service] = _canonical(schema)
    return {name: sorted(found) for name, found in by_name.items() if len(set(found.values())) > 1}


def _shape(schema: dict[str, Any]) -> str | None:
    """What makes two schemas the same concept: an object's properties with their types, or an
    enumeration's values; None for what is too small to tell (one property, no enumeration)."""
    if "enum" in schema:
        return "enum " + json.dumps(sorted(map(str, schema["enum"])))
    properties = schema.get("properties") or {}
    if len(properties) < 2:
        return None
    return "object " + json.dumps(
        {
            name: _canonical({k: v for k, v in p.items() if k not in ("description", "title")})
            for name, p in properties.items()
        },
        sort_keys=True,
    )


def concept_aliases(schemas: Schemas) -> list[list[tuple[str, str]]]:
    """Groups of (service, name) of one shape published under different names by different
    services."""
    by_shape: dict[str, set[tuple[str, str]]] = {}
    for service, components in schemas.items():
        for name, schema in components.items():
            if (shape := _shape(schema)) is not None:
                by_shape.setdefault(shape, set()).add((service, name))
    return [
        sorted(found)
        for found in by_shape.values()
        if len({name for _, name in found}) > 1 and len({service for service, _ in found}) > 1
    ]


def test_a_component_name_means_one_schema_in_every_document(schemas: Schemas) -> None:
    assert name_clashes(schemas) == {}


def test_a_concept_has_one_name_in_every_document(schemas: Schemas) -> None:
    assert concept_aliases(schemas) == []


def test_the_checks_find_a_clash_and_an_alias() -> None:
    """The checks can fail: two services' `DocumentPublic`s, one item under two names."""
    item = {"properties": {"kind": {"type": "string"}, "detail": {"type": "string"}}}
    clashing: Schemas = {
        "intake": {"DocumentPublic": {"properties": {"document_id": {"type": "string"}}}},
        "records": {"DocumentPublic": {"properties": {"id": {"type": "string"}}}},
    }
    assert name_clashes(clashing) == {"DocumentPublic": ["intake", "records"]}
    aliased: Schemas = {
        "intake": {"RequestedItemPublic": item, "Contact": item, "ContactPublic": item},
        "partners": {"RequestedItem": {**item, "description": "words differ, the shape not"}},
    }
    assert concept_aliases(aliased) == [
        [
            ("intake", "Contact"),
            ("intake", "ContactPublic"),
            ("intake", "RequestedItemPublic"),
            ("partners", "RequestedItem"),
        ]
    ]
    assert concept_aliases({"intake": aliased["intake"]}) == []  # one service's own pair
