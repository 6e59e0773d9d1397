"""The front end's list of its cases (`GET /v1/cases`) on real PostgreSQL: pages by cursor,
filters, and the refusals of what is not a valid query."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from sqlalchemy import event, text

from referrals_intake.repository import CaseRepository

from .conftest import new_client_key, open_case

pytestmark = pytest.mark.integration


async def _pages(api, api_key: str, params: dict, *, between=None) -> list[dict]:
    """Every page of the list, following `next` (checked against the `Link` header); `between`
    runs after each page but the last."""
    pages = []
    r = await api.get("/v1/cases", params=params, headers={"X-Api-Key": api_key})
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        if page["next"] is None:
            assert page["next_cursor"] is None
            assert "link" not in r.headers
            return pages
        assert r.headers["link"] == f'<{page["next"]}>; rel="next"'
        assert parse_qs(urlsplit(page["next"]).query)["cursor"] == [page["next_cursor"]]
        if between is not None:
            await between()
        r = await api.get(page["next"], headers={"X-Api-Key": api_key})


async def test_paging_shows_every_case_once_newest_first_while_new_cases_arrive(api, api_key):
    opened = [(await open_case(api, api_key))[0] for _ in range(23)]
    arrived: list[str] = []

    async def a_new_case_arrives() -> None:
        arrived.append((await open_case(api, api_key))[0])

    pages = await _pages(api, api_key, {"limit": 5}, between=a_new_case_arrives)

    assert [len(p["items"]) for p in pages] == [5, 5, 5, 5, 3]
    seen = [item["id"] for p in pages for item in p["items"]]
    assert seen == list(reversed(opened))  # each once, none skipped, newest first
    assert len(arrived) == 4 and not set(arrived) & set(seen)
    # The cases that arrived meanwhile lead a new first page.
    first = (await _pages(api, api_key, {"limit": 4}))[0]
    assert [i["id"] for i in first["items"]] == list(reversed(arrived))


async def test_a_case_in_the_list_says_where_it_stands_without_personal_data(api, api_key):
    case_id, _ = await open_case(api, api_key)

    (page,) = await _pages(api, api_key, {})

    (item,) = page["items"]
    assert item["id"] == case_id
    assert item["reference"] == f"{case_id[:4]}-{case_id[4:8]}".upper()
    assert item["status"] == "draft" and item["locale"] == "uk"
    assert set(item) == {
        "id",
        "reference",
        "status",
        "locale",
        "created_at",
        "updated_at",
        "submitted_at",
    }


async def test_filters_by_status_time_and_reference(api, api_key):
    kept, _ = await open_case(api, api_key)
    withdrawn, headers = await open_case(api, api_key)
    before_withdrawal = datetime.now(UTC)
    r = await api.post(f"/v1/cases/{withdrawn}/withdraw", headers=headers, json={})
    assert r.status_code == 200, r.text
    after_both = datetime.now(UTC)
    newest, _ = await open_case(api, api_key)

    async def ids(**params) -> list[str]:
        return [i["id"] for p in await _pages(api, api_key, params) for i in p["items"]]

    assert await ids(status="withdrawn") == [withdrawn]
    assert await ids(status="draft") == [newest, kept]
    assert await ids(status=["draft", "withdrawn"]) == [newest, withdrawn, kept]
    assert await ids(status="submitted") == []
    assert await ids(updated_since=before_withdrawal.isoformat()) == [newest, withdrawn]
    assert await ids(created_since=after_both.isoformat()) == [newest]
    reference = f"{kept[:4]}-{kept[4:8]}".upper()
    assert await ids(reference=reference) == [kept]
    assert await ids(reference=kept[:8]) == [kept]  # lower case, without the dash
    # Filters and pages together: the cursor carries the filters on.
    pages = await _pages(api, api_key, {"status": ["draft", "withdrawn"], "limit": 1})
    assert [i["id"] for p in pages for i in p["items"]] == [newest, withdrawn, kept]


@pytest.mark.parametrize(
    ("params", "pointer", "code"),
    [
        ({"status": "bogus"}, "#/query/status/0", "enum"),
        ({"limit": 0}, "#/query/limit", "greater_than_equal"),
        ({"limit": 101}, "#/query/limit", "less_than_equal"),
        ({"created_since": "yesterday"}, "#/query/created_since", "datetime_from_date_parsing"),
        ({"updated_since": "2026-01-12T08:30:00"}, "#/query/updated_since", "timezone_aware"),
        ({"reference": "3F0F-6C7"}, "#/query/reference", "string_pattern_mismatch"),
        ({"cursor": "not a cursor"}, "#/query/cursor", "string_pattern_mismatch"),
        ({"cursor": "eyJhIjoxfQ.Zm9yZ2Vk"}, "#/query/cursor", "invalid_cursor"),
    ],
)
async def test_a_query_it_cannot_answer_is_a_validation_problem(
    api, api_key, params, pointer, code
):
    r = await api.get("/v1/cases", params=params, headers={"X-Api-Key": api_key})

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/validation-failed")
    assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [(pointer, code)]


async def test_a_cursor_is_good_only_for_its_own_query_and_front_end(api, api_key, runtime):
    for _ in range(3):
        await open_case(api, api_key)
    other_key = await new_client_key(runtime, "Lviv partner clinic")
    await open_case(api, other_key)
    first = (await api.get("/v1/cases?limit=1", headers={"X-Api-Key": api_key})).json()
    cursor = first["next_cursor"]
    head, _, signature = cursor.rpartition(".")
    # The first character: every one of its bits is the signature's (the last one's lowest two
    # may be base64 padding, which decodes the same whatever they are).
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    for params, key in [
        ({"limit": 1, "cursor": cursor}, other_key),  # another front end
        ({"limit": 1, "cursor": cursor, "status": "draft"}, api_key),  # other filters
        ({"limit": 1, "cursor": f"{head}.{flipped}"}, api_key),  # tampered
    ]:
        r = await api.get("/v1/cases", params=params, headers={"X-Api-Key": key})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["code"] == "invalid_cursor"
    # Another limit is the same query: the cursor goes on from where it was.
    r = await api.get(
        "/v1/cases", params={"limit": 5, "cursor": cursor}, headers={"X-Api-Key": api_key}
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 2


async def test_another_front_end_never_sees_these_cases(api, api_key, runtime):
    mine = {(await open_case(api, api_key))[0] for _ in range(3)}
    other_key = await new_client_key(runtime, "Lviv partner clinic")
    theirs = (await open_case(api, other_key))[0]

    seen = [i["id"] for p in await _pages(api, other_key, {"limit": 2}) for i in p["items"]]
    assert seen == [theirs]
    for case_id in mine:
        r = await api.get(
            "/v1/cases", params={"reference": case_id[:8]}, headers={"X-Api-Key": other_key}
        )
        assert r.status_code == 200 and r.json()["items"] == []


async def test_the_list_needs_the_front_end_key(api):
    r = await api.get("/v1/cases")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def _plan(runtime, **query) -> tuple[dict, float]:
    """The plan PostgreSQL runs for the repository's own case-list query (captured as it is
    sent), and its execution time in ms."""
    sent: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM cases" in statement:
            sent.append((statement, parameters))

    sync_engine = runtime.db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        async with runtime.db.unit_of_work() as uow:
            await CaseRepository(uow.session).client_cases(**query)
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    (statement, parameters), *_ = sent
    async with runtime.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        explained = await raw.driver_connection.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *parameters
        )
    (plan,) = json.loads(explained) if isinstance(explained, str) else explained
    return plan["Plan"], plan["Execution Time"]


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_a_page_of_a_busy_front_end_is_read_from_the_index_without_a_sort(
    api, api_key, runtime
):
    """50,000 cases of 20 front ends: a page of one front end's list, first or later, walks
    `cases_client_created` backwards and stops after `limit` rows; it never sorts the client's
    cases (which, without the index, every page would)."""
    template, _ = await open_case(api, api_key)
    generated = {
        "id": "md5(random()::text || g)::uuid",
        "client_id": "'client-' || (g % 20)",
        "created_at": "c.created_at - make_interval(secs => g)",
    }
    async with runtime.db.unit_of_work() as uow:
        columns = (
            await uow.session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'cases' ORDER BY ordinal_position"
                )
            )
        ).scalars()
        values = ", ".join(generated.get(c, f"c.{c}") for c in columns)
        await uow.session.execute(
            text(
                f"INSERT INTO cases SELECT {values}"
                " FROM cases c, generate_series(1, 50000) g WHERE c.id = :template"
            ),
            {"template": template},
        )
        await uow.session.execute(text("ANALYZE cases"))
        await uow.commit()

    first, first_ms = await _plan(runtime, client_id="client-7", limit=21)
    last_created = datetime.now(UTC)
    later, later_ms = await _plan(
        runtime,
        client_id="client-7",
        after_position=(last_created.replace(year=last_created.year - 1), UUID(template)),
        limit=21,
    )

    for plan in (first, later):
        kinds = [n["Node Type"] for n in _nodes(plan)]
        assert "Sort" not in kinds, kinds
        scans = [n for n in _nodes(plan) if n.get("Index Name") == "cases_client_created"]
        assert scans and scans[0]["Scan Direction"] == "Backward", kinds
    print(f"\ncase list page over 50,000 cases: first {first_ms:.2f} ms, later {later_ms:.2f} ms")
