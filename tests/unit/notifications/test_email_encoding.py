"""A text part's quoted-printable body (issue 25, cost per case): encoded once, in two pieces (the
first ten lines the `email` package sniffs, then the rest), where the package encodes those ten
lines and then the whole body again; the bytes are the package's. The whole message's wire form
against the package's is tested in test_channels (every trigger and language, odd messages)."""

from __future__ import annotations

from email import quoprimime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from referrals_notifications.channels import email as email_channel

pytestmark = pytest.mark.unit

# Lines a body is made of: quoted-printable's edge cases (soft breaks next to a quoted byte, white
# space at the end with and without room for it, `=` itself), Cyrillic and plain ASCII.
WORDS = st.sampled_from(["a", "word", "=", " ", "\t", "é", "Привіт", "x" * 70, "<p>", "3F0F-6C7D"])
LINES = st.lists(WORDS, max_size=40).map("".join)
BODIES = st.lists(LINES, min_size=1, max_size=25).map("\n".join)


def _package_part(text: str) -> tuple[str, bytes | None]:
    """(Content-Transfer-Encoding, body) of the part `set_content` makes of `text` (to a server
    that takes 8-bit data), its body with CRLF line ends as on the wire (None for 8bit: the
    package holds that body as text)."""
    part = EmailMessage()
    part.set_content(text)
    cte = part["Content-Transfer-Encoding"]
    if cte == "8bit":
        return cte, None
    body = part.get_payload().encode("ascii")
    return cte, b"\r\n".join(body.splitlines()) + b"\r\n"


@settings(max_examples=300, deadline=None)
@given(BODIES)
def test_a_text_part_is_encoded_as_the_email_package_encodes_it(text: str) -> None:
    cte, body = email_channel._encoded_text(text, eight_bit=True)
    expected_cte, expected_body = _package_part(text)
    assert cte == expected_cte
    if expected_body is not None:
        assert body == expected_body


def test_a_quoted_printable_body_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mostly ASCII lines longer than a line may be (an HTML body): quoted-printable, each
    character encoded once (the package's way encoded the first ten lines twice)."""
    text = "\n".join(f"<p style='margin:0'>{'a' * 80} {n} Привіт</p>" for n in range(14)) + "\n"
    encoded: list[int] = []
    body_encode = quoprimime.body_encode

    def counted(body: str, *args: Any) -> str:
        encoded.append(len(body))
        return str(body_encode(body, *args))

    monkeypatch.setattr(quoprimime, "body_encode", counted)
    cte, body = email_channel._encoded_text(text, eight_bit=True)
    monkeypatch.undo()
    assert cte == "quoted-printable"
    assert sum(encoded) == len(text.encode("utf-8"))
    assert (cte, body) == _package_part(text)
