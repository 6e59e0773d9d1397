"""The pages' templates: one Jinja2 environment per page language (the i18n extension binds one
catalog to an environment), autoescaped HTML, undefined variables raise. Every template is
compiled when the application starts, so a broken template stops it instead of a page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from referrals_web import i18n, icd10, routing_words, vocabulary

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass
class Form:
    """What a form holds between a refusal and the next try: the values as typed and, per field,
    the message (an English msgid and its parameters, translated in the template) and the id of
    the element the error summary links to."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    anchors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> Any:
        found = self.values.get(name)
        return default if found is None else found

    def error(self, name: str, message: str, *, anchor: str | None = None, **params: Any) -> None:
        """Keep the first error of a field (the one to fix first)."""
        if name not in self.errors:
            self.errors[name] = (message, params)
            if anchor:
                self.anchors[name] = anchor

    def platform_error(self, name: str, text: str, *, anchor: str | None = None) -> None:
        """An error in the platform's own words (no catalog entry; `%` made literal)."""
        self.error(name, text.replace("%", "%%"), anchor=anchor)

    def anchor(self, name: str) -> str:
        return self.anchors.get(name, name)

    @property
    def ok(self) -> bool:
        return not self.errors


def make_environment(locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]  # jinja2.ext.i18n's
    env.globals.update(
        locale=locale,
        vocabulary=vocabulary,
        icd10_title=icd10.title,
        routing_words=lambda routing: routing_words.explain(routing, locale),
    )
    env.filters.update(
        long_date=lambda v: i18n.long_date(v, locale),
        date_time=lambda v: i18n.date_time(v, locale),
        language_name=lambda v: i18n.language_name(v, locale),
        country_name=lambda v: i18n.country_name(v, locale),
        any_of=lambda v: i18n.any_of(list(v), locale),
        all_of=lambda v: i18n.all_of(list(v), locale),
        utc_date_time=lambda v: i18n.utc_date_time(v, locale),
        utc_date=lambda v: i18n.utc_date(v, locale),
        from_now=lambda v: i18n.from_now(v, locale),
        zone_name=lambda zone: i18n.zone_name(zone, locale),
        zoned_date_time=lambda v, zone: i18n.zoned_date_time(v, zone, locale),
        zoned_time=lambda v, zone: i18n.zoned_time(v, zone, locale),
        zoned_day=lambda v, zone: i18n.zoned_day(v, zone, locale),
        money=lambda price: i18n.money(price, locale),
    )
    return env


class Renderer:
    def __init__(self) -> None:
        self.envs = {locale: make_environment(locale) for locale in i18n.LOCALES}
        for env in self.envs.values():
            for name in env.list_templates(extensions=["html"]):
                env.get_template(name)

    def render(self, locale: str, template: str, context: dict[str, Any]) -> str:
        return self.envs[i18n.resolve_locale(locale)].get_template(template).render(context)

    def gettext(self, locale: str) -> Callable[[str], str]:
        return i18n.translations(i18n.resolve_locale(locale)).gettext
