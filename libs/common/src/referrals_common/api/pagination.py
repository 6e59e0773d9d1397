"""Cursor pagination, the same on every list of every service.

A list is read in pages, in the order of a key that never changes (when the item was created,
then its id; newest first, or oldest first where the list always was): `limit` items at most
(`MAX_LIMIT`), and a cursor for the next page. The cursor is opaque to the caller: it carries the
last item's position and a digest of the list it belongs to (which list, whose, with which
filters), URL-safe and signed with a key derived from the service's API key pepper
(`itsdangerous`), so a cursor edited by hand, or taken to another list, other filters or another
caller, is refused (422 `validation-failed`, pointer `#/query/cursor`, code `invalid_cursor`)
instead of answering a page of something else.

Paging by position (keyset), not by offset: no item is shown twice or skipped while a caller
pages through, whatever is added meanwhile. Newest first, an item created while paging is never
in a later page (it is newer than the first): a caller that wants the new ones starts again from
the first page. Oldest first, it comes last.

    signer = CursorSigner(settings.api_key_pepper.get_secret_value())
    position = signer.position(cursor, scope)            # None on the first page
    rows = ... after(query, (Case.created_at, Case.id), position).limit(limit + 1)
    page = signer.page(rows, limit, scope, request, key=lambda c: (c.created_at, c.id))
    response.headers["Link"] = page.link_header          # when there is a next page
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query, Request, Response
from fastapi.exceptions import RequestValidationError
from itsdangerous import BadData, URLSafeSerializer
from pydantic import BaseModel, Field
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Mapped

MAX_LIMIT = 100
"""The largest page a caller may ask for."""
DEFAULT_LIMIT = 50

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"How many items at most in this page (1-{MAX_LIMIT}).",
    ),
]
OptionalLimit = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"How many items at most in this page (1-{MAX_LIMIT}); the next page is "
        'named by the `Link` header (`rel="next"`). Without `limit` and `cursor` the whole '
        "list, as this API answered before it had pages.",
    ),
]
"""`limit` of a list that was answered whole before pagination: paging is asked for, so the
v1 answer stays what it was for callers that do not page (the compatibility rule)."""
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=512,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Where the page starts: the `next_cursor` of the page before (opaque; "
        "only valid for the same list with the same filters). Leave out for the first page.",
    ),
]

Item = TypeVar("Item")
Position = tuple[datetime, UUID]
"""Where an item stands in a list: when it was created, then its id (never changes)."""


class Page(BaseModel, Generic[Item]):
    """One page of a list, and how to read the next one."""

    items: list[Item] = Field(description="This page's items, in the list's order.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null on the last "
        "page."
    )
    next: str | None = Field(
        description="The next page's path and query (the same filters, `limit` and the cursor), "
        "relative to the API's server; null on the last page."
    )


@dataclass(frozen=True)
class PageOf(Generic[Item]):
    """What `CursorSigner.page` cut: the items of this page and the next page's cursor."""

    items: list[Item]
    next_cursor: str | None
    next: str | None

    @property
    def link_header(self) -> str | None:
        """An RFC 8288 `Link` header value naming the next page, or None on the last page."""
        return f'<{self.next}>; rel="next"' if self.next else None

    def link(self, response: Response) -> None:
        """Set the response's `Link` header when there is a next page."""
        if self.link_header:
            response.headers["Link"] = self.link_header


LINK_HEADER = {
    "Link": {
        "description": 'The next page, `<path?query>; rel="next"` (RFC 8288), when there is one',
        "schema": {"type": "string"},
    }
}
"""The `headers` of a paged list's 200 answer in the OpenAPI document."""


def invalid_cursor(message: str) -> RequestValidationError:
    """The 422 for a cursor that is not one we gave for this list (a `validation-failed`
    problem pointing at `#/query/cursor`)."""
    return RequestValidationError(
        [{"type": "invalid_cursor", "loc": ("query", "cursor"), "msg": message}]
    )


class CursorSigner:
    """Signs and checks the cursors of one service, with a key derived from its `secret` (the
    API key pepper: a secret every service already has, never used as is)."""

    SALT = "referrals.pagination.cursor.v1"

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        key = hmac.new(raw, b"referrals pagination cursors", hashlib.sha256).digest()
        self._serializer = URLSafeSerializer(key, salt=self.SALT)

    @staticmethod
    def _scope_digest(scope: Mapping[str, Any]) -> str:
        canonical = json.dumps(scope, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def cursor(self, position: Position, scope: Mapping[str, Any]) -> str:
        """The cursor that resumes `scope` (which list, whose, with which filters) after
        `position`."""
        at, item_id = position
        return str(
            self._serializer.dumps(
                {"a": at.isoformat(), "i": str(item_id), "s": self._scope_digest(scope)}
            )
        )

    def position(self, cursor: str | None, scope: Mapping[str, Any]) -> Position | None:
        """Where a page starts: None for the first page (no cursor), else the position the
        cursor carries. Refused (422) when the cursor is not ours or belongs to another scope."""
        if cursor is None:
            return None
        try:
            data = self._serializer.loads(cursor)
        except BadData:
            raise invalid_cursor(
                "The cursor is not one this API gave: start again without it"
            ) from None
        if not isinstance(data, dict) or data.get("s") != self._scope_digest(scope):
            raise invalid_cursor(
                "The cursor belongs to another list or other filters: use it with the same query"
            )
        try:
            return datetime.fromisoformat(data["a"]), UUID(data["i"])
        except (KeyError, TypeError, ValueError):
            raise invalid_cursor("The cursor is not one this API gave") from None

    def page(
        self,
        rows: Sequence[Any],
        limit: int,
        scope: Mapping[str, Any],
        request: Request,
        *,
        key: Callable[[Any], Position],
        convert: Callable[[Any], Item] | None = None,
    ) -> PageOf[Item]:
        """Cut `rows` (read with `limit + 1`, in order, after the cursor's position) into
        this page and the next one's cursor and link; `convert` turns each row into its item."""
        shown = list(rows[:limit])
        items = [convert(r) for r in shown] if convert else shown
        if len(rows) <= limit or not shown:
            return PageOf(items, None, None)
        next_cursor = self.cursor(key(shown[-1]), scope)
        next_url = request.url.include_query_params(cursor=next_cursor)
        relative = next_url.path + (f"?{next_url.query}" if next_url.query else "")
        return PageOf(items, next_cursor, relative)


def after(
    query: Select[Any],
    columns: tuple[Mapped[datetime], Mapped[UUID]],
    position: Position | None,
    *,
    newest_first: bool = True,
) -> Select[Any]:
    """`query` ordered by `columns` (created, id), newest first (or oldest first), from just
    after `position`."""
    at, item_id = columns
    if position is not None:
        key = tuple_(at, item_id)
        query = query.where(key < tuple_(*position) if newest_first else key > tuple_(*position))
    if newest_first:
        return query.order_by(at.desc(), item_id.desc())
    return query.order_by(at, item_id)


def slice_after(
    items: Sequence[Item],
    position: Position | None,
    key: Callable[[Item], Position],
    *,
    newest_first: bool = True,
) -> list[Item]:
    """For a list read whole (a case's documents, bounded by the case's quota): its items in
    order from just after `position`, the same order and cut as `after` in SQL."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if position is None:
        return ordered
    return [i for i in ordered if (key(i) < position if newest_first else key(i) > position)]
