"""The case lifecycle as a specification: every transition the design allows, and every other
one refused."""

import itertools

import pytest

from referrals_common.contracts import CaseStatus, StatusChangeReason
from referrals_intake.lifecycle import (
    OPEN_STATES,
    TRANSITIONS,
    DocumentState,
    IllegalTransition,
    documents_verdict,
    missing_for_submission,
    next_status,
    still_missing,
)

pytestmark = pytest.mark.unit
S, R = CaseStatus, StatusChangeReason

ALLOWED = {
    (S.DRAFT, R.PATIENT_SUBMITTED): S.SUBMITTED,
    (S.SUBMITTED, R.DOCUMENTS_ACCEPTED): S.READY,
    (S.SUBMITTED, R.TRANSLATION_REQUIRED): S.ACTION_REQUIRED,
    (S.SUBMITTED, R.DOCUMENT_UNREADABLE): S.ACTION_REQUIRED,
    (S.ACTION_REQUIRED, R.DOCUMENTS_UPDATED): S.SUBMITTED,
    (S.READY, R.REFERRAL_REQUESTED): S.REFERRED,
    (S.REFERRED, R.REFERRAL_ACCEPTED): S.ACCEPTED,
    (S.REFERRED, R.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    (S.READY, R.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    (S.ACCEPTED, R.OPINION_DELIVERED): S.OPINION_DELIVERED,
    # The information loop: a center asks, the case waits; unanswered or declined, it goes on.
    (S.REFERRED, R.INFO_REQUESTED): S.INFORMATION_REQUESTED,
    (S.ACCEPTED, R.INFO_REQUESTED): S.INFORMATION_REQUESTED,
    (S.INFORMATION_REQUESTED, R.INFORMATION_NOT_PROVIDED): S.REFERRED,
    (S.INFORMATION_REQUESTED, R.REFERRAL_DECLINED): S.REFERRED,
    (S.INFORMATION_REQUESTED, R.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    (S.ACCEPTED, R.INFORMATION_NOT_PROVIDED): S.REFERRED,
    # The patient chooses among the proposed centers.
    (S.READY, R.CENTERS_PROPOSED): S.CHOOSING_CENTER,
    (S.CHOOSING_CENTER, R.REFERRAL_REQUESTED): S.REFERRED,
    (S.CHOOSING_CENTER, R.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    # A further opinion; none to be had: back to the opinion the case has.
    (S.OPINION_DELIVERED, R.FURTHER_OPINION_REQUESTED): S.READY,
    (S.READY, R.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
    (S.REFERRED, R.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
    (S.INFORMATION_REQUESTED, R.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
    **{
        (state, R.PATIENT_WITHDREW): S.WITHDRAWN
        for state in (
            S.DRAFT,
            S.SUBMITTED,
            S.ACTION_REQUIRED,
            S.READY,
            S.REFERRED,
            S.ACCEPTED,
            S.INFORMATION_REQUESTED,
            S.CHOOSING_CENTER,
        )
    },
}
RESUMED = {S.REFERRED, S.ACCEPTED}
"""The answer to a request returns the case to the state the center asked in."""


@pytest.mark.parametrize(("current", "reason"), sorted(ALLOWED))
def test_an_allowed_transition_moves_the_case(current, reason):
    assert next_status(current, reason) is ALLOWED[(current, reason)]


REFUSED = sorted(
    set(itertools.product(S, R))
    - set(ALLOWED)
    - {(S.INFORMATION_REQUESTED, R.INFORMATION_PROVIDED)}
)


@pytest.mark.parametrize(("current", "reason"), REFUSED)
def test_every_other_transition_is_refused(current, reason):
    with pytest.raises(IllegalTransition):
        next_status(current, reason)


@pytest.mark.parametrize("resume", sorted(RESUMED))
def test_the_answer_returns_the_case_to_the_state_it_was_asked_in(resume):
    assert next_status(S.INFORMATION_REQUESTED, R.INFORMATION_PROVIDED, resume=resume) is resume


@pytest.mark.parametrize("resume", [None, *sorted(set(S) - RESUMED)])
def test_the_answer_goes_back_to_referred_or_accepted_only(resume):
    with pytest.raises(IllegalTransition):
        next_status(S.INFORMATION_REQUESTED, R.INFORMATION_PROVIDED, resume=resume)


@pytest.mark.parametrize("current", sorted(set(S) - {S.INFORMATION_REQUESTED}))
def test_only_a_waiting_case_takes_an_answer(current):
    with pytest.raises(IllegalTransition):
        next_status(current, R.INFORMATION_PROVIDED, resume=S.ACCEPTED)


def test_still_missing_lists_what_the_checklist_lacks_of_what_was_asked():
    items = [
        {"kind": "family_history", "detail": "cancers in first-degree relatives"},
        {"kind": "medications", "detail": "with doses"},
        {"kind": "lab_test", "detail": "Ki-67"},
    ]
    assert still_missing(items, None) == [
        "your family history: cancers in first-degree relatives",
        "your current medications with doses: with doses",
    ]
    given = {"family_history": "mother: breast cancer at 52", "medications": []}
    assert still_missing(items, given) == ["your current medications with doses: with doses"]


def test_the_transition_table_is_exactly_the_designed_one():
    assert TRANSITIONS == ALLOWED


@pytest.mark.parametrize("closed", [S.OPINION_DELIVERED, S.UNROUTABLE, S.WITHDRAWN])
def test_a_closed_case_cannot_be_withdrawn(closed):
    assert closed not in OPEN_STATES
    with pytest.raises(IllegalTransition, match="cannot move on patient_withdrew"):
        next_status(closed, R.PATIENT_WITHDREW)


def doc(i, kind="pathology_report", check="accepted", stored=True, of=None, lang="en"):
    return DocumentState(f"d{i}", kind, stored, check, of, lang)


def test_all_documents_accepted_means_ready():
    assert documents_verdict([doc(1), doc(2, "lab_results")]) is R.DOCUMENTS_ACCEPTED


def test_no_documents_or_a_pending_check_means_wait():
    assert documents_verdict([]) is None
    assert documents_verdict([doc(1), doc(2, check="pending")]) is None
    assert documents_verdict([doc(1, stored=False)]) is None


def test_a_document_in_the_wrong_language_needs_action():
    docs = [doc(1), doc(2, "discharge_summary", "translation_required", lang="uk")]
    assert documents_verdict(docs) is R.TRANSLATION_REQUIRED


def test_an_unreadable_document_needs_action_first():
    docs = [doc(1, check="unreadable"), doc(2, check="translation_required")]
    assert documents_verdict(docs) is R.DOCUMENT_UNREADABLE


def test_an_accepted_translation_replaces_its_original():
    docs = [
        doc(1),
        doc(2, "discharge_summary", "translation_required", lang="uk"),
        doc(3, "translation", "accepted", of="d2", lang="de"),
    ]
    assert documents_verdict(docs) is R.DOCUMENTS_ACCEPTED


def test_a_translation_being_checked_keeps_the_case_waiting_not_failed():
    docs = [
        doc(1),
        doc(2, "discharge_summary", "translation_required", lang="uk"),
        doc(3, "translation", "pending", of="d2"),
    ]
    assert documents_verdict(docs) is None


def test_a_rejected_translation_still_needs_action():
    docs = [
        doc(2, "discharge_summary", "translation_required", lang="uk"),
        doc(3, "translation", "translation_required", of="d2", lang="ru"),
    ]
    assert documents_verdict(docs) is R.TRANSLATION_REQUIRED


def test_the_centers_opinion_does_not_count_as_a_patient_document():
    assert documents_verdict([doc(1), doc(9, "opinion", "pending")]) is R.DOCUMENTS_ACCEPTED


def test_submission_lists_everything_missing():
    missing = missing_for_submission(
        [doc(1, "lab_results")],
        has_processing_consent=False,
        needs_cross_border_consent=True,
        has_cross_border_consent=False,
    )
    assert len(missing) == 3
    assert "pathology or biopsy report, or a discharge summary" in missing[0]
    assert "processing of health data" in missing[1]
    assert "outside Ukraine" in missing[2]


def test_a_discharge_summary_is_evidence_enough_and_ukraine_needs_no_cross_border_consent():
    assert (
        missing_for_submission(
            [doc(1, "discharge_summary", "pending")],
            has_processing_consent=True,
            needs_cross_border_consent=False,
            has_cross_border_consent=False,
        )
        == []
    )
