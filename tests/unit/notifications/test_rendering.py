"""Rendering every notification: both languages, e-mail and SMS, strictness, dates, escaping."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import uuid
from datetime import UTC, datetime

import jinja2
import pytest
from jinja2 import meta, nodes

from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.messages import (
    CONTEXT_MODELS,
    CaseWithdrawnContext,
    DocumentRejectedContext,
    DocumentUnreadableContext,
    MessageContext,
    UnroutableOpsAlert,
)
from referrals_notifications.rendering import (
    EMAIL_PARTS,
    SMS_PART,
    TEMPLATES_DIR,
    Renderer,
    UnknownCode,
    build_webhook_message,
    build_webhook_payload,
    resolve_locale,
)

from .samples import (
    CASE_REF,
    CENTER_MESSAGE,
    CENTER_NAME,
    DOCUMENT_NAME,
    GREETING,
    sample_context,
)

pytestmark = pytest.mark.unit

CYRILLIC = re.compile(r"[А-Яа-яІіЇїЄєҐґ’]")
TRIGGERS = list(T)
LOCALES = ("uk", "en")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def plain(text: str) -> str:
    """CLDR puts narrow no-break spaces in dates ("15 квітня 2026\u202fр.", "2:00\u202fPM")."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


def visible_text(markup: str) -> str:
    """What a reader of the HTML sees, whitespace collapsed."""
    body = markup.split("<body", 1)[1]
    no_tags = re.sub(r"<[^>]+>", " ", body)
    return " ".join(html_lib.unescape(no_tags).split())


def test_every_trigger_has_a_context_model_and_templates() -> None:
    assert set(CONTEXT_MODELS) == set(T)
    for trigger, model in CONTEXT_MODELS.items():
        assert model.trigger is trigger
    names = Renderer.template_names()
    for trigger in T:
        for part in (*EMAIL_PARTS, SMS_PART):
            assert f"{trigger}/{part}" in names


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_email_renders_subject_text_and_html(renderer: Renderer, trigger: T, locale: str) -> None:
    message = renderer.render(trigger, sample_context(trigger, locale), C.EMAIL)

    assert message.subject and "\n" not in message.subject
    assert CASE_REF in message.subject
    assert message.text.endswith("\n") and "\n\n\n" not in message.text
    assert CASE_REF in message.text
    assert message.html is not None
    assert message.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in message.html
    assert GREETING[locale] in message.text
    assert "https://front.example.org/cases/3f0f6c7d" in message.text
    assert 'href="https://front.example.org/cases/3f0f6c7d"' in message.html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_text_and_html_say_the_same(renderer: Renderer, trigger: T, locale: str) -> None:
    message = renderer.render(trigger, sample_context(trigger, locale), C.EMAIL)
    assert message.html is not None
    seen = visible_text(message.html)
    for line in message.text.splitlines():
        words = " ".join(line.split())
        if re.search(r"\w", words):
            assert words in seen, f"{trigger}/{locale}: {words!r} is not in the HTML"


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_ukrainian_is_ukrainian(renderer: Renderer, trigger: T) -> None:
    message = renderer.render(trigger, sample_context(trigger, "uk"), C.EMAIL)
    sms = renderer.render(trigger, sample_context(trigger, "uk"), C.SMS)

    for text in (message.subject, sms.text):
        assert CYRILLIC.search(text), text
    assert "Доброго дня, Олено!" in message.text
    assert "З повагою," in message.text
    assert f"Номер запиту: {CASE_REF}" in message.text
    assert "Запит" in sms.text
    # no English template sentence slipped through untranslated
    for english in ("Kind regards", "Request reference", "What happens next", "Dear "):
        assert english not in message.text


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_english_is_english(renderer: Renderer, trigger: T) -> None:
    context = sample_context(trigger, "en")
    message = renderer.render(trigger, context, C.EMAIL)
    sms = renderer.render(trigger, context, C.SMS)

    for text in (message.subject, message.text, visible_text(message.html or ""), sms.text):
        assert not CYRILLIC.search(text), text
    assert "Dear Olena," in message.text
    assert "Kind regards," in message.text
    assert f"Request reference: {CASE_REF}" in message.text


