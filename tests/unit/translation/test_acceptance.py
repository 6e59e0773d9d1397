"""Acceptable languages: English first, then the official languages of the destination countries
(CLDR), and the sentence that asks a patient for a translation."""

from __future__ import annotations

import re
import uuid

import pytest
from babel.core import get_global

from referrals_common.contracts.intake import Destination
from referrals_common.contracts.translation import DocumentTranslationRequired
from referrals_translation.acceptance import (
    Verdict,
    acceptable_languages,
    language_name,
    official_languages,
    translation_request,
    verdict,
)

pytestmark = pytest.mark.unit


def countries(*codes: str) -> Destination:
    return Destination(preference="countries", countries=list(codes))


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        (Destination(preference="ukraine"), ["en", "uk"]),
        (Destination(preference="abroad"), ["en"]),
        (countries("DE"), ["en", "de"]),
        (countries("IL"), ["en", "he", "ar"]),
        (countries("US"), ["en"]),  # no de jure official language: the de facto one
        (countries("GB"), ["en"]),
        (countries("CH"), ["en", "de", "fr", "it"]),
        (countries("PL", "DE", "AT"), ["en", "pl", "de"]),
        (countries("UA", "DE"), ["en", "uk", "de"]),
        (countries("BE", "CA"), ["en", "nl", "fr", "de"]),
        (countries("ES"), ["en", "es"]),  # Catalan is official only in a region
    ],
)
def test_acceptable_languages(destination: Destination, expected: list[str]) -> None:
    assert acceptable_languages(destination) == expected


def test_ukraine_accepts_ukrainian_not_russian() -> None:
    # CLDR counts Russian among Ukraine's de facto languages; only de jure ones count.
    assert official_languages("UA") == ["uk"]
    assert "ru" not in acceptable_languages(Destination(preference="ukraine"))


def test_every_territory_gives_contract_valid_codes() -> None:
    territories = [t for t in get_global("territory_languages") if re.fullmatch(r"[A-Z]{2}", t)]
    assert len(territories) > 200
    for territory in territories:
        languages = acceptable_languages(countries(territory))
        assert languages[0] == "en"
        assert len(set(languages)) == len(languages)
        assert all(re.fullmatch(r"[a-z]{2}", code) for code in languages), territory
        assert "gsw" not in languages


def test_an_unknown_country_leaves_english() -> None:
    assert acceptable_languages(countries("ZZ", "AA")) == ["en"]


@pytest.mark.parametrize(
    ("main", "acceptable", "expected"),
    [
        ("uk", ["en", "uk"], Verdict.ACCEPTED),
        ("en", ["en"], Verdict.ACCEPTED),
        ("ru", ["en", "uk"], Verdict.TRANSLATION_REQUIRED),
        ("de", ["en"], Verdict.TRANSLATION_REQUIRED),
        ("he", ["en", "he", "ar"], Verdict.ACCEPTED),
    ],
)
def test_verdict(main: str, acceptable: list[str], expected: Verdict) -> None:
    assert verdict(main, acceptable) is expected


@pytest.mark.parametrize(
    ("detected", "acceptable", "sentence"),
    [
        ("ru", ["en"], "This document is in Russian. Please upload a translation into English."),
        (
            "ru",
            ["en", "de"],
            "This document is in Russian. Please upload a translation into English or German.",
        ),
        (
            "tr",
            ["en", "he", "ar"],
            "This document is in Turkish. "
            "Please upload a translation into English, Hebrew, or Arabic.",
        ),
        (
            "pl",
            ["en", "uk"],
            "This document is in Polish. Please upload a translation into English or Ukrainian.",
        ),
    ],
)
def test_translation_request(detected: str, acceptable: list[str], sentence: str) -> None:
    assert translation_request(detected, acceptable) == sentence


def test_translation_request_needs_a_language() -> None:
    with pytest.raises(ValueError, match="no language"):
        translation_request("ru", [])


def test_language_names() -> None:
    assert [language_name(c) for c in ("uk", "he", "ka", "nb")] == [
        "Ukrainian",
        "Hebrew",
        "Georgian",
        "Norwegian Bokmål",
    ]
    assert language_name("xx") == "xx"


def test_a_translation_required_event_accepts_what_acceptance_gives() -> None:
    acceptable = acceptable_languages(countries("IL", "DE"))
    event = DocumentTranslationRequired(
        case_id=uuid.uuid4(),
        document_id=uuid.uuid4(),
        detected_language="ru",
        acceptable_languages=acceptable,
        confidence=0.99,
    )
    assert event.acceptable_languages == ["en", "he", "ar", "de"]
