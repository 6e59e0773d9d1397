"""The patient texts (referrals_common.i18n): every code has a sentence in Ukrainian and English,
names come from CLDR, the catalogue is complete and compiled (i18n.md), and a row without codes
keeps its stored text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from referrals_common.contracts import StatusChangeReason
from referrals_common.contracts.information import RequestedItemKind
from referrals_common.contracts.partners import DeclineReason, UnroutableReason
from referrals_common.contracts.records import DocumentKind, RejectionReason
from referrals_common.contracts.translation import UnreadableReason
from referrals_common.i18n import (
    DOMAIN,
    LOCALE_DIR,
    PACKAGE_DIR,
    country_name,
    language_name,
    named_countries,
    named_languages,
    negotiate,
)
from referrals_common.i18n import case_texts as texts

pytestmark = pytest.mark.unit

PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
CYRILLIC = re.compile("[а-яіїєґ]", re.IGNORECASE)
AT = "2026-12-21T14:00:00+00:00"

# Parameters for every reason code, as intake stores them.
PARAMS: dict[str, dict[str, Any]] = {
    "case_opened": {},
    "patient_submitted": {},
    "documents_accepted": {},
    "document_rejected": {"reason": "too_large", "detail": "The file is larger than 2 MB."},
    "translation_required": {
        "documents": [
            {
                "kind": "pathology_report",
                "check": "translation_required",
                "language": "ro",
                "acceptable_languages": ["en", "de"],
            }
        ]
    },
    "document_unreadable": {
        "documents": [
            {"kind": "lab_results", "check": "unreadable", "unreadable_reason": "no_text"}
        ]
    },
    "documents_updated": {},
    "referral_requested": {"center": "charite", "country": "DE", "attempt": 2, "due": AT},
    "referral_accepted": {"center": "charite", "date": "2026-12-30"},
    "referral_declined": {"center": "charite", "reason": "no_capacity"},
    "referral_expired": {"center": "charite"},
    "opinion_delivered": {"center": "charite"},
    "info_requested": {
        "center": "charite",
        "items": [{"kind": "lab_test", "detail": "Ki-67"}],
        "message": "The board needs it.",
        "due": AT,
    },
    "information_provided": {"center": "charite", "documents": 2, "answer": True},
    "information_not_provided": {"center": "charite"},
    "centers_proposed": {"names": ["Charité", "Gustave Roussy"], "by": AT},
    "no_eligible_center": {"reason": "all_centers_declined", "tried": ["a", "b"]},
    "patient_withdrew": {},
    "further_opinion_requested": {"shared": True},
    "further_opinion_unavailable": {},
    "info_reminder": {"center": "charite", "due": AT},
    "referral_resumed": {"center": "charite", "due": AT},
    "shipment_received": {"center": "charite", "shipment": "1a2b3c4d"},
    "center_chosen": {"name": "Charité"},
    "follow_up_asked": {"center": "charite"},
    "follow_up_answered": {"center": "charite", "attached": 1},
    "meeting_time_chosen": {"center": "charite", "at": AT},
    "meeting_cancelled": {"center": "charite", "by": "center"},
    "meeting_offered": {"center": "charite", "rescheduled": False},
    "meeting_booked": {"center": "charite", "at": AT},
    "meeting_held": {},
    "meeting_missed": {},
}


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


UK_PO = LOCALE_DIR / "uk" / "LC_MESSAGES" / f"{DOMAIN}.po"
UK_MO = LOCALE_DIR / "uk" / "LC_MESSAGES" / f"{DOMAIN}.mo"


def key(value: object) -> str | tuple[str, ...]:
    return tuple(value) if isinstance(value, list | tuple) else str(value)


# ------------------------------------------------------------------------------ coverage
def test_every_reason_code_of_the_lifecycle_has_a_sentence() -> None:
    # Other (a further opinion's free reason) is a reason of a request, never a timeline entry.
    codes = {r.value for r in StatusChangeReason} - {"other"}
    assert codes <= set(texts.REASONS), sorted(codes - set(texts.REASONS))
    assert set(PARAMS) == set(texts.REASONS)


@pytest.mark.parametrize("code", sorted(texts.REASONS))
def test_each_reason_reads_in_ukrainian_and_in_english(code: str) -> None:
    uk = texts.reason(code, PARAMS[code], "uk")
    en = texts.reason(code, PARAMS[code], "en")
    assert uk and en and uk != en
    assert CYRILLIC.search(uk), uk
    assert not CYRILLIC.search(en), en
    assert "%(" not in uk and "%(" not in en


@pytest.mark.parametrize("code", sorted(texts.NEXT_STEPS))
def test_each_next_step_reads_in_ukrainian_and_in_english(code: str) -> None:
    uk, en = texts.next_step(code, "uk"), texts.next_step(code, "en")
    assert uk and en and CYRILLIC.search(uk) and not CYRILLIC.search(en)


@pytest.mark.parametrize(
    ("table", "codes"),
    [
        (texts.DOCUMENT_KINDS, DocumentKind),
        (texts.UNREADABLE_REASONS, UnreadableReason),
        (texts.REJECTION_REASONS, RejectionReason),
        (texts.DECLINE_REASONS, DeclineReason),
        (texts.UNROUTABLE_REASONS, UnroutableReason),
        (texts.REQUESTED_ITEMS, RequestedItemKind),
    ],
)
def test_every_code_of_the_contracts_has_words(table: dict[str, str], codes: Any) -> None:
    assert {c.value for c in codes} == set(table)


# ---------------------------------------------------------------------- upload refusals
ACCEPTED = (("PDF", (".pdf",)), ("DICOM", (".dcm", "")), ("plain text", (".txt",)))


def test_every_rejection_reason_has_a_sentence() -> None:
    assert {c.value for c in RejectionReason} == set(texts.UPLOAD_REFUSALS)


@pytest.mark.parametrize("reason", sorted(texts.UPLOAD_REFUSALS))
def test_each_upload_refusal_reads_in_ukrainian_and_in_english(reason: str) -> None:
    refusal = texts.Refusal(reason)
    uk, en = texts.upload_refusal(refusal, "uk"), texts.upload_refusal(refusal, "en")
    assert uk and en and uk != en
    assert CYRILLIC.search(uk), uk
    assert not CYRILLIC.search(en), en


@pytest.mark.parametrize("found", sorted(texts.FILE_TYPES))
def test_each_type_records_may_find_is_named_in_both_languages(found: str) -> None:
    refusal = texts.Refusal("unsupported_type", found=found, accepted=ACCEPTED)
    uk, en = texts.upload_refusal(refusal, "uk"), texts.upload_refusal(refusal, "en")
    assert found in en and found not in uk
    assert CYRILLIC.search(uk.split(":", 1)[1]), uk  # the type itself in Ukrainian words
    assert "%(" not in uk and "%(" not in en


@pytest.mark.parametrize(
    ("refusal", "uk", "en"),
    [
        (
            texts.Refusal("too_large", limit_bytes=3 * 2**19),
            "Файл більший за дозволені 1,5 МБ.",
            "The file is larger than the limit of 1.5 MB.",
        ),
        (
            texts.Refusal("too_large", quota_bytes=2048 * 2**20, used_bytes=2047 * 2**20),
            "Усі документи справи можуть займати до 2 048 МБ; уже зайнято 2 047 МБ",
            "The case's documents may take 2,048 MB in all; 2,047 MB are used",
        ),
        (
            texts.Refusal("unsupported_type", found="a GIF image", accepted=ACCEPTED),
            "Такий тип файлу не приймаємо: зображення GIF. Приймаємо такі типи файлів: PDF "
            "(.pdf), DICOM (.dcm, без розширення) і звичайний текст (.txt).",
            "This type of file is not accepted: a GIF image. Accepted types: PDF (.pdf), DICOM "
            "(.dcm, no extension) and plain text (.txt).",
        ),
        (
            texts.Refusal(
                "unsupported_type", found="a JPEG image", expected_extensions=(".jpg", ".jpeg")
            ),
            "Що це за файл: зображення JPEG. Можливі закінчення назви: .jpg або .jpeg.",
            "which is a JPEG image. Endings its name may have: .jpg or .jpeg.",
        ),
        (
            texts.Refusal("unsupported_type", bare_dicom=True),
            "Експортуйте знімки ще раз як стандартні файли DICOM.",
            "Please export the images again as standard DICOM files.",
        ),
        (
            texts.Refusal("unsupported_type"),
            "Не вдалося розпізнати тип файлу.",
            "The file's type could not be recognised.",
        ),
    ],
    ids=["size-limit", "case-quota", "type", "name-against-content", "bare-dicom", "unknown"],
)
def test_an_upload_refusal_names_its_limits_and_types_in_the_case_s_language(
    refusal: Any, uk: str, en: str
) -> None:
    # CLDR groups Ukrainian thousands with a no-break space.
    spaced = re.sub("[\u00a0\u202f]", " ", texts.upload_refusal(refusal, "uk"))
    assert uk in spaced
    assert en in texts.upload_refusal(refusal, "en")


@pytest.mark.parametrize("code", sorted(texts.UPLOAD_STATES))
def test_each_upload_state_reads_in_ukrainian_and_in_english(code: str) -> None:
    uk, en = texts.upload_state(code, "uk"), texts.upload_state(code, "en")
    assert uk and en and CYRILLIC.search(uk) and not CYRILLIC.search(en)
    assert texts.upload_state("no_such_state", "uk") is None


def test_a_refusal_reason_this_version_does_not_know_still_has_words() -> None:
    assert CYRILLIC.search(texts.upload_refusal(texts.Refusal("new_reason"), "uk"))


def test_an_entry_without_parameters_or_an_unknown_code_keeps_its_stored_text() -> None:
    assert texts.reason("referral_accepted", None, "uk") is None
    assert texts.reason("something_new", {}, "uk") is None
    assert texts.next_step("something_new", "uk") is None
    assert texts.next_step(None, "uk") is None
    # parameters it cannot use: the stored text too, never an error
    assert texts.reason("referral_requested", {"center": "x", "due": "not a date"}, "uk") is None


# ---------------------------------------------------------------------------- specimens
def test_a_translation_request_names_the_languages_in_the_case_language() -> None:
    uk = texts.document_detail(
        "translation_required", "uk", language="ro", acceptable_languages=["en", "de"]
    )
    en = texts.document_detail(
        "translation_required", "en", language="ro", acceptable_languages=["en", "de"]
    )
    assert uk == (
        "Мова документа: румунська. Завантажте, будь ласка, переклад. "
        "Мова перекладу: англійська або німецька."
    )
    assert en == "The document is in Romanian. Please upload a translation into English or German."
    assert texts.document_detail("accepted", "uk", language="en") is None
    # a legacy row without the languages: the caller shows the stored text
    assert texts.document_detail("translation_required", "uk", language="ro") is None


def test_counted_things_take_the_ukrainian_plural_forms() -> None:
    def sent(documents: int) -> str:
        return texts.reason("information_provided", {"center": "c", "documents": documents}, "uk")

    assert "(1 документ)" in sent(1)
    assert "(3 документи)" in sent(3)
    assert "(5 документів)" in sent(5)
    assert "(21 документ)" in sent(21)


def test_dates_are_written_in_the_case_language() -> None:
    uk = texts.reason("info_reminder", {"center": "c", "due": AT}, "uk")
    en = texts.reason("info_reminder", {"center": "c", "due": AT}, "en")
    assert "21 грудня 2026, 14:00 UTC" in uk
    assert "21 December 2026, 14:00 UTC" in en


def test_the_center_s_words_are_kept_as_written() -> None:
    uk = texts.reason("info_requested", PARAMS["info_requested"], "uk")
    assert "результат лабораторного аналізу (Ki-67)" in uk
    assert "Причина: The board needs it." in uk


# ------------------------------------------------------------------------------ names
@pytest.mark.parametrize("locale", ["uk", "en"])
def test_language_and_country_names_come_from_cldr(locale: str) -> None:
    cldr = Locale.parse(locale)
    for code in ("de", "en", "ro", "he", "uk"):
        assert language_name(code, locale) == cldr.languages[code]
    for code in ("DE", "IL", "UA", "CH"):
        assert country_name(code, locale) == cldr.territories[code]


def test_named_lists_pair_each_code_with_its_name() -> None:
    assert named_languages(["de"], "uk") == [{"code": "de", "name": "німецька"}]
    assert named_countries(["DE", "PL"], "en") == [
        {"code": "DE", "name": "Germany"},
        {"code": "PL", "name": "Poland"},
    ]
    assert language_name("xx", "uk") == "xx"  # no CLDR name: the code


@pytest.mark.parametrize(
    ("header", "case", "answer"),
    [
        (None, "uk", "uk"),
        ("", "en", "en"),
        ("en", "uk", "en"),
        ("en-GB,en;q=0.9", "uk", "en"),
        ("uk-UA,uk;q=0.9,en;q=0.8", "en", "uk"),
        ("de-DE,de;q=0.9,en;q=0.5", "uk", "en"),
        ("de, fr", "uk", "uk"),
        ("*", "uk", "uk"),
        ("en;q=0", "uk", "uk"),
        ("en;q=0.4, uk;q=0.6", "en", "uk"),
        ("en;q=abc", "uk", "uk"),
    ],
)
def test_accept_language_chooses_among_the_platform_s_languages(
    header: str | None, case: str, answer: str
) -> None:
    assert negotiate(header, case) == answer


# --------------------------------------------------------------------------- catalogue
def test_the_pot_has_every_string_of_the_code() -> None:
    with (PACKAGE_DIR / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    extracted = {
        key(message)
        for _f, _l, message, _c, _x in extract_from_dir(PACKAGE_DIR, method_map, options_map)
    }
    pot = {key(m.id) for m in read_catalog(LOCALE_DIR / f"{DOMAIN}.pot") if m.id}
    assert extracted == pot, "run pybabel extract (i18n.md)"
    # every message of the tables is extracted
    tables = [
        texts.DOCUMENT_KINDS,
        texts.UNREADABLE_REASONS,
        texts.REJECTION_REASONS,
        texts.DECLINE_REASONS,
        texts.UNROUTABLE_REASONS,
        texts.REQUESTED_ITEMS,
        texts.NEXT_STEPS,
    ]
    assert {m for table in tables for m in table.values()} <= pot


def test_ukrainian_translates_every_string_and_keeps_its_placeholders() -> None:
    pot = read_catalog(LOCALE_DIR / f"{DOMAIN}.pot")
    uk = read_catalog(UK_PO)
    assert uk.num_plurals == 3
    assert {key(m.id) for m in uk if m.id} == {key(m.id) for m in pot if m.id}
    for message in uk:
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(strings) == (3 if message.pluralizable else 1), message.id
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        expected = set(PLACEHOLDER.findall(" ".join(ids)))
        for string in strings:
            assert string.strip() and CYRILLIC.search(string), message.id
            assert set(PLACEHOLDER.findall(string)) == expected, (message.id, string)


def test_the_compiled_catalogue_matches_its_source(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.mo"
    with fresh.open("wb") as handle:
        write_mo(handle, read_catalog(UK_PO))
    with fresh.open("rb") as handle:
        expected = {key(m.id): key(m.string) for m in read_mo(handle) if m.id}
    with UK_MO.open("rb") as handle:
        checked_in = {key(m.id): key(m.string) for m in read_mo(handle) if m.id}
    assert checked_in == expected, "run pybabel compile (i18n.md)"


# ---------------------------------------------------------------- why this center (routing)
def test_every_rule_and_reason_of_a_routing_explanation_reads_in_both_languages() -> None:
    from referrals_common.contracts.partners import RoutingReasonCode, RoutingRule

    matched = {
        RoutingRule.DIAGNOSIS: {"codes": ["C50", "C50.9"]},
        RoutingRule.AGE_GROUP: {"codes": ["pediatric"]},
        RoutingRule.DESTINATION: {"codes": ["DE"]},
        RoutingRule.LANGUAGES: {"codes": ["en", "de"]},
        RoutingRule.CAPACITY: {"places_taken": 3, "weekly_capacity": 10},
        RoutingRule.TURNAROUND: {"turnaround_days": 2},
    }
    assert set(matched) == set(RoutingRule)
    explanation = {
        "eligible_count": 3,
        "matched": [{"rule": rule.value, **facts} for rule, facts in matched.items()],
        "reasons": [{"code": code.value, "count": 2} for code in RoutingReasonCode],
    }
    uk = texts.routing_explanation(explanation, "uk")
    en = texts.routing_explanation(explanation, "en")
    assert len(uk) == len(en) == len(RoutingRule) + len(RoutingReasonCode)
    assert all(CYRILLIC.search(s) for s in uk) and not any(CYRILLIC.search(s) for s in en)
    assert "Країна центру: Німеччина." in uk
    assert "Центр читає мови ваших документів: англійська і німецька." in uk
    assert "Центр зазвичай надає висновок за 2 дні." in uk
    assert "Центр приймає дітей." in uk
    assert "The center's country: Germany." in en


def test_a_routing_explanation_leaves_out_what_it_does_not_know() -> None:
    assert texts.routing_explanation(None, "uk") == []
    unknown = {"eligible_count": 1, "matched": [{"rule": "new_rule"}], "reasons": [{"code": "x"}]}
    assert texts.routing_explanation(unknown, "uk") == []


def test_a_proposed_center_says_its_country_time_and_price_in_the_case_s_language() -> None:
    proposal = {
        "center_country": "DE",
        "turnaround_days": 3,
        "price": {"amount": 1200.0, "currency": "EUR"},
        "why": "Chosen: …",
    }
    uk = texts.proposal_explanation(proposal, "uk")
    assert uk[:2] == ["Країна центру: Німеччина.", "Центр зазвичай надає висновок за 3 дні."]
    assert uk[2].startswith("Ціна: 1\xa0200,00")
    assert texts.proposal_explanation(proposal, "en") == [
        "The center's country: Germany.",
        "The center usually gives its opinion in 3 days.",
        "Price: €1,200.00.",
    ]
    assert texts.proposal_explanation({"center_country": "PL"}, "uk") == ["Країна центру: Польща."]


def test_everything_a_draft_may_lack_has_words_in_both_languages() -> None:
    from referrals_intake.lifecycle import MISSING_CODES

    assert set(MISSING_CODES.values()) == set(texts.MISSING)
    for code in texts.MISSING:
        uk, en = texts.missing(code, "uk"), texts.missing(code, "en")
        assert uk and en and CYRILLIC.search(uk) and not CYRILLIC.search(en)
    assert texts.missing("something_new", "uk") is None
