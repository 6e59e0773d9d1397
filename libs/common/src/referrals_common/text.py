"""Free text from people (questions, diagnoses as written, insurance, a center's message):
what characters it may hold.

Refused anywhere in such a value: NUL and the other C0 controls but tab, line feed and carriage
return (a text area sends line breaks), DEL, the C1 controls, lone surrogates, and the Unicode
bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which reorder what
follows them on screen, so that a question or a file name reads differently from what it holds.
Applied as a pydantic validator, a refusal is a 422 naming the field, and nothing is stored.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator

_FORBIDDEN: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def refuse_control_characters(value: str) -> str:
    """`value` unchanged, or ValueError naming the first forbidden character."""
    found = _FORBIDDEN.search(value)
    if found is not None:
        raise ValueError(
            f"the text holds the control character U+{ord(found.group()):04X} at position "
            f"{found.start()}; only printable characters, tabs and line breaks are accepted"
        )
    return value


NoControlCharacters = AfterValidator(refuse_control_characters)
"""Add to an `Annotated[str, ...]` to refuse control and bidi override characters."""

PlainText = Annotated[str, NoControlCharacters]
"""A string without control or bidi override characters."""

__all__ = ["NoControlCharacters", "PlainText", "refuse_control_characters"]
