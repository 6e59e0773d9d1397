"""The shared cursor pagination (referrals_common.api.pagination), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from referrals_common.api.pagination import CursorSigner, slice_after

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 12, 8, 30, tzinfo=UTC)
SCOPE = {"list": "intake.cases", "client": "kyiv", "status": ["draft"]}


def _request(query: str = "limit=2&status=draft") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/v1/cases",
            "query_string": query.encode(),
            "headers": [(b"host", b"intake.example.org")],
            "scheme": "https",
            "server": None,
        }
    )


def _refusal(signer: CursorSigner, cursor: str, scope=SCOPE) -> dict:
    with pytest.raises(RequestValidationError) as refused:
        signer.position(cursor, scope)
    (error,) = refused.value.errors()
    return error


def test_a_cursor_gives_back_the_position_it_was_made_for():
    signer = CursorSigner(b"pepper")
    position = (T0, uuid4())
    assert signer.position(signer.cursor(position, SCOPE), SCOPE) == position
    assert signer.position(None, SCOPE) is None


def test_a_cursor_edited_by_hand_or_signed_by_another_key_is_refused():
    signer = CursorSigner(b"pepper")
    cursor = signer.cursor((T0, uuid4()), SCOPE)
    payload, _, signature = cursor.rpartition(".")
    for forged in (
        f"{payload}.{signature[::-1]}",
        f"{payload[:-2]}AA.{signature}",
        CursorSigner(b"another pepper").cursor((T0, uuid4()), SCOPE),
    ):
        error = _refusal(signer, forged)
        assert error["loc"] == ("query", "cursor") and error["type"] == "invalid_cursor"


def test_a_cursor_is_refused_for_another_scope():
    signer = CursorSigner(b"pepper")
    cursor = signer.cursor((T0, uuid4()), SCOPE)
    assert _refusal(signer, cursor, SCOPE | {"client": "lviv"})["type"] == "invalid_cursor"
    assert _refusal(signer, cursor, SCOPE | {"status": []})["type"] == "invalid_cursor"


def test_a_page_names_the_next_one_only_when_there_is_more():
    signer = CursorSigner(b"pepper")
    rows = [(T0 - timedelta(minutes=n), UUID(int=n)) for n in range(3)]
    page = signer.page(rows, 2, SCOPE, _request(), key=lambda r: r, convert=lambda r: r[1])
    assert page.items == [UUID(int=0), UUID(int=1)]
    assert signer.position(page.next_cursor, SCOPE) == rows[1]
    assert page.next == f"/v1/cases?limit=2&status=draft&cursor={page.next_cursor}"
    assert page.link_header == f'<{page.next}>; rel="next"'
    last = signer.page(rows[:2], 2, SCOPE, _request(), key=lambda r: r)
    assert (last.next, last.next_cursor, last.link_header) == (None, None, None)


@pytest.mark.parametrize("newest_first", [True, False])
def test_a_list_read_whole_is_cut_after_the_position_in_its_order(newest_first):
    same_time = [(T0, UUID(int=n)) for n in (3, 1, 2)]
    items = [(T0 + timedelta(seconds=1), UUID(int=9)), *same_time]
    ordered = slice_after(items, None, lambda i: i, newest_first=newest_first)
    assert ordered == sorted(items, reverse=newest_first)
    assert slice_after(items, ordered[1], lambda i: i, newest_first=newest_first) == ordered[2:]
