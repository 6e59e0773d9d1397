"""The pages' languages: Ukrainian first, English one tap away.

Words are in Jinja2 templates (`{% trans %}`, `_()`) and, for the few vocabularies built in Python
(`vocabulary.py`), marked with `N_()`; the compiled gettext catalogs in `locale/` are loaded once
at start-up (`locale/README.md` says how to update them). Language names, country names, lists
and dates are never translated by hand: babel renders them from CLDR in the page's language.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from babel import Locale
from babel.dates import (
    format_date,
    format_time,
    format_timedelta,
    get_timezone,
    get_timezone_location,
)
from babel.lists import format_list
from babel.support import NullTranslations, Translations

PACKAGE_DIR = Path(__file__).resolve().parent
LOCALE_DIR = PACKAGE_DIR / "locale"
DOMAIN = "messages"
LOCALES: tuple[str, ...] = ("uk", "en")
"""The page languages, the default first."""
LANGUAGE_NAMES = {"uk": "Українська", "en": "English"}
"""Each language's name in itself, for the switch."""
KYIV = ZoneInfo("Europe/Kyiv")


def N_(message: str) -> str:
    """Marks a string for extraction (the gettext convention); it is translated where shown."""
    return message


def resolve_locale(tag: str | None) -> str:
    """A page language for a tag (`en-GB` -> `en`); anything else -> Ukrainian."""
    primary = (tag or "").replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LOCALES else LOCALES[0]


@cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalog of a page language (English is the source: an empty catalog)."""
    found = Translations.load(str(LOCALE_DIR), [locale], domain=DOMAIN)
    if locale != "en" and not isinstance(found, Translations):
        raise RuntimeError(f"the {locale} catalog is missing: compile locale/ (README.md)")
    return found


def cldr(locale: str) -> str:
    """The CLDR locale dates and lists are written in: British English for `en` (day before
    month, 24-hour clock, as in Europe), Ukrainian as it is."""
    return "en_GB" if locale == "en" else locale


def language_name(code: str | None, locale: str) -> str:
    """`ro` -> "румунська" / "Romanian"."""
    if not code:
        return ""
    try:
        name = Locale(code).get_display_name(locale)
    except (ValueError, TypeError):
        name = None
    if not name:
        return code
    return name if locale == "uk" else name[:1].upper() + name[1:]


def country_name(code: str | None, locale: str) -> str:
    """`DE` -> "Німеччина" / "Germany"."""
    if not code:
        return ""
    name = Locale.parse(locale).territories.get(code.upper())
    if name:
        return str(name)
    country = pycountry.countries.get(alpha_2=code.upper())
    return country.name if country else code


@cache
def countries(locale: str) -> tuple[tuple[str, str], ...]:
    """Every ISO 3166-1 country as (code, name in the page language), sorted by name."""
    names = [(c.alpha_2, country_name(c.alpha_2, locale)) for c in pycountry.countries]
    return tuple(sorted(names, key=lambda pair: pair[1].casefold()))


def any_of(items: list[str], locale: str) -> str:
    """ "English or German" / "англійською або німецькою" style lists."""
    if not items:
        return ""
    return format_list(items, style="or", locale=cldr(locale))


def all_of(items: list[str], locale: str) -> str:
    if not items:
        return ""
    return format_list(items, style="standard", locale=cldr(locale))


def long_date(value: date | datetime | str | None, locale: str) -> str:
    """A day in words, in Kyiv's calendar: "12 квітня 2026 р." / "12 April 2026"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.astimezone(KYIV).date() if value.tzinfo else value.date()
    return format_date(value, format="long", locale=cldr(locale))


def date_time(value: datetime | str | None, locale: str) -> str:
    """A moment in Kyiv time: "12 квітня 2026 р., 14:05"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = value.astimezone(KYIV)
    day = format_date(local.date(), format="long", locale=cldr(locale))
    return f"{day}, {format_time(local.time(), format='short', locale=cldr(locale))}"


def utc_date_time(value: datetime | str | None, locale: str) -> str:
    """A moment in UTC, said so (the center console: its staff are in many time zones):
    "12 April 2026, 11:05 UTC"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment = value.astimezone(UTC)
    day = format_date(moment.date(), format="long", locale=cldr(locale))
    return f"{day}, {format_time(moment.time(), format='short', locale=cldr(locale))} UTC"


def utc_date(value: datetime | str | None, locale: str) -> str:
    """The day of a moment in UTC: "12 April 2026"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_date(value.astimezone(UTC).date(), format="long", locale=cldr(locale))


def from_now(value: datetime | str | None, locale: str) -> str:
    """How far a moment is from now, in words: "in 2 days", "3 hours ago"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_timedelta(
        value - datetime.now(UTC), add_direction=True, threshold=1.5, locale=cldr(locale)
    )


def known_zone(name: str | None) -> str | None:
    """`name` if it is a time zone of the IANA database (`Europe/Kyiv`), else None."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def zone_name(zone: str, locale: str) -> str:
    """A time zone by the place it is named after: "Germany (Berlin) Time" / "час: Німеччина
    (Берлін)"; UTC as itself."""
    if zone in ("UTC", "Etc/UTC"):
        return "UTC"
    try:
        return str(get_timezone_location(get_timezone(zone), locale=cldr(locale)))
    except (LookupError, ValueError):
        return zone


def zoned_date_time(value: datetime | str | None, zone: str, locale: str) -> str:
    """A moment on the clock of `zone`, with its weekday: "вівторок, 12 травня 2026 р., 15:30"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = value.astimezone(ZoneInfo(zone))
    day = format_date(local.date(), format="full", locale=cldr(locale))
    return f"{day}, {format_time(local.time(), format='short', locale=cldr(locale))}"


def zoned_time(value: datetime | str | None, zone: str, locale: str) -> str:
    """The clock time of a moment in `zone`: "15:30"."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_time(value.astimezone(ZoneInfo(zone)).time(), format="short", locale=cldr(locale))


def zoned_day(value: datetime | str | None, zone: str, locale: str) -> str:
    """The day of a moment in `zone`, in words with its weekday."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_date(value.astimezone(ZoneInfo(zone)).date(), format="full", locale=cldr(locale))


def money(price: dict[str, Any] | None, locale: str) -> str:
    """A center's price in the page's language: "2 500,00 EUR" / "€2,500.00"."""
    from babel.numbers import format_currency

    if not price:
        return ""
    return str(format_currency(price["amount"], price["currency"], locale=cldr(locale)))