UK_KEY_PHRASES = {
    T.CASE_SUBMITTED: ["Ми отримали ваш запит", "другу лікарську думку"],
    T.DOCUMENT_REJECTED: ["Документ: «Befund_Mammographie_2026.pdf»", "пошкоджено"],
    T.TRANSLATION_REQUIRED: [
        "Мова документа: німецька",
        "Мова перекладу: англійська або польська",
        "висновок патогістологічного дослідження",
        "однією з цих мов",
    ],
    T.DOCUMENT_UNREADABLE: ["Документ: виписка з медичної карти", "чіткішу копію"],
    T.CASE_READY: ["документи перевірено"],
    T.REFERRAL_REQUESTED: ["Країна: Німеччина", f"Центр: {CENTER_NAME}"],
    T.REFERRAL_ACCEPTED: ["Орієнтовна дата висновку: 1 травня 2026"],
    T.REFERRAL_DECLINED: ["не може його взяти", "іншому відповідному центру"],
    T.INFO_REQUESTED: ["Повідомлення центру:", CENTER_MESSAGE],
    T.OPINION_DELIVERED: ["висновок", "вашим лікарем"],
    T.CASE_UNROUTABLE: ["Нам дуже шкода", "обраним вами країнам"],
    T.CASE_WITHDRAWN: ["відкликано й закрито"],
}

EN_KEY_PHRASES = {
    T.TRANSLATION_REQUIRED: [
        "Language of the document: German",
        "Language of the translation: English or Polish",
        "Document: “Befund_Mammographie_2026.pdf” (pathology report)",
    ],
    T.REFERRAL_REQUESTED: ["Country: Germany", f"Center: {CENTER_NAME}"],
    T.REFERRAL_ACCEPTED: ["Expected date of the opinion: May 1, 2026"],
}


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_ukrainian_key_phrases(renderer: Renderer, trigger: T) -> None:
    text = plain(renderer.render(trigger, sample_context(trigger, "uk"), C.EMAIL).text)
    for phrase in UK_KEY_PHRASES[trigger]:
        assert phrase in text, phrase


@pytest.mark.parametrize("trigger", sorted(EN_KEY_PHRASES))
def test_english_key_phrases(renderer: Renderer, trigger: T) -> None:
    text = plain(renderer.render(trigger, sample_context(trigger, "en"), C.EMAIL).text)
    for phrase in EN_KEY_PHRASES[trigger]:
        assert phrase in text, phrase


def test_plural_form_follows_the_number_of_languages(renderer: Renderer) -> None:
    one = sample_context(T.TRANSLATION_REQUIRED, "uk", acceptable_languages=["en"])
    text = renderer.render(T.TRANSLATION_REQUIRED, one, C.EMAIL).text
    assert "Замовте переклад документа цією мовою." in text
    assert "Мова перекладу: англійська\n" in text
    english = sample_context(T.TRANSLATION_REQUIRED, "en", acceptable_languages=["en"])
    assert "into this language." in renderer.render(T.TRANSLATION_REQUIRED, english, C.EMAIL).text


MEDICAL_WORDS = (
    "cancer", "oncolog", "diagnos", "opinion", "translat", "document", "center", "centre",
    "онко", "діагно", "висновок", "переклад", "документ", "центр", "рак",
)  # fmt: skip


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_sms_carries_no_medical_details(renderer: Renderer, trigger: T, locale: str) -> None:
    context = sample_context(trigger, locale)
    sms = renderer.render(trigger, context, C.SMS)

    assert sms.html is None
    assert "\n" not in sms.text
    assert CASE_REF in sms.text
    lowered = sms.text.lower()
    leaks = [CENTER_NAME, CENTER_MESSAGE, DOCUMENT_NAME, GREETING[locale], "Charité", "http"]
    for names_locale in LOCALES:  # language and country names as the e-mail shows them
        names = renderer.environment(names_locale).filters
        leaks += [names["language"]("de"), names["language"]("en"), names["country"]("DE")]
    for leak in leaks:
        assert leak.lower() not in lowered, (leak, sms.text)
    for word in MEDICAL_WORDS:
        assert word not in lowered, (word, sms.text)


@pytest.mark.parametrize("locale", LOCALES)
def test_sms_texts_are_few_and_short(renderer: Renderer, locale: str) -> None:
    texts = {renderer.render(t, sample_context(t, locale), C.SMS).text for t in T}
    # received / update / action needed / closed: nothing more specific than that
    assert len(texts) == 4
    # one SMS segment: 70 UCS-2 characters for Ukrainian, 160 GSM-7 for English
    limit = 70 if locale == "uk" else 160
    assert all(len(text) <= limit for text in texts), texts


