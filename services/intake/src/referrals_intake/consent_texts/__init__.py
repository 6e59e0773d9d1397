"""The consent texts a patient agrees to, published by version: the one source of their words.

Each text is a file `<kind>/<version>.json` beside this module, in Ukrainian and English: a
title, the paragraphs the patient reads and the sentence they tick. A published version never
changes; a change of wording is a new version (and intake's settings then accept it). Intake
serves them at `/v1/consent-texts/<kind>/<version>` (`referrals_intake.api.consent_texts`), the
URI a FHIR export's `Consent.policy` names, and front ends show the patient these words, so what
the record says was agreed to is what was read.

`share_earlier_opinions` is the further opinion's sharing step: asked each time, recorded with
the request, its words versioned like the others.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ConsentKind = Literal["processing", "cross_border", "share_earlier_opinions"]
KINDS: tuple[ConsentKind, ...] = ("processing", "cross_border", "share_earlier_opinions")
LANGUAGES = ("uk", "en")
SHARING_VERSION = "2026-01"
"""The version of the sharing step's words a further opinion's Consent names."""


class ConsentWording(BaseModel):
    """A consent text in one language."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(min_length=1)
    paragraphs: list[str] = Field(min_length=1, description="What the patient reads, in order")
    agreement: str = Field(min_length=1, description="The sentence the patient ticks or chooses")


class ConsentText(BaseModel):
    """One published version of one kind of consent, in every language it is offered in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ConsentKind
    version: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    in_force_from: date
    texts: dict[Literal["uk", "en"], ConsentWording]


class ConsentTextMissing(ValueError):
    """A version intake is configured to accept has no published text."""


@cache
def published() -> dict[tuple[str, str], ConsentText]:
    """Every published text, by (kind, version); each file's name must match its content."""
    found: dict[tuple[str, str], ConsentText] = {}
    root = resources.files(__name__)
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not entry.name.endswith(".json"):
                continue
            text = ConsentText.model_validate_json(entry.read_bytes())
            if (text.kind, text.version) != (kind, entry.name.removesuffix(".json")):
                raise ValueError(f"{kind}/{entry.name} holds {text.kind} {text.version}")
            if set(text.texts) != set(LANGUAGES):
                raise ValueError(f"{kind}/{entry.name} is not in every language {LANGUAGES}")
            found[(kind, text.version)] = text
    return found


def text_of(kind: str, version: str) -> ConsentText | None:
    return published().get((kind, version))


def require_published(kind: str, versions: tuple[str, ...]) -> None:
    """Refuse a configuration that accepts a consent version nobody can read."""
    missing = [v for v in versions if text_of(kind, v) is None]
    if missing:
        raise ConsentTextMissing(
            f"no published {kind} consent text for version(s) {', '.join(missing)}: "
            f"add consent_texts/{kind}/<version>.json before accepting it"
        )


def policy_path(kind: str, version: str) -> str:
    """The path, under intake's public base URL, where that text is served."""
    return f"/v1/consent-texts/{kind}/{version}"
