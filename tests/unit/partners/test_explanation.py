"""Why a center was offered a case, as its center reads it (referrals_partners.explanation)."""

from __future__ import annotations

import json

import pytest

from referrals_common.contracts import RankCriterion, RoutingReasonCode, RoutingRule
from referrals_partners.explanation import OfferFacts, ahead_by, explain
from referrals_partners.routing import decide

from .helpers import RATES, center, destination, request, state

pytestmark = pytest.mark.unit


def _facts(**fields):  # type: ignore[no-untyped-def]
    values = {"rank": 1, "eligible_count": 2, "considered_count": 5, "load": 3}
    return OfferFacts(**(values | fields))


def test_the_rules_met_name_the_coverage_entry_languages_capacity_and_turnaround():
    berlin = center("berlin", cancers=["C00-C14", "C50"], weekly_capacity=20)
    why = explain(
        request(document_languages=["de", "en"], destination=destination("countries", "DE")),
        berlin,
        _facts(ahead_by=RankCriterion.TURNAROUND),
    )
    rules = {m.rule: m for m in why.matched}
    assert list(rules) == [
        RoutingRule.DIAGNOSIS,
        RoutingRule.AGE_GROUP,
        RoutingRule.DESTINATION,
        RoutingRule.LANGUAGES,
        RoutingRule.CAPACITY,
        RoutingRule.TURNAROUND,
    ]
    assert rules[RoutingRule.DIAGNOSIS].codes == ["C50", "C50.9"]
    assert "reviews C50, which covers the case's C50.9" in rules[RoutingRule.DIAGNOSIS].text
    assert rules[RoutingRule.DESTINATION].codes == ["DE"]
    assert "Germany" in rules[RoutingRule.DESTINATION].text
    assert rules[RoutingRule.LANGUAGES].codes == ["de", "en"]
    assert "German and English" in rules[RoutingRule.LANGUAGES].text
    assert (
        rules[RoutingRule.CAPACITY].places_taken,
        rules[RoutingRule.CAPACITY].weekly_capacity,
    ) == (
        3,
        20,
    )
    assert rules[RoutingRule.TURNAROUND].turnaround_days == 7
    (reason,) = why.reasons
    assert reason.code is RoutingReasonCode.RANKED_FIRST
    assert reason.criterion is RankCriterion.TURNAROUND
    assert reason.text.startswith("Ranked first of 2 eligible centers (5 considered)")


def test_a_re_route_counts_declines_and_expiries_and_a_further_opinion_says_so():
    why = explain(
        request(),
        center(),
        _facts(eligible_count=1, declined_before=2, expired_before=1, opinion_round=2),
    )
    codes = [(r.code, r.count) for r in why.reasons]
    assert codes == [
        (RoutingReasonCode.ONLY_ELIGIBLE, None),
        (RoutingReasonCode.REROUTED_AFTER_DECLINE, 2),
        (RoutingReasonCode.REROUTED_AFTER_EXPIRY, 1),
        (RoutingReasonCode.FURTHER_OPINION, 2),
    ]
    assert why.opinion_round == 2
    assert why.reasons[1].text == "Offered after 2 other centers declined it."


def test_the_patients_choice_comes_first_and_a_lower_rank_is_not_called_first():
    why = explain(request(), center(), _facts(rank=2, proposed=3, chosen_by_patient=True))
    assert why.chosen_by_patient
    assert [r.code for r in why.reasons] == [RoutingReasonCode.CHOSEN_BY_PATIENT]
    assert why.reasons[0].count == 3
    late = explain(request(), center(), _facts(proposed=3, ahead_by=RankCriterion.PRICE))
    assert [r.code for r in late.reasons] == [
        RoutingReasonCode.NO_CHOICE_BY_DEADLINE,
        RoutingReasonCode.RANKED_FIRST,
    ]
    assert not late.chosen_by_patient


def test_ahead_by_is_the_first_ranking_criterion_that_differs():
    near = state("near", load=1, opinion_turnaround_days=5)
    far = state("far", load=0, opinion_turnaround_days=9)
    busy = state("busy", load=5, opinion_turnaround_days=5)
    decision = decide(request(), [far, busy, near], rates=RATES)
    first, second, third = (a.score for a in decision.eligible)
    assert ahead_by(first, second) is RankCriterion.LOAD  # near beats busy on load
    assert ahead_by(first, third) is RankCriterion.TURNAROUND
    cheap = state("cheap", price={"amount": 500, "currency": "EUR"})
    dear = state("dear")
    decision = decide(request(), [dear, cheap], rates=RATES)
    assert ahead_by(*(a.score for a in decision.eligible)) is RankCriterion.PRICE


def test_the_explanation_holds_no_name_contact_price_or_payer():
    berlin = center("berlin", payers={"insurers": ["techniker-kk"]})
    why = explain(request(payer={"kind": "insurer", "insurer": "techniker-kk"}), berlin, _facts())
    text = json.dumps(why.model_dump(mode="json"))
    for private in ("Test Center", "desk@", "+4930", "1000", "techniker", "insurer", "EUR"):
        assert private not in text
