"""Which languages a case's documents may be in, and what to tell a patient whose document is not.

The rule second-opinion services apply: a cancer center reads English, and the language(s) of its
own country. So the acceptable languages of a case are **English first, then the official
languages of each country the opinion may come from**, in the order the patient named them,
without duplicates, as ISO 639-1 codes:

* `ukraine` → English, Ukrainian;
* `countries` → English, then each named country's official languages (Germany: de; Israel: he,
  ar; Switzerland: de, fr, it; Belgium: nl, fr, de; Canada: en, fr);
* `abroad` → English only. The center is not chosen yet and may be in any country, and English is
  the one language every center taking international referrals reads; a document in German is
  asked to be translated even though a German center would have read it.

Official languages come from the Unicode CLDR territory data shipped with Babel: the *de jure*
official languages (`get_official_languages`), which leaves out languages that are official only
in a region (Catalan in Spain) and de facto majority languages (Russian in Ukraine). A territory
with no de jure official language (the United States, Australia) falls back to its de facto ones
(English). CLDR lists Arabic as official in Israel, so Arabic documents are accepted for Israeli
centers. Codes CLDR gives with a script or region (`sr_Latn`) keep their language part, and codes
without an ISO 639-1 form (`gsw`, Swiss German) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Final

from babel import Locale
from babel.languages import get_official_languages
from babel.lists import format_list

from referrals_common.contracts.intake import Destination, DestinationPreference

ENGLISH: Final = "en"
UKRAINE: Final = "UA"


class Verdict(StrEnum):
    """Whether a document's main language suits the case's destination."""

    ACCEPTED = "accepted"
    TRANSLATION_REQUIRED = "translation_required"


def official_languages(country: str) -> list[str]:
    """The official languages of a country (ISO 3166-1 alpha-2) as ISO 639-1 codes, CLDR order."""
    territory = country.upper()
    codes = get_official_languages(territory) or get_official_languages(territory, de_facto=True)
    return _iso_639_1(codes)


def acceptable_languages(destination: Destination) -> list[str]:
    """English, then the official languages of the destination's countries, without duplicates."""
    if destination.preference is DestinationPreference.UKRAINE:
        countries: Sequence[str] = [UKRAINE]
    elif destination.preference is DestinationPreference.COUNTRIES:
        countries = destination.countries
    else:
        countries = []
    languages = [ENGLISH]
    for country in countries:
        languages.extend(official_languages(country))
    return list(dict.fromkeys(languages))


def verdict(main_language: str, acceptable: Sequence[str]) -> Verdict:
    """Accepted when the document's main language is one of the acceptable ones."""
    if main_language in acceptable:
        return Verdict.ACCEPTED
    return Verdict.TRANSLATION_REQUIRED


def language_name(code: str) -> str:
    """The English name of a language: `uk` → Ukrainian (the code itself when CLDR has none)."""
    name: str = Locale("en").languages.get(code, code)
    return name


def translation_request(detected_language: str, acceptable: Sequence[str]) -> str:
    """The sentence asking the patient for a translation, naming the languages in words.

    "This document is in Russian. Please upload a translation into English or German."
    """
    if not acceptable:
        raise ValueError("there is no language to translate into")
    names = [language_name(code) for code in acceptable]
    into = format_list(names, style="or", locale="en")
    return (
        f"This document is in {language_name(detected_language)}. "
        f"Please upload a translation into {into}."
    )


def _iso_639_1(codes: Iterable[str]) -> list[str]:
    """Two-letter language codes from CLDR language identifiers, in order, without duplicates."""
    languages = (code.split("_")[0].lower() for code in codes)
    return list(dict.fromkeys(code for code in languages if len(code) == 2 and code.isalpha()))
