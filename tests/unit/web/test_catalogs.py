"""The pages' catalogs are complete: every string of the templates and the code is in
messages.pot, every one is translated into Ukrainian (with its three plural forms), and the
compiled .mo files match their .po files (frontend/src/referrals_web/locale/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import referrals_web

pytestmark = pytest.mark.unit

PACKAGE = Path(referrals_web.__file__).parent
LOCALE = PACKAGE / "locale"
JINJA = {
    "extensions": "jinja2.ext.i18n",
    "trimmed": "true",
    "trim_blocks": "true",
    "lstrip_blocks": "true",
    "newstyle_gettext": "true",
}


def catalog(path: Path, locale: str | None = None):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def ids(cat) -> set:  # type: ignore[no-untyped-def]
    return {m.id for m in cat if m.id}


def test_every_string_is_in_the_template() -> None:
    found = {
        message[2]
        for message in extract_from_dir(
            PACKAGE,
            method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
            options_map={"templates/**.html": JINJA},
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        )
    }
    found = {m if isinstance(m, str) else m[0] for m in found}
    pot = {m if isinstance(m, str) else m[0] for m in ids(catalog(LOCALE / "messages.pot"))}
    assert found == pot, "run pybabel extract (locale/README.md)"


@pytest.mark.parametrize("locale", ["uk", "en"])
def test_each_catalog_follows_the_template(locale: str) -> None:
    pot = ids(catalog(LOCALE / "messages.pot"))
    assert ids(catalog(LOCALE / locale / "LC_MESSAGES" / "messages.po", locale)) == pot


def test_ukrainian_is_complete_with_three_plural_forms() -> None:
    uk = catalog(LOCALE / "uk" / "LC_MESSAGES" / "messages.po", "uk")
    assert uk.num_plurals == 3
    for message in uk:
        if not message.id:
            continue
        assert "fuzzy" not in message.flags, message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), message.id
        if isinstance(message.id, tuple):
            assert len(strings) == 3, message.id


@pytest.mark.parametrize("locale", ["uk", "en"])
def test_the_compiled_catalog_matches_its_source(locale: str) -> None:
    po = catalog(LOCALE / locale / "LC_MESSAGES" / "messages.po", locale)
    with (LOCALE / locale / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
        mo = read_mo(handle)

    def flat(value):  # type: ignore[no-untyped-def]
        return tuple(value) if isinstance(value, list | tuple) else value

    def table(cat):  # type: ignore[no-untyped-def]
        return {
            flat(m.id): flat(m.string)
            for m in cat
            if m.id and m.string and any(m.string) and flat(m.string) != flat(m.id)
        }

    assert table(mo) == table(po), "run pybabel compile (locale/README.md)"
