"""A multipart/form-data upload read as it arrives, never held whole.

Form fields that come before the file part (`kind`, `translation_of`) are collected first, so the
service knows what the document is before its bytes flow; the file's bytes are then handed on
chunk by chunk. One file per request: a second file part is refused (400 `multiple-files`)
before the first one counts as complete, so nothing of such a request is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from referrals_common.api.problems import BadRequest, UnsupportedMediaType

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 1024


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    file_name: str | None = None
    value: bytearray = field(default_factory=bytearray)


FORM_ALLOWANCE = 64 * 1024
"""What a request body may hold besides its file (fields, part headers, boundaries)."""


@dataclass
class Upload:
    fields: dict[str, str]
    file_name: str
    chunks: AsyncIterator[bytes]
    declared_bytes: int | None = None
    """The request's Content-Length, when it gave one: the file is no larger."""

    def surely_larger_than(self, limit: int) -> bool:
        """Whether the body the client announced cannot hold a file of at most `limit` bytes
        and its form, so the upload can be refused before its bytes are read."""
        return self.declared_bytes is not None and self.declared_bytes > limit + FORM_ALLOWANCE


_Event = tuple[str, Any, Any]
"""(what, its payload, the file's number): ("file", name, n), ("data", bytes, n), ("end", None,
n), or ("field", name, value)."""


class _Events:
    """Turns the push parser's callbacks into a list of events the reader drains."""

    def __init__(self) -> None:
        self.items: list[_Event] = []
        self.part = _Part()
        self._header_field = b""
        self._header_value = b""
        self.files = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self.part.file_name = options[b"filename"].decode("utf-8", "replace")
            self.files += 1
            self.items.append(("file", self.part.file_name, self.files))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.file_name is not None:
            # A chunk that is all file data is handed on as it is (a slice would copy it).
            whole = start == 0 and end == len(data) and type(data) is bytes
            self.items.append(("data", data if whole else bytes(data[start:end]), self.files))
        else:
            self.part.value += data[start:end]
            if len(self.part.value) > MAX_FIELD_BYTES:
                raise BadRequest(f"The form field {self.part.name!r} is too long.")

    def on_part_end(self) -> None:
        if self.part.file_name is None:
            self.items.append(("field", self.part.name, self.part.value.decode("utf-8", "replace")))
        else:
            self.items.append(("end", None, self.files))


def _second_file() -> BadRequest:
    return BadRequest(
        "The form has more than one file part: nothing was stored. Send one document per request.",
        type_slug="multiple-files",
        title="More than one file in one upload",
    )


async def read_upload(request: Request) -> Upload:
    """Parse until the file part starts; return its fields, name and a stream of its bytes."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType(
            "Upload the document as multipart/form-data with a `file` part (fields `kind` and, "
            "for a translation, `translation_of` before it)."
        )
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())
    stream = request.stream().__aiter__()
    fields: dict[str, str] = {}
    pending: list[_Event] = []
    file_name: str | None = None

    async def more() -> bool:
        try:
            chunk = await stream.__anext__()
        except StopAsyncIteration:
            try:
                parser.finalize()
            except MultipartParseError:
                raise BadRequest(
                    "The multipart/form-data body ends in the middle of a part."
                ) from None
            return False
        try:
            parser.write(chunk)
        except MultipartParseError:
            raise BadRequest(
                "The body is not a valid multipart/form-data form (check its boundary and parts)."
            ) from None
        return True

    while file_name is None:
        if not events.items and not await more():
            raise BadRequest("The form has no file part: send the document in a part named `file`.")
        while events.items:
            item = events.items.pop(0)
            if item[0] == "field":
                fields[item[1]] = item[2]
            elif item[0] == "file":
                file_name = item[1]
                pending = events.items[:]
                events.items.clear()
                break

    async def file_chunks() -> AsyncIterator[bytes]:
        queue = pending
        while True:
            for index, (kind, payload, number) in enumerate(queue):
                if number != 1:
                    raise _second_file()
                if kind == "data":
                    yield payload
                elif kind == "end":
                    # The rest of the body (closing boundary) is read before the file counts
                    # as complete: a second file, in what is left of this chunk or later, is
                    # refused, never silently dropped.
                    later = queue[index + 1 :]
                    while True:
                        if any(item[0] == "file" for item in later):
                            raise _second_file()
                        if not await more():
                            return
                        later, events.items = events.items, []
            queue = []
            if not await more():
                raise BadRequest("The upload ended before the file was complete.")
            queue, events.items = events.items, []

    declared = request.headers.get("content-length", "")
    return Upload(
        fields=fields,
        file_name=file_name,
        chunks=file_chunks(),
        declared_bytes=int(declared) if declared.isdigit() else None,
    )