def test_dates_are_shown_in_kyiv_time(renderer: Renderer) -> None:
    uk = renderer.render(T.REFERRAL_REQUESTED, sample_context(T.REFERRAL_REQUESTED, "uk"), C.EMAIL)
    assert "Центр має відповісти до 15 квітня 2026 р., 14:00 за київським часом." in plain(uk.text)
    assert "11:00" not in uk.text
    en = renderer.render(T.REFERRAL_REQUESTED, sample_context(T.REFERRAL_REQUESTED, "en"), C.EMAIL)
    assert "The center is to reply by April 15, 2026, 2:00 PM Kyiv time." in plain(en.text)
    assert "11:00" not in en.text


def test_winter_time_in_kyiv_is_utc_plus_two(renderer: Renderer) -> None:
    text = renderer.render(T.CASE_SUBMITTED, sample_context(T.CASE_SUBMITTED, "uk"), C.EMAIL).text
    assert "15 січня 2026 р., 13:00 за київським часом" in plain(text)


def test_a_date_is_the_day_in_the_patients_zone(renderer: Renderer) -> None:
    kyiv = sample_context(T.REFERRAL_ACCEPTED, "en")
    assert "May 1, 2026" in renderer.render(T.REFERRAL_ACCEPTED, kyiv, C.EMAIL).text
    lisbon = sample_context(T.REFERRAL_ACCEPTED, "en", time_zone="Europe/Lisbon")
    assert "April 30, 2026" in renderer.render(T.REFERRAL_ACCEPTED, lisbon, C.EMAIL).text


def test_another_time_zone_is_named(renderer: Renderer) -> None:
    context = sample_context(T.REFERRAL_REQUESTED, "uk", time_zone="Europe/Berlin")
    text = renderer.render(T.REFERRAL_REQUESTED, context, C.EMAIL).text
    assert "15 квітня 2026 р., 13:00, час: Німеччина (Берлін)" in plain(text)
    assert "київським" not in text


