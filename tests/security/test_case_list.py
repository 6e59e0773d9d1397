"""The front end's case list (`GET /v1/cases`) as an attacker tries it: another front end's
cases never show, whatever it asks; a cursor is good only for the list, filters and front end it
was given for; an edited or forged one is a 422 problem that names nothing."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeSerializer

from .world import World

pytestmark = pytest.mark.security


async def _every_id(world: World, key: str, **params) -> list[str]:
    ids, path = [], "/v1/cases"
    query = {"limit": 100, **params}
    while path:
        r = await world.intake.get(path, params=query, headers={"X-Api-Key": key})
        assert r.status_code == 200, r.text
        ids += [item["id"] for item in r.json()["items"]]
        path, query = r.json()["next"], None
    return ids


async def test_a_front_end_never_sees_another_front_end_s_cases(world: World):
    ours = {c.case_id for c in world.cases if c.front_end_key == world.keys.front_end}
    theirs = {c.case_id for c in world.cases if c.front_end_key == world.keys.other_front_end}
    assert ours and theirs

    seen_by_them = await _every_id(world, world.keys.other_front_end)
    seen_by_us = await _every_id(world, world.keys.front_end)

    assert len(seen_by_them) == len(set(seen_by_them)) and theirs <= set(seen_by_them)
    assert not set(seen_by_them) & ours
    assert ours <= set(seen_by_us) and not set(seen_by_us) & theirs
    # Asking for one of ours by its reference, in any status, finds nothing either.
    target = world.main.case_id.replace("-", "")[:8]
    assert await _every_id(world, world.keys.other_front_end, reference=target) == []


def _problem(r, secrets: list[str]) -> dict:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/validation-failed")
    assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [
        ("#/query/cursor", "invalid_cursor")
    ]
    assert not [s for s in secrets if s.lower() in r.text.lower()]
    return problem


async def test_a_tampered_foreign_or_forged_cursor_is_a_problem(world: World):
    ours = {"X-Api-Key": world.keys.front_end}
    first = await world.intake.get("/v1/cases", params={"limit": 1}, headers=ours)
    cursor = first.json()["next_cursor"]
    assert cursor, "the front end has more than one case"
    payload, _, signature = cursor.rpartition(".")
    # itsdangerous' own encoding (base64 of JSON, compressed when that is shorter: "."-prefixed)
    codec = URLSafeSerializer("the key does not matter for the payload")
    decoded = codec.load_payload(payload.encode())
    # Move the position to the start of time, keep the signature: refused, not a page.
    moved = dict(decoded, a="1970-01-01T00:00:00+00:00")
    moved_payload = codec.dump_payload(moved).decode()
    secrets = world.main.secrets()

    for key, params in [
        (world.keys.other_front_end, {"limit": 1, "cursor": cursor}),  # another front end
        (world.keys.front_end, {"limit": 1, "cursor": cursor, "status": "withdrawn"}),
        (world.keys.front_end, {"limit": 1, "cursor": f"{moved_payload}.{signature}"}),
        (world.keys.front_end, {"limit": 1, "cursor": f"{payload}.{signature[:-3]}abc"}),
        (world.keys.front_end, {"limit": 1, "cursor": "eyJhIjoiMSJ9.c2lnbmVk"}),
    ]:
        r = await world.intake.get("/v1/cases", params=params, headers={"X-Api-Key": key})
        _problem(r, secrets)
    # The genuine cursor still works for its own front end and query.
    again = await world.intake.get("/v1/cases", params={"limit": 1, "cursor": cursor}, headers=ours)
    assert again.status_code == 200, again.text
    assert again.json()["items"][0]["id"] != first.json()["items"][0]["id"]


@pytest.mark.parametrize("credential", ["case_token", "center", "ops"])
async def test_only_a_front_end_key_lists_cases(world: World, credential: str):
    headers = {
        "case_token": world.main.bearer,
        "center": {"X-Api-Key": world.keys.center},
        "ops": {"X-Api-Key": world.keys.ops},
    }[credential]
    r = await world.intake.get("/v1/cases", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
