"""The renderer's gettext (issue 25, cost per case): each translated string is one call of the
template's context, not the i18n extension's two or three, and every message reads exactly as the
extension renders it (words, escaping, `%` formatting, plurals)."""

from __future__ import annotations

from typing import Any

import pytest
from babel.support import Translations
from jinja2.runtime import Context

from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.rendering import SUPPORTED_LOCALES, Renderer, load_translations

from .samples import sample_context

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture(scope="module")
def extensions_own() -> Renderer:
    """A renderer whose environments translate through jinja2.ext.i18n's own newstyle gettext."""
    stock = Renderer()
    for locale in SUPPORTED_LOCALES:
        stock.environment(locale).install_gettext_translations(  # type: ignore[attr-defined]
            load_translations(locale), newstyle=True
        )
    return stock


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("trigger", list(T))
def test_every_message_reads_as_the_i18n_extension_renders_it(
    renderer: Renderer, extensions_own: Renderer, trigger: T, locale: str
) -> None:
    context = sample_context(trigger, locale)
    for channel in (C.EMAIL, C.SMS):
        assert renderer.render(trigger, context, channel) == extensions_own.render(
            trigger, context, channel
        )


def test_a_translation_with_a_percent_sign_and_markup_in_its_values_is_formatted_and_escaped(
    renderer: Renderer, extensions_own: Renderer
) -> None:
    words = '{% trans name=name %}100% for {{ name }}{% endtrans %} {{ _("Hello,") }}'
    escaped = "{% autoescape true %}" + words + "{% endautoescape %}"
    for made in (renderer, extensions_own):
        env = made.environment("en")
        assert env.from_string(escaped).render(name="<b>") == "100% for &lt;b&gt; Hello,"
        assert env.from_string(words).render(name="<b>") == "100% for <b> Hello,"


@pytest.fixture
def catalog_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What `Context.call` was asked to call while rendering."""
    called: list[Any] = []
    call = Context.call

    def counted(self: Context, obj: Any, *args: Any, **kwargs: Any) -> Any:
        called.append(obj)
        return call(self, obj, *args, **kwargs)

    monkeypatch.setattr(Context, "call", counted)
    return called


def test_a_translated_string_is_one_call_of_the_context(
    renderer: Renderer, catalog_calls: list[Any]
) -> None:
    """The catalog is asked directly: no `Context.call` of a catalog's method, and the `_` alias
    does not go through `gettext` a second time (both did, through the extension)."""
    renderer.render(T.CASE_SUBMITTED, sample_context(T.CASE_SUBMITTED, "uk"), C.EMAIL)
    assert catalog_calls
    assert not [
        called
        for called in catalog_calls
        if isinstance(getattr(called, "__self__", None), Translations)
    ]
    assert not [
        called for called in catalog_calls if getattr(called, "__name__", "") == "_gettext_alias"
    ]


def test_a_string_without_variables_is_translated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog is asked again only for strings with variables: the others read the same in
    every message of the locale (each is kept once translated and formatted)."""
    asked: list[str] = []
    gettext = Translations.gettext

    def counted(self: Translations, message: str) -> str:
        asked.append(message)
        return str(gettext(self, message))

    monkeypatch.setattr(Translations, "gettext", counted)
    renderer = Renderer()
    for trigger in (T.CASE_SUBMITTED, T.REFERRAL_REQUESTED):
        context = sample_context(trigger, "uk")
        first = renderer.render(trigger, context, C.EMAIL)
        asked.clear()
        assert renderer.render(trigger, context, C.EMAIL) == first
        assert asked
        assert all("%(" in message for message in asked), asked
