"""Why a case was offered to a center, told to that center: the `RoutingExplanation` partners
records with each referral when it offers it, and gives only to the referral's own center (the
partner API's referral view and list, and the `referral.offered` event on its inbox topic).

Pure, like `routing`: built from the routing request (the case's clinical facts, destination and
document languages), the center's registry entry and figures of the decision (its rank, how many
centers were eligible and considered, its load this week). The explanation holds codes and
figures, each item with an English sentence made from them; never the patient's words, contact
data or payer (the center learns who pays only once it accepted), and other centers are counted,
never named or priced.
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals_common.contracts import (
    RankCriterion,
    RoutingExplanation,
    RoutingMatch,
    RoutingReason,
    RoutingReasonCode,
    RoutingRule,
)
from referrals_common.contracts.intake import DestinationPreference

from .registry import Center
from .routing import UKRAINE, RoutingRequest, Score, _and_list, country_name, language_name

_AHEAD_BY = {
    RankCriterion.TURNAROUND: "the shortest opinion turnaround",
    RankCriterion.LOAD: "the same turnaround, with fewer places taken this week",
    RankCriterion.PRICE: "the same turnaround and load, at a lower price",
    RankCriterion.CODE: "a tie on turnaround, load and price, broken by center code",
}


def ahead_by(first: Score, second: Score) -> RankCriterion:
    """The first ranking criterion on which `first` beat `second` (see `routing.decide`)."""
    if first.turnaround_days != second.turnaround_days:
        return RankCriterion.TURNAROUND
    if first.load_ratio != second.load_ratio:
        return RankCriterion.LOAD
    if first.price != second.price:
        return RankCriterion.PRICE
    return RankCriterion.CODE


@dataclass(frozen=True, slots=True)
class OfferFacts:
    """How the offer came about, beyond the decision's figures."""

    rank: int
    eligible_count: int
    considered_count: int
    load: int
    """The center's open referrals this week when routing decided."""
    ahead_by: RankCriterion | None = None
    """For a first-ranked center of several: what put it ahead of the second."""
    proposed: int = 0
    """How many centers the patient was proposed (0: the patient was not asked to choose)."""
    chosen_by_patient: bool = False
    declined_before: int = 0
    expired_before: int = 0
    opinion_round: int = 1


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def matched_rules(request: RoutingRequest, center: Center, load: int) -> list[RoutingMatch]:
    """The rules an eligible center met for the case, in routing's order."""
    code, age, country = request.icd10, request.age_group.value, center.country
    entry = center.routing_profile.icd.best_match(code)
    covered = entry.text if entry is not None else code
    matched = [
        RoutingMatch(
            rule=RoutingRule.DIAGNOSIS,
            codes=[covered] if covered == code else [covered, code],
            text=f"Your center reviews {code}."
            if covered == code
            else f"Your center reviews {covered}, which covers the case's {code}.",
        ),
        RoutingMatch(
            rule=RoutingRule.AGE_GROUP,
            codes=[age],
            text=f"Your center sees {age} patients.",
        ),
        RoutingMatch(rule=RoutingRule.DESTINATION, codes=[country], text=_where(request, country)),
    ]
    languages = list(request.document_languages)
    names = _and_list([language_name(lang) for lang in languages])
    matched.append(
        RoutingMatch(
            rule=RoutingRule.LANGUAGES,
            codes=languages,
            text=f"Your reviewers read every language the documents are in: {names}.",
        )
    )
    capacity = center.weekly_capacity
    matched.append(
        RoutingMatch(
            rule=RoutingRule.CAPACITY,
            places_taken=load,
            weekly_capacity=capacity,
            text=f"Your center had places left this week ({load} of {capacity} taken).",
        )
    )
    days = center.opinion_turnaround_days
    matched.append(
        RoutingMatch(
            rule=RoutingRule.TURNAROUND,
            turnaround_days=days,
            text=f"Your center's usual opinion turnaround is {days} "
            f"{_plural(days, 'day', 'days')}.",
        )
    )
    return matched


def _where(request: RoutingRequest, country: str) -> str:
    name = country_name(country)
    preference = request.destination.preference
    if preference is DestinationPreference.UKRAINE:
        return "Your center is in Ukraine, where the patient asked for the opinion from."
    if preference is DestinationPreference.ABROAD:
        text = f"Your center is in {name}: the patient asked for a center abroad"
    elif country == UKRAINE:
        text = "Your center is in Ukraine, a country the patient named"
    else:
        text = f"Your center is in {name}, a country the patient named"
    if country != UKRAINE:
        text += " and consented to cross-border transfer"
    return text + "."


def reasons(facts: OfferFacts) -> list[RoutingReason]:
    """Why this center, most telling first: the patient's choice, its rank, re-routing, a
    further opinion."""
    found: list[RoutingReason] = []
    if facts.chosen_by_patient:
        found.append(
            RoutingReason(
                code=RoutingReasonCode.CHOSEN_BY_PATIENT,
                count=facts.proposed,
                text=f"The patient chose your center among {facts.proposed} proposed centers "
                f"(it ranked {facts.rank} of {facts.eligible_count} eligible).",
            )
        )
    elif facts.proposed:
        found.append(
            RoutingReason(
                code=RoutingReasonCode.NO_CHOICE_BY_DEADLINE,
                text="The patient was asked to choose a center and did not choose in time: "
                "the first-ranked center is offered the case.",
            )
        )
    if facts.eligible_count == 1:
        found.append(
            RoutingReason(
                code=RoutingReasonCode.ONLY_ELIGIBLE,
                text=f"The only eligible center of {facts.considered_count} considered.",
            )
        )
    elif facts.rank == 1 and not facts.chosen_by_patient:
        criterion = facts.ahead_by or RankCriterion.TURNAROUND
        found.append(
            RoutingReason(
                code=RoutingReasonCode.RANKED_FIRST,
                criterion=criterion,
                text=f"Ranked first of {facts.eligible_count} eligible centers "
                f"({facts.considered_count} considered): {_AHEAD_BY[criterion]}.",
            )
        )
    if facts.declined_before:
        n = facts.declined_before
        found.append(
            RoutingReason(
                code=RoutingReasonCode.REROUTED_AFTER_DECLINE,
                count=n,
                text=f"Offered after {n} other {_plural(n, 'center', 'centers')} declined it.",
            )
        )
    if facts.expired_before:
        n = facts.expired_before
        found.append(
            RoutingReason(
                code=RoutingReasonCode.REROUTED_AFTER_EXPIRY,
                count=n,
                text=f"Offered after {n} other {_plural(n, 'center', 'centers')} did not "
                "answer in time.",
            )
        )
    if facts.opinion_round > 1:
        found.append(
            RoutingReason(
                code=RoutingReasonCode.FURTHER_OPINION,
                count=facts.opinion_round,
                text=f"The patient asked for a further opinion (opinion {facts.opinion_round}); "
                "centers that gave an earlier one are not offered the case again.",
            )
        )
    return found


def explain(request: RoutingRequest, center: Center, facts: OfferFacts) -> RoutingExplanation:
    """Why `center` is offered the case: the rules it met and the reasons, for that center."""
    return RoutingExplanation(
        rank=facts.rank,
        eligible_count=facts.eligible_count,
        considered_count=facts.considered_count,
        chosen_by_patient=facts.chosen_by_patient,
        opinion_round=facts.opinion_round,
        matched=matched_rules(request, center, facts.load),
        reasons=reasons(facts),
    )


__all__ = ["OfferFacts", "ahead_by", "explain", "matched_rules", "reasons"]
