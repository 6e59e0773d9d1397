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
    load_translations,
    resolve_locale,
)

from .samples import (
    CASE_REF,
    CENTER_MESSAGE,
    CENTER_NAME,
    DOCUMENT_NAME,
    GREETING,
    ITEM_DETAILS,
    OPINION_VERDICTS,
    PROPOSED_CENTERS,
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
    """CLDR puts narrow no-break spaces in dates ("15 квітня 2026\u202fр.", "2:00\u202fPM"), and
    thin spaces around a range's dash ("3:00\u2009–\u20094:00")."""
    return text.replace("\u202f", " ").replace("\xa0", " ").replace("\u2009", " ")


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
    T.INFO_REQUESTED: [
        "Що потрібно центру",
        f"1. Біопсійний матеріал (гістологічні скельця або парафінові блоки) для перегляду "
        f"патологами центру: {ITEM_DETAILS[0]}",
        f"2. Результат лабораторного аналізу: {ITEM_DETAILS[1]}",
        "Чому центр про це просить",
        CENTER_MESSAGE,
        "Будь ласка, надішліть відповідь до 29 квітня 2026 р., 18:00 за київським часом.",
        "Завантажте документи, про які просить центр.",
        "надішліть їх до центру кур’єром і внесіть дані про посилку на сторінці запиту",
        "натисніть «Надіслати до центру»",
        "ми запропонуємо ваш запит іншому центру",
    ],
    T.INFO_REMINDER: [
        "Нагадуємо:",
        "досі не отримав відповіді",
        "Будь ласка, надішліть відповідь до 29 квітня 2026 р., 18:00 за київським часом.",
        "ми запропонуємо ваш запит іншому центру",
        "натисніть «Надіслати до центру»",
    ],
    T.INFO_EXPIRED: [
        "не отримав відповіді до встановленого терміну",
        "іншому відповідному центру",
        "відповідати на нього вже не потрібно",
        "Зараз від вас нічого не потрібно.",
    ],
    T.INFORMATION_SENT: [
        "Ми надіслали вашу відповідь онкологічному центру.",
        "2 нові документи",
        "1 кур’єрська посилка",
        "Письмова відповідь",
    ],
    T.SHIPMENT_RECEIVED: ["матеріал, який ви надіслали кур’єром, надійшов", "21 квітня 2026"],
    T.OPINION_DELIVERED: ["висновок", "вашим лікарем"],
    T.FOLLOW_UP_ANSWERED: [
        "Онкологічний центр відповів на додаткове запитання, яке ви поставили щодо його висновку.",
        "Прочитати відповідь можна на сторінці запиту, поруч із вашим запитанням.",
        "саму відповідь ми в цьому листі не наводимо",
        f"Центр: {CENTER_NAME}",
        "Дата відповіді: 13 травня 2026",
        "Радимо обговорити цю відповідь разом із висновком зі своїм лікарем.",
        "ви можете поставити центру ще одне на сторінці запиту",
        "не минув строк, протягом якого їх приймають після висновку",
    ],
    T.CENTERS_PROPOSED: [
        "3 онкологічні центри можуть надати вам другу лікарську думку щодо вашого випадку.",
        "у тому порядку, в якому ми їх рекомендуємо",
        "оберіть один із цих центрів на сторінці запиту — на сайті або в застосунку клініки",
        "до 18 квітня 2026 р., 00:30 за київським часом.",
        "Якщо до цього часу ви не оберете центр, ми надішлемо ваш запит першому центру зі списку.",
    ],
    T.MEETING_OFFERED: [
        "запрошує вас на консультацію",
        "Формат: відеозв’язок",
        "Мова консультації: англійська",
        "1. середа, 8 квітня 2026 р., 15:00–16:00 за київським часом",
        "Місцевий час центру: середа, 8 квітня 2026 р., 14:00–15:00, час: Німеччина (Берлін)",
        "2. вівторок, 10 листопада 2026 р., 14:00–14:45 за київським часом",
        "Місцевий час центру: вівторок, 10 листопада 2026 р., 13:00–13:45, час: Німеччина (Берлін)",
        "Повідомлення центру:",
        "оберіть зручний для вас час на сторінці запиту",
    ],
    T.MEETING_BOOKED: [
        "Вас записано на консультацію з онкологічним центром.",
        "зазвичай вона триває близько години",
        "Коли: середа, 8 квітня 2026 р., 15:00–16:00 за київським часом",
        "Місцевий час центру: середа, 8 квітня 2026 р., 14:00–15:00, час: Німеччина (Берлін)",
        "Тривалість: 60 хвилин",
        "Посилання для підключення: https://video.charite.example/room/tumor-board-7",
        "Мова консультації: англійська",
        "Як підготуватися",
        "запишіть запитання, які хочете поставити",
        "Файл календаря, доданий до цього листа",
    ],
    T.MEETING_CANCELLED: [
        "Онкологічний центр скасував вашу консультацію.",
        "Скасований час: середа, 8 квітня 2026 р., 15:00–16:00 за київським часом",
        "Повідомлення центру:",
        "Our tumour board had to move",
        "Центр може запропонувати новий час для консультації.",
    ],
    T.MEETING_REMINDER: [
        "Нагадуємо: ваша консультація з онкологічним центром відбудеться приблизно через 24 "
        "години.",
        "Коли: середа, 8 квітня 2026 р., 15:00–16:00 за київським часом",
        "Посилання для підключення: https://video.charite.example/room/tumor-board-7",
    ],
    T.MEETING_MISSED: [
        "вам не вдалося взяти участь у консультації",
        "Запланований час: середа, 8 квітня 2026 р., 15:00–16:00 за київським часом",
        "Центр може запропонувати новий час для консультації.",
        "Письмовий висновок і надалі доступний на сторінці вашого запиту.",
    ],
    T.FURTHER_OPINION_REQUESTED: [
        "ми звертаємося до іншого онкологічного центру по ще одну лікарську думку",
        "якому ваш запит раніше ніколи не пропонували",
        "Як ви й вирішили, попередній висновок надсилається разом із запитом",
        "Ми напишемо вам, щойно центр прийме ваш запит.",
    ],
    T.FURTHER_OPINION_UNAVAILABLE: [
        "жоден інший онкологічний центр не може надати ще одну лікарську думку",
        "Ваш висновок залишається в силі",
        "обговорити його зі своїм лікарем",
        "додаткові запитання на сторінці запиту",
    ],
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
    T.INFO_REQUESTED: [
        "The cancer center reviewing your case needs more information from you.",
        "What the center needs",
        "1. Biopsy material (slides or blocks) for the center's pathologists to review: "
        + ITEM_DETAILS[0],
        f"2. Laboratory test result: {ITEM_DETAILS[1]}",
        "Why the center is asking",
        CENTER_MESSAGE,
        "Please send your answer by April 29, 2026, 6:00 PM Kyiv time.",
        "Upload the documents the center asks for.",
        "send them to the center by courier, and record the shipment on your request page",
        "press “Send to the center”",
        "we will offer your request to another center",
    ],
    T.INFO_REMINDER: [
        "has not received your answer yet",
        "Please send your answer by April 29, 2026, 6:00 PM Kyiv time.",
        "we will offer your request to another center",
    ],
    T.INFO_EXPIRED: [
        "did not receive your answer by the date it set",
        "We are offering your request to another suitable center",
        "you no longer need to answer it",
        "You do not need to do anything right now.",
    ],
    T.INFORMATION_SENT: [
        "we have sent your answer to the cancer center",
        "2 new documents",
        "1 shipment by courier",
        "A written answer",
        "when the center confirms that the material you sent has arrived",
    ],
    T.SHIPMENT_RECEIVED: [
        "the material you sent by courier has arrived",
        "Received on: April 21, 2026",
    ],
    T.FOLLOW_UP_ANSWERED: [
        "The cancer center has answered the follow-up question you asked about its opinion.",
        "You can read the answer on your request page, next to your question.",
        "we do not include the answer itself in this e-mail",
        f"Center: {CENTER_NAME}",
        "Answered on: May 13, 2026",
        "Please discuss the answer, together with the opinion, with your treating doctor.",
        "you can ask the center another one on your request page",
        "the time for questions after the opinion has not run out",
    ],
    T.MEETING_BOOKED: [
        "Your consultation meeting with the cancer center is booked.",
        "When: Wednesday, April 8, 2026, 3:00 – 4:00 PM Kyiv time",
        "The center's local time: Wednesday, April 8, 2026, 2:00 – 3:00 PM, Germany (Berlin) Time",
        "Length: 60 minutes",
        "How: by video call",
        "Link to join: https://video.charite.example/room/tumor-board-7",
        "Language of the meeting: English",
        "write down the questions you would like to ask",
    ],
    T.CENTERS_PROPOSED: [
        "3 cancer centers can give you a second opinion on your case.",
        "in the order we recommend them",
        "Please choose one of these centers on your request page, on the website or in the app "
        "of the clinic where you submitted your request, by April 18, 2026, 12:30 AM Kyiv time.",
        "If you do not choose by then, we will send your request to the first center on the list.",
    ],
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
    leaks = [CENTER_NAME, CENTER_MESSAGE, *ITEM_DETAILS, DOCUMENT_NAME, GREETING[locale]]
    leaks += ["Charité", "http", "HER2", "Ki-67"]
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
        calendar_only = set(model.calendar_facts)
        assert calendar_only <= own
        for body in ("body.txt", "body.html"):
            used = _used_variables(env, f"{trigger}/{body}")
            assert own - calendar_only <= used, f"{trigger}/{body} never shows {own - used}"
            assert not calendar_only & used, f"{trigger}/{body} shows {calendar_only & used}"


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
        for secret in ITEM_DETAILS:
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


# The information loop: a center's request (what, why, by when), reminders, expiry, the answer
# sent and the material received.

INFORMATION_LOOP = (
    T.INFO_REQUESTED,
    T.INFO_REMINDER,
    T.INFO_EXPIRED,
    T.INFORMATION_SENT,
    T.SHIPMENT_RECEIVED,
)
ICD_10 = re.compile(r"\b[CD]\d{2}(\.\d{1,2})?\b")


@pytest.mark.parametrize("locale", LOCALES)
def test_an_info_request_says_what_why_and_by_when_in_html_too(
    renderer: Renderer, locale: str
) -> None:
    message = renderer.render(T.INFO_REQUESTED, sample_context(T.INFO_REQUESTED, locale), C.EMAIL)
    seen = plain(visible_text(message.html or ""))
    for fact in (*ITEM_DETAILS, CENTER_MESSAGE, CENTER_NAME):
        assert fact in seen
    due = "29 квітня 2026 р., 18:00 за київським часом" if locale == "uk" else "6:00 PM Kyiv time"
    assert due in seen
    # the items come in the center's order, each under its kind's label
    assert seen.index(ITEM_DETAILS[0]) < seen.index(ITEM_DETAILS[1]) < seen.index(CENTER_MESSAGE)


@pytest.mark.parametrize("locale", LOCALES)
def test_an_info_request_from_before_the_loop_is_the_centers_message(
    renderer: Renderer, locale: str
) -> None:
    context = sample_context(T.INFO_REQUESTED, locale, items=[], due_at=None)
    text = plain(renderer.render(T.INFO_REQUESTED, context, C.EMAIL).text)
    assert ("Повідомлення центру:" if locale == "uk" else "The center's message:") in text
    assert CENTER_MESSAGE in text
    for absent in (
        "Що потрібно центру", "What the center needs", "надішліть відповідь до",
        "send your answer by", "встановленого терміну", "due date", "1. ",
    ):  # fmt: skip
        assert absent not in text


def test_the_steps_follow_what_the_center_asks_for(renderer: Renderer) -> None:
    items = [
        {"kind": "question", "detail": "Did you have radiotherapy before the surgery?"},
        {"kind": "medications", "detail": "Every medicine you take daily"},
    ]
    context = sample_context(T.INFO_REQUESTED, "en", items=items)
    text = renderer.render(T.INFO_REQUESTED, context, C.EMAIL).text
    assert "• Write your answers to the center's questions." in text
    assert "• Fill in the parts of the preparation checklist" in text
    assert "• When everything is ready, press “Send to the center”" in text
    assert "courier" not in text
    assert "Upload the documents" not in text
    review = sample_context(
        T.INFO_REQUESTED, "uk", items=[{"kind": "pathology_review", "detail": "Блоки"}]
    )
    text = renderer.render(T.INFO_REQUESTED, review, C.EMAIL).text
    assert "кур’єром" in text and "номер для відстеження" in text
    assert "Завантажте документи" not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_every_requested_item_kind_has_words(renderer: Renderer, locale: str) -> None:
    from referrals_common.contracts.information import RequestedItemKind

    labels = set()
    for kind in RequestedItemKind:
        items = [{"kind": kind, "detail": "as described"}]
        context = sample_context(T.INFO_REQUESTED, locale, items=items)
        text = renderer.render(T.INFO_REQUESTED, context, C.EMAIL).text
        [line] = [line for line in text.splitlines() if line.startswith("1. ")]
        label = line.removeprefix("1. ").removesuffix(": as described")
        assert label and kind.value not in label
        assert bool(CYRILLIC.search(label)) is (locale == "uk"), label
        labels.add(label)
    assert len(labels) == len(RequestedItemKind)


def test_an_item_kind_without_words_fails_loudly(renderer: Renderer) -> None:
    from referrals_notifications.messages import InfoRequestedContext, RequestedItemFacts

    item = RequestedItemFacts.model_construct(kind="telepathy", detail="x")
    fields = {**dict(sample_context(T.INFO_REQUESTED, "en")), "items": [item]}
    context = InfoRequestedContext.model_construct(**fields)
    with pytest.raises(UnknownCode, match="telepathy"):
        renderer.render(T.INFO_REQUESTED, context, C.EMAIL)


def test_the_reminder_says_how_much_time_is_left(renderer: Renderer) -> None:
    days = renderer.render(T.INFO_REMINDER, sample_context(T.INFO_REMINDER, "uk"), C.EMAIL)
    soon_context = sample_context(T.INFO_REMINDER, "uk", reminder="due_soon")
    soon = renderer.render(T.INFO_REMINDER, soon_context, C.EMAIL)
    assert days.subject == f"Запит {CASE_REF}: центр досі чекає на вашу відповідь"
    assert soon.subject == f"Запит {CASE_REF}: час для відповіді центру спливає"
    assert "майже сплив" in soon.text and "Нагадуємо" not in soon.text
    for message in (days, soon):
        assert "до 29 квітня 2026 р., 18:00 за київським часом" in plain(message.text)
        assert "іншому центру" in message.text
    english = sample_context(T.INFO_REMINDER, "en", reminder="due_soon")
    assert "is nearly up" in renderer.render(T.INFO_REMINDER, english, C.EMAIL).text


def test_a_due_date_in_winter_and_in_another_zone(renderer: Renderer) -> None:
    winter = datetime(2026, 1, 20, 10, 0, tzinfo=UTC)
    context = sample_context(T.INFO_REQUESTED, "uk", due_at=winter)
    text = plain(renderer.render(T.INFO_REQUESTED, context, C.EMAIL).text)
    assert "до 20 січня 2026 р., 12:00 за київським часом." in text
    berlin = sample_context(T.INFO_REMINDER, "en", due_at=winter, time_zone="Europe/Berlin")
    text = plain(renderer.render(T.INFO_REMINDER, berlin, C.EMAIL).text)
    assert "by January 20, 2026, 11:00 AM, Germany (Berlin) Time." in text


@pytest.mark.parametrize(
    ("count", "documents"),
    [
        (1, "1 новий документ"),
        (2, "2 нові документи"),
        (5, "5 нових документів"),
        (11, "11 нових документів"),
        (21, "21 новий документ"),
    ],
)
def test_what_was_sent_is_counted_in_ukrainian(
    renderer: Renderer, count: int, documents: str
) -> None:
    context = sample_context(T.INFORMATION_SENT, "uk", new_documents=count, shipments=count % 5)
    text = renderer.render(T.INFORMATION_SENT, context, C.EMAIL).text
    assert f"\n{documents}\n" in text
    if count % 5 == 0:
        assert "посил" not in text and "надісланий вами матеріал" not in text
    else:
        assert "кур’єрськ" in text and "надісланий вами матеріал надійшов" in text


def test_an_answer_in_words_only_reads_too(renderer: Renderer) -> None:
    context = sample_context(
        T.INFORMATION_SENT, "en", new_documents=0, shipments=0, center_name=None, preparation=True
    )
    text = renderer.render(T.INFORMATION_SENT, context, C.EMAIL).text
    assert "A written answer\nThe preparation checklist\n" in text
    for absent in ("document", "shipment", "Center:", "material"):
        assert absent not in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("trigger", INFORMATION_LOOP)
def test_information_loop_messages_hold_no_diagnosis(
    renderer: Renderer, trigger: T, locale: str
) -> None:
    model = CONTEXT_MODELS[trigger]
    assert not {"icd10", "diagnosis", "clinical", "morphology", "stage"} & set(model.model_fields)
    message = renderer.render(trigger, sample_context(trigger, locale), C.EMAIL)
    for part in (message.subject, message.text, message.html or ""):
        assert not ICD_10.search(part), part
    # a lock screen shows the subject: no center, no center's words
    for leak in (CENTER_NAME, CENTER_MESSAGE, *ITEM_DETAILS):
        assert leak not in message.subject


def test_information_loop_webhooks() -> None:
    expected = {
        T.INFO_REQUESTED: (
            "information_requested",
            True,
            {"center_name": CENTER_NAME, "due_at": "2026-04-29T15:00:00Z"},
        ),
        T.INFO_REMINDER: (
            "information_requested",
            True,
            {
                "center_name": CENTER_NAME,
                "reminder": "days_before",
                "due_at": "2026-04-29T15:00:00Z",
            },
        ),
        T.INFO_EXPIRED: ("referred", False, {"center_name": CENTER_NAME}),
        T.INFORMATION_SENT: (
            None,
            False,
            {
                "center_name": CENTER_NAME,
                "new_documents": 2,
                "shipments": 1,
                "written_answer": True,
            },
        ),
        T.SHIPMENT_RECEIVED: (
            None,
            False,
            {"center_name": CENTER_NAME, "received_at": "2026-04-20T21:15:00Z"},
        ),
    }
    for trigger, (status, action, facts) in expected.items():
        payload = build_webhook_payload(
            trigger,
            sample_context(trigger),
            case_id=uuid.uuid4(),
            notification_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
        )
        assert (payload.case_status, payload.action_required, payload.facts) == (
            status,
            action,
            facts,
        ), trigger


# The opinion: what it concluded, in verdicts and counts, when the center recorded an outcome.

OPINION_IN_SHORT = {"uk": "Коротко про висновок", "en": "The opinion in short"}
READ_IN_FULL = {
    "uk": "Це лише короткий виклад: будь ласка, прочитайте висновок повністю.",
    "en": "This is only a short summary: please read the full opinion.",
}
"""The summary's last line; the advice to discuss the opinion with a doctor comes once, after."""
DISCUSS_WITH_DOCTOR = {"uk": "обговорити", "en": "discuss"}
DIAGNOSIS_WORDS = {
    "confirmed": {"uk": "Центр підтверджує діагноз.", "en": "The center confirms the diagnosis."},
    "refined": {
        "uk": "Центр уточнює діагноз.",
        "en": "The center describes the diagnosis more precisely.",
    },
    "changed": {
        "uk": "Центр ставить інший діагноз.",
        "en": "The center comes to a different diagnosis.",
    },
}
TREATMENT_WORDS = {
    "agreed": {
        "uk": "Він погоджується з планом лікування, який вам призначили.",
        "en": "It agrees with the treatment plan you were given.",
    },
    "alternative_proposed": {
        "uk": "Він пропонує інше лікування.",
        "en": "It proposes a different treatment.",
    },
}
TRIALS_WORDS = {
    "uk": "Він згадує клінічні дослідження, у яких ви, можливо, зможете взяти участь.",
    "en": "It mentions clinical trials that may be open to you.",
}
NOTHING_ELSE = {"treatment": "not_assessed", "further_tests": 0, "clinical_trials": False}


def opinion(locale: str, **verdicts: object) -> MessageContext:
    return sample_context(T.OPINION_DELIVERED, locale, **{**OPINION_VERDICTS, **verdicts})


def opinion_lines(renderer: Renderer, context: MessageContext) -> list[str]:
    """The verdict lines of the e-mail, between the summary's heading and the advice to read the
    opinion in full (both there), checked to read the same in the HTML, in the same order."""
    message = renderer.render(T.OPINION_DELIVERED, context, C.EMAIL)
    lines = message.text.splitlines()
    heading = lines.index(OPINION_IN_SHORT[context.locale])
    assert lines[heading + 1] == ""
    summary = lines[heading + 2 : lines.index(READ_IN_FULL[context.locale])]
    assert " ".join([*summary, READ_IN_FULL[context.locale]]) in visible_text(message.html or "")
    return summary


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("diagnosis", sorted(DIAGNOSIS_WORDS))
def test_the_opinion_says_what_it_found_of_the_diagnosis(
    renderer: Renderer, locale: str, diagnosis: str
) -> None:
    context = opinion(locale, diagnosis=diagnosis, **NOTHING_ELSE)
    assert opinion_lines(renderer, context) == [DIAGNOSIS_WORDS[diagnosis][locale]]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("treatment", sorted(TREATMENT_WORDS))
def test_the_opinion_says_what_it_found_of_the_treatment(
    renderer: Renderer, locale: str, treatment: str
) -> None:
    context = opinion(locale, **{**NOTHING_ELSE, "diagnosis": "refined", "treatment": treatment})
    assert opinion_lines(renderer, context) == [
        DIAGNOSIS_WORDS["refined"][locale],
        TREATMENT_WORDS[treatment][locale],
    ]


@pytest.mark.parametrize("locale", LOCALES)
def test_the_whole_opinion_in_short(renderer: Renderer, locale: str) -> None:
    tests = {
        "uk": "Він рекомендує пройти 2 додаткові обстеження.",
        "en": "It recommends 2 further tests.",
    }
    assert opinion_lines(renderer, opinion(locale)) == [
        DIAGNOSIS_WORDS["changed"][locale],
        TREATMENT_WORDS["alternative_proposed"][locale],
        tests[locale],
        TRIALS_WORDS[locale],
    ]


@pytest.mark.parametrize(
    ("count", "ukrainian", "english"),
    [
        (1, "1 додаткове обстеження", "1 further test"),
        (2, "2 додаткові обстеження", "2 further tests"),
        (4, "4 додаткові обстеження", "4 further tests"),
        (5, "5 додаткових обстежень", "5 further tests"),
        (11, "11 додаткових обстежень", "11 further tests"),
        (20, "20 додаткових обстежень", "20 further tests"),
    ],
)
def test_further_tests_are_counted_in_both_languages(
    renderer: Renderer, count: int, ukrainian: str, english: str
) -> None:
    uk = opinion_lines(renderer, opinion("uk", **{**NOTHING_ELSE, "further_tests": count}))
    assert uk == [DIAGNOSIS_WORDS["changed"]["uk"], f"Він рекомендує пройти {ukrainian}."]
    en = opinion_lines(renderer, opinion("en", **{**NOTHING_ELSE, "further_tests": count}))
    assert en == [DIAGNOSIS_WORDS["changed"]["en"], f"It recommends {english}."]


def test_twenty_one_further_tests_would_read_in_the_singular_form() -> None:
    """Ukrainian: 21 takes the form of 1 (an opinion has at most 20 tests; the catalog knows)."""
    uk = load_translations("uk")
    words = uk.ngettext(
        "It recommends %(count)s further test.", "It recommends %(count)s further tests.", 21
    )
    assert words % {"count": 21} == "Він рекомендує пройти 21 додаткове обстеження."


@pytest.mark.parametrize("locale", LOCALES)
def test_an_opinion_without_an_outcome_reads_as_before(renderer: Renderer, locale: str) -> None:
    context = sample_context(T.OPINION_DELIVERED, locale)
    assert context.diagnosis is None  # type: ignore[attr-defined]
    message = renderer.render(T.OPINION_DELIVERED, context, C.EMAIL)
    for part in (message.text, message.html or ""):
        assert OPINION_IN_SHORT[locale] not in part
        assert READ_IN_FULL[locale] not in part
        for words in (*DIAGNOSIS_WORDS.values(), *TREATMENT_WORDS.values(), TRIALS_WORDS):
            assert words[locale] not in part
    start = message.text.index("\n\n") + 2
    end = message.text.index("Your request page" if locale == "en" else "Сторінка вашого запиту")
    assert message.text[start:end] == OPINION_READY_BODY[locale]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("with_outcome", [True, False], ids=["outcome", "no-outcome"])
def test_the_opinion_says_to_discuss_it_with_the_doctor_once(
    renderer: Renderer, locale: str, with_outcome: bool
) -> None:
    context = opinion(locale) if with_outcome else sample_context(T.OPINION_DELIVERED, locale)
    message = renderer.render(T.OPINION_DELIVERED, context, C.EMAIL)
    for seen in (message.text, visible_text(message.html or "")):
        assert seen.lower().count(DISCUSS_WITH_DOCTOR[locale]) == 1, seen
        assert seen.count("лікар" if locale == "uk" else "doctor") == 1, seen


OPINION_READY_BODY = {
    "en": "The cancer center has sent its written opinion on your case. You can read and "
    f"download it on your request page.\n\nCenter: {CENTER_NAME}\n\nWhat we suggest\n\n"
    "Please discuss the opinion with your treating doctor: they know your medical history and "
    "can help you decide on the next steps together.\n\nThank you for trusting us with your "
    "request. We wish you strength and good health.\n\n",
    "uk": "Онкологічний центр надіслав письмовий висновок щодо вашого випадку. Прочитати й "
    f"завантажити його можна на сторінці запиту.\n\nЦентр: {CENTER_NAME}\n\nЩо ми радимо\n\n"
    "Радимо обговорити висновок із вашим лікарем: він знає історію вашої хвороби й допоможе "
    "разом вирішити, що робити далі.\n\nДякуємо, що довірили нам свій запит. Бажаємо вам сил "
    "і міцного здоров’я.\n\n",
}
"""The body of the opinion e-mail as it read before outcomes were recorded (between greeting and
request page)."""


@pytest.mark.parametrize("locale", LOCALES)
def test_the_opinion_in_short_stays_out_of_sms_and_subject(renderer: Renderer, locale: str) -> None:
    with_outcome = opinion(locale)
    without = sample_context(T.OPINION_DELIVERED, locale)
    for channel in (C.SMS, C.EMAIL):
        assert renderer.render(T.OPINION_DELIVERED, with_outcome, channel).subject == (
            renderer.render(T.OPINION_DELIVERED, without, channel).subject
        )
    sms = renderer.render(T.OPINION_DELIVERED, with_outcome, C.SMS)
    assert sms == renderer.render(T.OPINION_DELIVERED, without, C.SMS)


def test_a_verdict_without_words_fails_loudly(renderer: Renderer) -> None:
    from referrals_notifications.messages import OpinionDeliveredContext

    fields = dict(opinion("en"))
    for verdict in ({"diagnosis": "guessed"}, {"treatment": "homeopathy"}):
        context = OpinionDeliveredContext.model_construct(**{**fields, **verdict})
        with pytest.raises(UnknownCode, match=next(iter(verdict.values()))):
            renderer.render(T.OPINION_DELIVERED, context, C.EMAIL)


def test_the_opinions_webhook_carries_its_verdicts_as_codes() -> None:
    payload = build_webhook_payload(
        T.OPINION_DELIVERED,
        opinion("uk"),
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    assert (payload.case_status, payload.action_required) == ("opinion_delivered", False)
    assert payload.facts == {"center_name": CENTER_NAME, **OPINION_VERDICTS}
    before = build_webhook_payload(
        T.OPINION_DELIVERED,
        sample_context(T.OPINION_DELIVERED, "uk"),
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    assert before.facts == {
        "center_name": CENTER_NAME,
        "diagnosis": None,
        "treatment": None,
        "further_tests": None,
        "clinical_trials": None,
    }


# A follow-up question answered: the center and the day; the words stay with the case.

FOLLOW_UP_SUBJECT = {
    "uk": f"Запит {CASE_REF}: центр відповів на ваше додаткове запитання",
    "en": f"Request {CASE_REF}: the center has answered your follow-up question",
}


@pytest.mark.parametrize("locale", LOCALES)
def test_a_follow_up_answer_is_announced_in_both_languages(renderer: Renderer, locale: str) -> None:
    context = sample_context(T.FOLLOW_UP_ANSWERED, locale)
    email = renderer.render(T.FOLLOW_UP_ANSWERED, context, C.EMAIL)
    assert email.subject == FOLLOW_UP_SUBJECT[locale]
    assert CENTER_NAME in visible_text(email.html or "")
    # The SMS is the plain "there is an update", like any other news that needs nothing done.
    sms = renderer.render(T.FOLLOW_UP_ANSWERED, context, C.SMS)
    other = renderer.render(T.SHIPMENT_RECEIVED, sample_context(T.SHIPMENT_RECEIVED, locale), C.SMS)
    assert sms.text == other.text


def test_a_follow_up_answers_webhook_carries_the_center_and_the_day() -> None:
    payload = build_webhook_payload(
        T.FOLLOW_UP_ANSWERED,
        sample_context(T.FOLLOW_UP_ANSWERED, "uk"),
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    # The case stays where the opinion left it: the answer changes no status, asks nothing.
    assert (payload.case_status, payload.action_required) == (None, False)
    assert payload.facts == {
        "center_name": CENTER_NAME,
        "answered_at": "2026-05-12T22:40:00Z",
        "documents": 0,
    }


ATTACHED = {
    "uk": (
        "Додані документи: 2",
        "Центр додав до своєї відповіді документи. Ви можете завантажити їх на сторінці",
    ),
    "en": (
        "Attached documents: 2",
        "The center attached documents to its answer. You can download them on your request page",
    ),
}


@pytest.mark.parametrize("locale", LOCALES)
def test_a_follow_up_answer_with_documents_says_they_are_attached(
    renderer: Renderer, locale: str
) -> None:
    """The e-mail says how many documents came with the answer and where to download them,
    never what they are; without documents it says nothing of them."""
    base = sample_context(T.FOLLOW_UP_ANSWERED, locale)
    with_documents = base.model_copy(update={"documents": 2})
    email = renderer.render(T.FOLLOW_UP_ANSWERED, with_documents, C.EMAIL)
    for line in ATTACHED[locale]:
        assert line in " ".join(email.text.split())
        assert line in " ".join(visible_text(email.html or "").split())
    plain = renderer.render(T.FOLLOW_UP_ANSWERED, base, C.EMAIL)
    assert ATTACHED[locale][0].split(":")[0] not in plain.text
    assert ATTACHED[locale][1][:20] not in plain.text


UNROUTABLE_PAYER = {
    "uk": "не приймають той спосіб оплати висновку, який ви вказали",
    "en": "do not accept the way your opinion is paid for",
}


@pytest.mark.parametrize("locale", LOCALES)
def test_a_payer_no_center_accepts_is_told_in_both_languages(
    renderer: Renderer, locale: str
) -> None:
    context = sample_context(T.CASE_UNROUTABLE, locale).model_copy(
        update={"reason": "payer_not_accepted"}
    )
    email = renderer.render(T.CASE_UNROUTABLE, context, C.EMAIL)
    assert UNROUTABLE_PAYER[locale] in " ".join(email.text.split())


# Centers proposed for the patient's choice: names, countries, usual times, prices and by when.

CENTERS_LISTED = {
    "uk": [
        f"1. {CENTER_NAME}",
        "Країна: Німеччина",
        "Звичайний строк підготовки висновку: 7 днів",
        "Вартість: 900,00 EUR",
        "2. National Institute of Oncology, Warsaw",
        "Країна: Польща",
        "Звичайний строк підготовки висновку: 21 день",
        "3. Masaryk Memorial Cancer Institute",
        "Країна: Чехія",
        "Звичайний строк підготовки висновку: 3 дні",
        "Вартість: 1 250,50 CZK",
    ],
    "en": [
        f"1. {CENTER_NAME}",
        "Country: Germany",
        "Usual time to the opinion: 7 days",
        "Price: €900.00",
        "2. National Institute of Oncology, Warsaw",
        "Country: Poland",
        "Usual time to the opinion: 21 days",
        "3. Masaryk Memorial Cancer Institute",
        "Country: Czechia",
        "Usual time to the opinion: 3 days",
        "Price: CZK1,250.50",
    ],
}
CHOICE_DEADLINE = {
    "uk": "до 18 квітня 2026 р., 00:30 за київським часом",
    "en": "by April 18, 2026, 12:30 AM Kyiv time",
}


@pytest.mark.parametrize("locale", LOCALES)
def test_the_proposed_centers_are_listed_best_first_in_both_languages(
    renderer: Renderer, locale: str
) -> None:
    message = renderer.render(
        T.CENTERS_PROPOSED, sample_context(T.CENTERS_PROPOSED, locale), C.EMAIL
    )
    text = plain(message.text)
    lines = [line.strip() for line in text.splitlines()]
    first = lines.index(CENTERS_LISTED[locale][0])
    assert [line for line in lines[first:] if line][:11] == CENTERS_LISTED[locale]
    seen = plain(visible_text(message.html or ""))
    for fact in (*CENTERS_LISTED[locale], CHOICE_DEADLINE[locale]):
        assert fact in seen, fact
    assert CHOICE_DEADLINE[locale] in text
    # countries by name, never their codes; the center without a price has no price line
    for part in (text, seen):
        assert not re.search(r"\b(DE|PL|CZ)\b", part), part
    warsaw = text[text.index("2. National") : text.index("3. Masaryk")]
    assert "Price" not in warsaw and "Вартість" not in warsaw
    assert CENTER_NAME not in message.subject


@pytest.mark.parametrize(
    ("days", "ukrainian", "english"),
    [
        (1, "1 день", "1 day"),
        (2, "2 дні", "2 days"),
        (4, "4 дні", "4 days"),
        (5, "5 днів", "5 days"),
        (11, "11 днів", "11 days"),
        (21, "21 день", "21 days"),
        (22, "22 дні", "22 days"),
    ],
)
def test_the_usual_time_is_counted_in_days_in_both_languages(
    renderer: Renderer, days: int, ukrainian: str, english: str
) -> None:
    proposals = [{**PROPOSED_CENTERS[0], "turnaround_days": days}, PROPOSED_CENTERS[1]]
    for locale, words in (("uk", f"висновку: {ukrainian}\n"), ("en", f"opinion: {english}\n")):
        context = sample_context(T.CENTERS_PROPOSED, locale, proposals=proposals)
        assert words in renderer.render(T.CENTERS_PROPOSED, context, C.EMAIL).text


@pytest.mark.parametrize(
    ("count", "ukrainian"),
    [
        (2, "2 онкологічні центри можуть"),
        (5, "5 онкологічних центрів можуть"),
        (10, "10 онкологічних центрів можуть"),
    ],
)
def test_the_number_of_centers_is_counted_in_ukrainian(
    renderer: Renderer, count: int, ukrainian: str
) -> None:
    proposals = [PROPOSED_CENTERS[index % 3] for index in range(count)]
    context = sample_context(T.CENTERS_PROPOSED, "uk", proposals=proposals)
    text = renderer.render(T.CENTERS_PROPOSED, context, C.EMAIL).text
    assert ukrainian in text
    assert f"{count}. " in text and f"{count + 1}. " not in text


def test_twenty_one_centers_would_read_in_the_singular_form() -> None:
    """At most 10 centers are proposed; the catalog still knows that 21 takes the form of 1."""
    words = load_translations("uk").ngettext(
        "%(count)s cancer center can give you a second opinion on your case.",
        "%(count)s cancer centers can give you a second opinion on your case.",
        21,
    )
    assert words % {"count": 21} == (
        "21 онкологічний центр може надати вам другу лікарську думку щодо вашого випадку."
    )


def test_a_price_is_written_the_patients_way() -> None:
    uk = Renderer().environment("uk").filters["price"]
    en = Renderer().environment("en").filters["price"]
    assert plain(uk(12000, "UAH")) == "12 000,00 ₴"
    assert en(12000, "UAH") == "UAH12,000.00"
    assert plain(uk(900, "EUR")) == "900,00 EUR" and en(900, "EUR") == "€900.00"


def test_the_choice_asks_for_action_and_its_webhook_carries_no_codes() -> None:
    context = sample_context(T.CENTERS_PROPOSED, "uk")
    payload = build_webhook_payload(
        T.CENTERS_PROPOSED,
        context,
        case_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )
    assert (payload.case_status, payload.action_required) == ("choosing_center", True)
    assert payload.facts == {
        "proposals": [
            {
                "center_name": CENTER_NAME,
                "center_country": "DE",
                "turnaround_days": 7,
                "price": {"amount": 900.0, "currency": "EUR"},
            },
            {
                "center_name": "National Institute of Oncology, Warsaw",
                "center_country": "PL",
                "turnaround_days": 21,
                "price": None,
            },
            {
                "center_name": "Masaryk Memorial Cancer Institute",
                "center_country": "CZ",
                "turnaround_days": 3,
                "price": {"amount": 1250.5, "currency": "CZK"},
            },
        ],
        "choose_by": "2026-04-17T21:30:00Z",
    }


@pytest.mark.parametrize("locale", LOCALES)
def test_the_choice_sms_only_asks_for_action(renderer: Renderer, locale: str) -> None:
    sms = renderer.render(T.CENTERS_PROPOSED, sample_context(T.CENTERS_PROPOSED, locale), C.SMS)
    asked = renderer.render(T.INFO_REQUESTED, sample_context(T.INFO_REQUESTED, locale), C.SMS)
    assert sms.text == asked.text