def test_center_message_is_escaped_in_html(renderer: Renderer) -> None:
    hostile = '<script>alert("x")</script> & <b>bold</b>'
    context = sample_context(
        T.INFO_REQUESTED, "en", message=hostile, greeting_name="<img src=x onerror=alert(1)>"
    )
    message = renderer.render(T.INFO_REQUESTED, context, C.EMAIL)
    assert message.html is not None
    assert "<script>" not in message.html
    assert "<img" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in (
        message.html
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in message.html
    # plain text is not HTML: the message is shown as the center wrote it
    assert hostile in message.text


def test_document_name_is_escaped_in_html(renderer: Renderer) -> None:
    context = sample_context(T.DOCUMENT_REJECTED, "uk", document_name='a"><svg onload=x>.pdf')
    message = renderer.render(T.DOCUMENT_REJECTED, context, C.EMAIL)
    assert message.html is not None
    assert "<svg" not in message.html
    assert "&lt;svg onload=x&gt;" in message.html


def test_a_missing_variable_is_an_error(renderer: Renderer) -> None:
    template = renderer.environment("en").get_template("referral_requested/body.txt")
    variables = dict(sample_context(T.REFERRAL_REQUESTED, "en"))
    variables["locale"] = "en"
    template.render(variables)  # complete: renders
    del variables["center_name"]
    with pytest.raises(jinja2.UndefinedError, match="center_name"):
        template.render(variables)


def test_a_template_using_an_unknown_variable_fails_rendering(renderer: Renderer) -> None:
    env = renderer.environment("uk")
    assert env.undefined is jinja2.StrictUndefined
    broken = env.from_string("{{ greeting_name }} {{ diagnosis }}")
    with pytest.raises(jinja2.UndefinedError, match="diagnosis"):
        broken.render(greeting_name="Олено")


def _source(env: jinja2.Environment, name: str) -> str:
    return env.loader.get_source(env, name)[0]  # type: ignore[union-attr]


def _used_variables(env: jinja2.Environment, name: str) -> set[str]:
    """The context variables a template reads (not globals, not the macros it imports)."""
    tree = env.parse(_source(env, name))
    imported = {
        alias if isinstance(alias, str) else alias[1]
        for node in tree.find_all(nodes.FromImport)
        for alias in node.names
    }
    return meta.find_undeclared_variables(tree) - set(env.globals) - imported


def test_templates_use_exactly_their_context_fields(renderer: Renderer) -> None:
    env = renderer.environment("en")
    shared = set(MessageContext.model_fields)
    for layout in ("layouts/email.txt", "layouts/email.html"):
        assert _used_variables(env, layout) <= shared
    for trigger, model in CONTEXT_MODELS.items():
        fields = set(model.model_fields)
        own = fields - shared
        for part in (*EMAIL_PARTS, SMS_PART):
            used = _used_variables(env, f"{trigger}/{part}")
            assert used <= fields, f"{trigger}/{part} uses {used - fields}"
        for body in ("body.txt", "body.html"):
            used = _used_variables(env, f"{trigger}/{body}")
            assert own <= used, f"{trigger}/{body} never shows {own - used}"


SHARED_MACROS = ("macros/common.txt", "macros/reasons.txt")


@pytest.mark.parametrize("name", SHARED_MACROS)
def test_macros_shared_with_html_output_no_values(renderer: Renderer, name: str) -> None:
    """A .txt macro called from an HTML template returns unescaped text marked safe, so the
    macros both kinds of template share take codes and output fixed wording only."""
    source = _source(renderer.environment("en"), name)
    outputs = re.findall(r"\{\{-?\s*([\w.]+)", source)
    assert set(outputs) <= {"unknown_code"}, outputs
    trans_tags = re.findall(r"\{%-?\s*trans\b[^%]*%\}", source)
    assert trans_tags
    assert all(re.fullmatch(r"\{%-?\s*trans\s*-?%\}", tag) for tag in trans_tags), trans_tags


def test_every_reason_code_has_words(renderer: Renderer) -> None:
    from referrals_common.contracts.records import RejectionReason
    from referrals_common.contracts.translation import UnreadableReason

    texts = set()
    for reason in RejectionReason:
        context = sample_context(T.DOCUMENT_REJECTED, "uk", reason=reason)
        texts.add(renderer.render(T.DOCUMENT_REJECTED, context, C.EMAIL).text)
    assert len(texts) == len(RejectionReason)
    texts = set()
    for reason in UnreadableReason:
        context = sample_context(T.DOCUMENT_UNREADABLE, "uk", reason=reason)
        texts.add(renderer.render(T.DOCUMENT_UNREADABLE, context, C.EMAIL).text)
    assert len(texts) == len(UnreadableReason)


def test_a_code_without_words_fails_loudly(renderer: Renderer) -> None:
    fields = {**dict(sample_context(T.DOCUMENT_REJECTED, "en")), "reason": "by_carrier_pigeon"}
    context = DocumentRejectedContext.model_construct(**fields)
    with pytest.raises(UnknownCode, match="carrier_pigeon"):
        renderer.render(T.DOCUMENT_REJECTED, context, C.EMAIL)


def test_consent_revoked_withdrawal_mentions_deletion(renderer: Renderer) -> None:
    revoked = CaseWithdrawnContext(case_ref=CASE_REF, locale="uk", reason="consent_revoked")
    text = renderer.render(T.CASE_WITHDRAWN, revoked, C.EMAIL).text
    assert "Ми видаляємо ваші дані" in text
    plain = CaseWithdrawnContext(case_ref=CASE_REF, locale="uk")
    assert "видаляємо" not in renderer.render(T.CASE_WITHDRAWN, plain, C.EMAIL).text


def test_without_name_or_link_the_message_still_reads(renderer: Renderer) -> None:
    context = DocumentUnreadableContext(case_ref=CASE_REF, locale="uk", reason="encrypted")
    message = renderer.render(T.DOCUMENT_UNREADABLE, context, C.EMAIL)
    assert message.text.startswith("Доброго дня!\n")
    assert "Документ:" not in message.text
    assert "Стежити за запитом можна в застосунку" in message.text
    assert "href=" not in (message.html or "")


@pytest.mark.parametrize(
    ("tag", "spoken"),
    [("uk", "uk"), ("uk-UA", "uk"), ("UK_ua", "uk"), ("en-GB", "en"), ("de", "en"), ("ru", "en")],
)
def test_locale_falls_back_to_english(tag: str, spoken: str) -> None:
    assert resolve_locale(tag) == spoken


def test_an_unspoken_locale_gets_english(renderer: Renderer) -> None:
    context = sample_context(T.CASE_READY, "de")
    message = renderer.render(T.CASE_READY, context, C.EMAIL)
    assert "Kind regards," in message.text
    assert '<html lang="en">' in (message.html or "")


def test_the_context_must_match_the_trigger(renderer: Renderer) -> None:
    with pytest.raises(TypeError):
        renderer.render(T.CASE_READY, sample_context(T.CASE_SUBMITTED), C.EMAIL)


def test_webhooks_are_not_rendered_from_templates(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="webhook"):
        renderer.render(T.CASE_READY, sample_context(T.CASE_READY), C.WEBHOOK)


def test_webhook_payload_has_facts_but_no_personal_or_free_text() -> None:
    case_id, notification_id = uuid.uuid4(), uuid.uuid4()
    occurred = datetime(2026, 4, 15, 11, 0, tzinfo=UTC)
    for trigger in T:
        context = sample_context(trigger, "uk")
        message = build_webhook_message(
            trigger,
            context,
            case_id=case_id,
            notification_id=notification_id,
            occurred_at=occurred,
        )
        assert message.subject == str(trigger)
        assert message.html is None
        body = json.loads(message.text)
        assert body["type"] == "referrals.case.notification.v1"
        assert body["case_id"] == str(case_id)
        assert body["notification_id"] == str(notification_id)
        assert body["trigger"] == str(trigger)
        assert datetime.fromisoformat(body["occurred_at"]) == occurred
        assert set(body["facts"]) == set(context.webhook_facts)
        for secret in (GREETING["uk"], DOCUMENT_NAME, CENTER_MESSAGE, "front.example.org"):
            assert secret not in message.text


def test_webhook_payload_status_facts() -> None:
    payload = build_webhook_payload(
        T.TRANSLATION_REQUIRED,
        sample_context(T.TRANSLATION_REQUIRED),
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    assert payload.case_status == "action_required"
    assert payload.action_required is True
    assert payload.facts == {
        "document_kind": "pathology_report",
        "detected_language": "de",
        "acceptable_languages": ["en", "pl"],
    }
    accepted = build_webhook_payload(
        T.REFERRAL_ACCEPTED,
        sample_context(T.REFERRAL_ACCEPTED),
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    assert accepted.case_status == "accepted"
    assert accepted.action_required is False
    assert accepted.facts["expected_opinion_at"] == "2026-04-30T22:30:00Z"


def test_ops_alert_is_english_and_names_nobody(renderer: Renderer) -> None:
    case_id = uuid.uuid4()
    alert = UnroutableOpsAlert(
        case_id=case_id,
        case_ref=CASE_REF,
        reason="all_centers_declined",
        centers_tried=["charite-berlin", "nki-amsterdam"],
        occurred_at=datetime(2026, 4, 15, 11, 0, tzinfo=UTC),
    )
    message = renderer.render_ops_alert(alert)
    assert message.subject == f"[referrals] Case {CASE_REF} is unroutable (all_centers_declined)"
    assert str(case_id) in message.text
    assert "charite-berlin, nki-amsterdam" in message.text
    assert "every eligible center declined" in message.text
    assert "2026-04-15 11:00 UTC" in message.text
    assert message.html is None
    assert not CYRILLIC.search(message.text)
    none_tried = alert.model_copy(update={"centers_tried": [], "reason": "no_eligible_center"})
    assert "none (no center was eligible)" in renderer.render_ops_alert(none_tried).text


def test_a_broken_or_missing_template_stops_the_renderer_at_start(tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(TEMPLATES_DIR, broken)
    reasons = broken / "macros" / "reasons.txt"
    reasons.write_text(reasons.read_text() + "{% if %}", encoding="utf-8")
    with pytest.raises(jinja2.TemplateSyntaxError):
        Renderer(templates_dir=broken)

    missing = tmp_path / "missing"
    shutil.copytree(TEMPLATES_DIR, missing)
    (missing / "case_ready" / "sms.txt").unlink()
    with pytest.raises(jinja2.TemplateNotFound):
        Renderer(templates_dir=missing)
