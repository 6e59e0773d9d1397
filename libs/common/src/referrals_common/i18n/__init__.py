"""The platform's words for patients, in the case's language: Ukrainian (`uk`) or English (`en`).

The APIs keep codes (a reason code and its parameters, a language or country code) and render
the words when they answer, in the language of the case (or the one the caller asks for with
`Accept-Language`, see `negotiate`). Sentences come from the gettext catalogues in `locale/`
(English is the source, compiled with Babel; `i18n.md` says how to update them); language and
country names are never translated by hand: they come from Unicode CLDR through Babel.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from babel import Locale
from babel.support import NullTranslations, Translations

PACKAGE_DIR: Final = Path(__file__).resolve().parent
LOCALE_DIR: Final = PACKAGE_DIR / "locale"
DOMAIN: Final = "patient_texts"
LOCALES: Final = ("uk", "en")
"""The languages a case may be in (`CaseCreate.locale`)."""
SOURCE_LOCALE: Final = "en"


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is rendered."""
    return message


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalogue of `locale` (any other language: the English source)."""
    if locale not in LOCALES or locale == SOURCE_LOCALE:
        return NullTranslations()
    found = Translations.load(str(LOCALE_DIR), [locale], domain=DOMAIN)
    if not isinstance(found, Translations):
        raise RuntimeError(f"the {locale} catalogue of {DOMAIN} is missing: compile it (i18n.md)")
    return found


def supported(locale: str | None) -> str:
    """`locale` if the platform speaks it, else English (`uk-UA` → `uk`)."""
    primary = (locale or "").replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else SOURCE_LOCALE


def negotiate(accept_language: str | None, default: str) -> str:
    """The language to answer in: the most preferred language of an `Accept-Language` header
    that the platform speaks (`uk`, `en`; a region is ignored), else `default` (the case's).

    `*`, languages with `q=0`, malformed parts and an absent header all leave `default`."""
    best: tuple[float, int, str] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, rest = part.strip().partition(";")
        primary = tag.strip().split("-", 1)[0].lower()
        if primary not in LOCALES:
            continue
        quality = 1.0
        for parameter in rest.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0 or quality > 1:
            continue
        candidate = (-quality, position, primary)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else default


@cache
def _cldr(locale: str) -> Locale:
    """Babel's `Locale` of a language the platform speaks, parsed once per process (parsing it
    again for each name cost more than the look-up: 2 % of a case's creation, by py-spy)."""
    return Locale.parse(locale)


def language_name(code: str | None, locale: str) -> str:
    """A language's name in `locale` from CLDR: `de` → "німецька" / "German"; the code itself
    when CLDR has none."""
    if not code:
        return ""
    return str(_cldr(supported(locale)).languages.get(code, code))


def country_name(code: str | None, locale: str) -> str:
    """A country's name in `locale` from CLDR: `DE` → "Німеччина" / "Germany"; the code itself
    when CLDR has none."""
    if not code:
        return ""
    return str(_cldr(supported(locale)).territories.get(code.upper(), code))


def named_languages(codes: list[str] | None, locale: str) -> list[dict[str, str]]:
    """`["de"]` → `[{"code": "de", "name": "німецька"}]`."""
    return [{"code": code, "name": language_name(code, locale)} for code in codes or []]


def named_countries(codes: list[str] | None, locale: str) -> list[dict[str, str]]:
    """`["DE"]` → `[{"code": "DE", "name": "Німеччина"}]`."""
    return [{"code": code, "name": country_name(code, locale)} for code in codes or []]


__all__ = [
    "DOMAIN",
    "LOCALES",
    "LOCALE_DIR",
    "N_",
    "PACKAGE_DIR",
    "country_name",
    "language_name",
    "named_countries",
    "named_languages",
    "negotiate",
    "supported",
    "translations",
]
