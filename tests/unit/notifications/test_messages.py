"""The context models refuse what would break or leak a message before any template runs."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from pydantic import ValidationError

from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.messages import (
    DEFAULT_TIME_ZONE,
    CaseReadyContext,
    InfoRequestedContext,
    ReferralRequestedContext,
    case_reference,
)

from .samples import OPINION_VERDICTS, sample_context

pytestmark = pytest.mark.unit


def test_case_reference_is_short_and_stable() -> None:
    case_id = uuid.UUID("3f0f6c7d-8f53-4c1e-9c1a-3f0f6c7d2e11")
    assert case_reference(case_id) == "3F0F-6C7D"
    CaseReadyContext(case_ref=case_reference(uuid.uuid4()))  # always a valid reference


def test_defaults_are_english_words_in_kyiv_time() -> None:
    context = CaseReadyContext(case_ref="3F0F-6C7D")
    assert context.time_zone == DEFAULT_TIME_ZONE == "Europe/Kyiv"
    assert context.locale == "en"
    assert context.greeting_name is None and context.case_url is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("case_ref", "3f0f-6c7d"),
        ("case_ref", "3F0F6C7D"),
        ("greeting_name", "Olena\r\nBcc: x@example.org"),
        ("greeting_name", "   "),
        ("greeting_name", "O" * 101),
        ("time_zone", "Europe/Atlantis"),
        ("time_zone", "../../etc/passwd"),
        ("locale", "uk ua"),
        ("case_url", "javascript:alert(1)"),
        ("unexpected", "field"),
    ],
)
def test_bad_common_fields_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        sample_context(T.CASE_READY, **{field: value})


def test_a_center_message_keeps_its_lines_but_no_control_characters() -> None:
    context = sample_context(T.INFO_REQUESTED, message="Line one.\r\nLine two.\n\tIndented.")
    assert isinstance(context, InfoRequestedContext)
    assert context.message.count("\n") == 2
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REQUESTED, message="bell \x07")
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REQUESTED, message="x" * 4001)


def test_dates_must_carry_their_time_zone() -> None:
    with pytest.raises(ValidationError):
        sample_context(T.REFERRAL_REQUESTED, answer_due_at=datetime(2026, 4, 15, 14, 0))


def test_codes_are_checked_against_the_contracts() -> None:
    with pytest.raises(ValidationError):
        sample_context(T.REFERRAL_REQUESTED, center_country="de")
    with pytest.raises(ValidationError):
        sample_context(T.TRANSLATION_REQUIRED, detected_language="deu")
    with pytest.raises(ValidationError):
        sample_context(T.TRANSLATION_REQUIRED, acceptable_languages=[])
    with pytest.raises(ValidationError):
        sample_context(T.DOCUMENT_UNREADABLE, reason="smudged")


def test_webhook_facts_are_fields_of_their_model() -> None:
    for trigger in T:
        context = sample_context(trigger)
        assert set(context.webhook_facts) <= set(type(context).model_fields)
        assert not {"greeting_name", "document_name", "message", "case_url"} & set(
            context.webhook_facts
        )
    assert ReferralRequestedContext.webhook_facts == (
        "center_name",
        "center_country",
        "answer_due_at",
    )


@pytest.mark.parametrize(
    "items",
    [
        [{"kind": "lab_test", "detail": "Ki-67\nindex"}],  # one line each: the service joins them
        [{"kind": "lab_test", "detail": "bell \x07"}],
        [{"kind": "lab_test", "detail": "x" * 1001}],
        [{"kind": "lab_test", "detail": "   "}],
        [{"kind": "telepathy", "detail": "x"}],
        [{"kind": "lab_test", "detail": "x", "extra": "y"}],
        [{"kind": "lab_test", "detail": f"test {n}"} for n in range(21)],
    ],
)
def test_requested_items_are_codes_and_one_line_of_the_centers_words(
    items: list[dict[str, str]],
) -> None:
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REQUESTED, items=items)


def test_an_info_request_without_items_or_due_date_is_valid() -> None:
    context = sample_context(T.INFO_REQUESTED, items=[], due_at=None)
    assert isinstance(context, InfoRequestedContext)
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REQUESTED, due_at=datetime(2026, 4, 29, 18, 0))


def test_the_answer_sent_is_counts_never_its_content() -> None:
    for field, value in (
        ("answer", "The block is at the regional oncology centre."),
        ("tracking_number", "JD014600006281234567"),
        ("document_name", "Befund.pdf"),
        ("carrier", "DHL Express"),
    ):
        with pytest.raises(ValidationError):
            sample_context(T.INFORMATION_SENT, **{field: value})
    for field in ("new_documents", "shipments"):
        with pytest.raises(ValidationError):
            sample_context(T.INFORMATION_SENT, **{field: -1})


def test_a_reminder_is_a_known_code() -> None:
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REMINDER, reminder="weekly")
    with pytest.raises(ValidationError):
        sample_context(T.INFO_REMINDER, due_at=None)


def test_an_opinion_is_told_by_verdicts_and_counts_never_codes_or_names() -> None:
    assert sample_context(T.OPINION_DELIVERED, **OPINION_VERDICTS)
    for field, value in (
        ("icd10", "C50.4"),
        ("stage", "changed"),
        ("new_stage", {"group": "IIIA"}),
        ("additional_tests", ["PET-CT"]),
        ("clinical_trials_detail", "NCT01234567"),
    ):
        with pytest.raises(ValidationError):
            sample_context(T.OPINION_DELIVERED, **OPINION_VERDICTS, **{field: value})
    for field, value in (
        ("diagnosis", "C50.4"),
        ("treatment", "surgery"),
        ("further_tests", -1),
        ("further_tests", 21),
        ("further_tests", ["PET-CT"]),
    ):
        with pytest.raises(ValidationError):
            sample_context(T.OPINION_DELIVERED, **{**OPINION_VERDICTS, field: value})


@pytest.mark.parametrize("missing", sorted(OPINION_VERDICTS))
def test_an_opinions_verdicts_come_all_together_or_not_at_all(missing: str) -> None:
    assert sample_context(T.OPINION_DELIVERED).diagnosis is None  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="all given, or none"):
        sample_context(T.OPINION_DELIVERED, **{**OPINION_VERDICTS, missing: None})


def test_a_follow_up_answer_is_told_without_its_words_or_the_question() -> None:
    assert sample_context(T.FOLLOW_UP_ANSWERED)
    for field, value in (
        ("answer", "The HER2 re-test supports the alternative plan."),
        ("question", "Should I start with surgery?"),
    ):
        with pytest.raises(ValidationError):
            sample_context(T.FOLLOW_UP_ANSWERED, **{field: value})
    with pytest.raises(ValidationError):
        sample_context(T.FOLLOW_UP_ANSWERED, answered_at=datetime(2026, 5, 12, 22, 40))


def test_a_proposed_center_is_told_without_its_code_or_routings_reasons() -> None:
    assert sample_context(T.CENTERS_PROPOSED)
    first = {
        "center_name": "Charité Comprehensive Cancer Center",
        "center_country": "DE",
        "turnaround_days": 7,
    }
    second = {**first, "center_country": "PL"}
    for extra in (
        {"center_code": "charite-berlin"},
        {"why": "HER2-positive breast cancer board; opinion in 7 days."},
        {"rank": 1},
    ):
        with pytest.raises(ValidationError):
            sample_context(T.CENTERS_PROPOSED, proposals=[{**first, **extra}, second])
    for proposals in (
        [first],  # nothing to choose from
        [first, {**second, "center_country": "pl"}],
        [first, {**second, "turnaround_days": 0}],
        [first, {**second, "price": {"amount": 900, "currency": "euro"}}],
        [first, second] * 6,
    ):
        with pytest.raises(ValidationError):
            sample_context(T.CENTERS_PROPOSED, proposals=proposals)
    with pytest.raises(ValidationError):
        sample_context(T.CENTERS_PROPOSED, choose_by=datetime(2026, 4, 18, 0, 30))
