"""A case's documents in pages (`limit`, `cursor`, the `Link` header), on real PostgreSQL and
MinIO: the same list as unpaged, oldest first, each document once, a cursor only for its case."""

from __future__ import annotations

import re
import uuid

import pytest

from .conftest import case_headers, pdf_bytes, upload

pytestmark = pytest.mark.integration


def _next(response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert found, link
    return found.group(1)


async def test_pages_of_a_case_s_documents_are_the_whole_list_in_order(api):
    case_id = uuid.uuid4()
    headers = case_headers(case_id)
    uploaded = []
    for _ in range(5):
        r = await upload(api, case_id, pdf_bytes(), kind="pathology_report")
        assert r.status_code == 201, r.text
        uploaded.append(r.json()["id"])
    whole = await api.get(f"/v1/cases/{case_id}/documents", headers=headers)
    assert "link" not in whole.headers  # without limit, the whole list as before
    assert [d["id"] for d in whole.json()] == uploaded  # oldest first

    seen, sizes = [], []
    r = await api.get(f"/v1/cases/{case_id}/documents?limit=2", headers=headers)
    while True:
        assert r.status_code == 200, r.text
        seen += [d["id"] for d in r.json()]
        sizes.append(len(r.json()))
        if (after := _next(r)) is None:
            break
        if len(seen) == 2:  # a document added while paging comes last, once
            added = await upload(api, case_id, pdf_bytes(), kind="lab_results")
            uploaded.append(added.json()["id"])
        r = await api.get(after, headers=headers)
    assert seen == uploaded
    assert sizes == [2, 2, 2]


async def test_a_cursor_of_one_case_is_refused_on_another(api):
    case_id, other = uuid.uuid4(), uuid.uuid4()
    for case in (case_id, other):
        for _ in range(2):
            assert (await upload(api, case, pdf_bytes())).status_code == 201
    first = await api.get(f"/v1/cases/{case_id}/documents?limit=1", headers=case_headers(case_id))
    cursor = _next(first).split("cursor=")[1]

    elsewhere = await api.get(
        f"/v1/cases/{other}/documents?limit=1&cursor={cursor}", headers=case_headers(other)
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["errors"][0]["code"] == "invalid_cursor"
    payload, _, signature = cursor.rpartition(".")
    tampered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    forged = await api.get(
        f"/v1/cases/{case_id}/documents?limit=1&cursor={tampered}",
        headers=case_headers(case_id),
    )
    assert forged.status_code == 422
    assert forged.json()["errors"][0]["pointer"] == "#/query/cursor"
    too_many = await api.get(
        f"/v1/cases/{case_id}/documents?limit=101", headers=case_headers(case_id)
    )
    assert too_many.status_code == 422
