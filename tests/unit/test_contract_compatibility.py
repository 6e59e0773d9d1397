"""Published event schemas change only compatibly within a version (docs/event-catalogue.md).

The first test compares the schemas the code makes now with the released ones committed under
docs/contracts/snapshot/; the others pin down what the comparator calls breaking, on real schemas
changed the way a careless edit would change them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from referrals_common.contracts.compatibility import (
    SNAPSHOT_DIR,
    breaking_changes,
    read_schemas,
)
from referrals_common.contracts.schema import json_schemas

pytestmark = pytest.mark.unit

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "contracts" / SNAPSHOT_DIR

STORED = "referrals.document.stored.v1"
OFFERED = "referrals.referral.offered.v1"


def test_the_current_schemas_are_compatible_with_the_released_ones():
    released = read_schemas(SNAPSHOT)
    assert set(released) <= set(json_schemas()), "every released event type is kept"
    assert len(released) == 45
    problems = breaking_changes(released, json_schemas())
    assert problems == [], (
        "incompatible change to a published event; introduce a .v2 event type instead "
        "(docs/event-catalogue.md, Compatibility):\n" + "\n".join(problems)
    )


def _current() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(json_schemas())


def _payload(schemas: dict[str, dict[str, Any]], event_type: str, model: str) -> dict[str, Any]:
    return schemas[event_type]["$defs"][model]


def test_a_new_optional_field_is_compatible():
    after = _current()
    payload = _payload(after, STORED, "DocumentStored")
    payload["properties"]["page_count"] = {
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}],
        "default": None,
        "description": "Pages, when known",
    }
    assert breaking_changes(json_schemas(), after) == []


def test_a_new_optional_envelope_attribute_and_new_descriptions_are_compatible():
    after = _current()
    envelope = after[STORED]
    envelope["properties"]["partitionkey"] = {"type": "string", "description": "the key"}
    envelope["description"] = "Reworded."
    _payload(after, STORED, "DocumentStored")["properties"]["sha256"]["description"] = "Digest"
    assert breaking_changes(json_schemas(), after) == []


def test_a_wider_enumeration_is_compatible():
    after = _current()
    _payload(after, STORED, "DocumentKind")["enum"].append("genomic_report")
    assert breaking_changes(json_schemas(), after) == []


def test_a_removed_event_type_is_breaking():
    after = _current()
    del after[OFFERED]
    assert breaking_changes(json_schemas(), after) == [f"{OFFERED}: event type removed"]


def test_a_removed_field_is_breaking():
    after = _current()
    payload = _payload(after, STORED, "DocumentStored")
    del payload["properties"]["sha256"]
    payload["required"].remove("sha256")
    assert breaking_changes(json_schemas(), after) == [f"{STORED}.data.sha256: field removed"]


def test_a_removed_optional_field_is_breaking_too():
    after = _current()
    del _payload(after, STORED, "DocumentStored")["properties"]["referral_id"]
    assert breaking_changes(json_schemas(), after) == [f"{STORED}.data.referral_id: field removed"]


def test_a_new_required_field_is_breaking():
    after = _current()
    payload = _payload(after, STORED, "DocumentStored")
    payload["properties"]["page_count"] = {"type": "integer"}
    payload["required"].append("page_count")
    assert breaking_changes(json_schemas(), after) == [
        f"{STORED}.data.page_count: new field is required (only optional ones may come)"
    ]


def test_an_optional_field_made_required_is_breaking():
    after = _current()
    _payload(after, STORED, "DocumentStored")["required"].append("referral_id")
    assert breaking_changes(json_schemas(), after) == [
        f"{STORED}.data.referral_id: newly required (published events may lack it)"
    ]


def test_a_required_field_made_optional_is_breaking():
    after = _current()
    _payload(after, STORED, "DocumentStored")["required"].remove("media_type")
    assert breaking_changes(json_schemas(), after) == [
        f"{STORED}.data.media_type: no longer required (consumers rely on it)"
    ]


def test_a_narrower_enumeration_is_breaking():
    after = _current()
    _payload(after, STORED, "DocumentKind")["enum"].remove("imaging_study")
    assert breaking_changes(json_schemas(), after) == [
        f'{STORED}.data.kind: enumeration narrowed, "imaging_study" no longer allowed'
    ]


def test_a_narrower_type_is_breaking():
    after = _current()
    referral = _payload(after, STORED, "DocumentStored")["properties"]["referral_id"]
    referral["anyOf"] = [b for b in referral["anyOf"] if b.get("type") != "null"]
    size = _payload(after, STORED, "DocumentStored")["properties"]["size_bytes"]
    size["type"] = "string"
    assert breaking_changes(json_schemas(), after) == [
        f"{STORED}.data.size_bytes: type narrowed, integer no longer allowed",
        f"{STORED}.data.referral_id: type narrowed, null no longer allowed",
    ]


def test_a_tighter_constraint_is_breaking_and_a_looser_one_is_not():
    after = _current()
    properties = _payload(after, STORED, "DocumentStored")["properties"]
    properties["media_type"]["maxLength"] = 64  # was 127
    properties["object_key"]["maxLength"] = 1024  # was 512: looser
    properties["sha256"]["pattern"] = "^[0-9a-f]{128}$"
    assert breaking_changes(json_schemas(), after) == [
        f"{STORED}.data.media_type: maxLength lowered to 64",
        f'{STORED}.data.sha256: pattern changed from "^[0-9a-f]{{64}}$" to "^[0-9a-f]{{128}}$"',
    ]


def test_a_changed_constant_is_breaking():
    after = _current()
    after[STORED]["properties"]["source"]["const"] = "/referrals/storage"
    assert breaking_changes(json_schemas(), after) == [
        f'{STORED}.source: constant changed, "/referrals/records" no longer allowed'
    ]


def test_a_change_inside_a_nested_array_item_is_found():
    after = _current()
    document = _payload(after, OFFERED, "OfferedDocument")
    del document["properties"]["media_type"]
    document["required"].remove("media_type")
    assert breaking_changes(json_schemas(), after) == [
        f"{OFFERED}.data.documents[].media_type: field removed"
    ]
