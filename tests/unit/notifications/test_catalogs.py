"""The translation catalogs are complete and current: .pot from the templates, .po from the .pot,
.mo from the .po (see services/notifications/src/referrals_notifications/i18n.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from referrals_notifications.rendering import DOMAIN, LOCALE_DIR, PACKAGE_DIR, SUPPORTED_LOCALES

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
MessageId = str | tuple[str, ...]


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"


def key(value: object) -> MessageId:
    """Message ids and strings as babel gives them (plurals as tuples, or lists from a .mo)."""
    return tuple(value) if isinstance(value, list | tuple) else str(value)


def ids(catalog: Catalog) -> set[MessageId]:
    return {key(message.id) for message in catalog if message.id}


def translations(catalog: Catalog) -> dict[MessageId, MessageId]:
    return {key(message.id): key(message.string) for message in catalog if message.id}


def forms(message_string: object) -> tuple[str, ...]:
    return message_string if isinstance(message_string, tuple) else (str(message_string),)


def test_the_pot_has_every_string_of_the_templates() -> None:
    with (PACKAGE_DIR / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    extracted: set[MessageId] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        PACKAGE_DIR, method_map, options_map
    ):
        extracted.add(message if isinstance(message, str) else tuple(message))
    pot = ids(read_catalog(LOCALE_DIR / "messages.pot"))
    assert extracted == pot, (
        "templates and messages.pot differ; run pybabel extract (i18n.md): "
        f"new {sorted(map(str, extracted - pot))}, gone {sorted(map(str, pot - extracted))}"
    )


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_catalog_has_the_strings_of_the_pot(locale: str) -> None:
    pot = ids(read_catalog(LOCALE_DIR / "messages.pot"))
    assert ids(read_catalog(po_path(locale))) == pot, "run pybabel update (i18n.md)"


def test_ukrainian_translates_every_string() -> None:
    pot = read_catalog(LOCALE_DIR / "messages.pot")
    uk = read_catalog(po_path("uk"))
    assert uk.num_plurals == 3
    for template in pot:
        if not template.id:
            continue
        message = uk.get(template.id)
        assert message is not None, template.id
        assert not message.fuzzy, f"fuzzy: {template.id!r}"
        strings = forms(message.string)
        assert len(strings) == (3 if template.pluralizable else 1), template.id
        assert all(string.strip() for string in strings), f"untranslated: {template.id!r}"


def test_translations_keep_the_placeholders() -> None:
    for locale in SUPPORTED_LOCALES:
        for message in read_catalog(po_path(locale)):
            if not message.id or not any(forms(message.string)):
                continue
            expected = set(PLACEHOLDER.findall(" ".join(forms(message.id))))
            for string in forms(message.string):
                assert set(PLACEHOLDER.findall(string)) == expected, (locale, message.id, string)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_compiled_catalogs_match_their_sources(locale: str, tmp_path: Path) -> None:
    compiled = tmp_path / f"{DOMAIN}.mo"
    with compiled.open("wb") as handle:
        write_mo(handle, read_catalog(po_path(locale)))
    with compiled.open("rb") as handle:
        fresh = read_mo(handle)
    with mo_path(locale).open("rb") as handle:
        checked_in = read_mo(handle)
    assert translations(checked_in) == translations(fresh), "run pybabel compile (i18n.md)"
