"""Why routing offered a case to this center, in words for the center's staff.

Partners gives a referral's own center its `routing` explanation (codes and figures, with an
English sentence each). The console words each item from its codes in the page's language, so
the sentences are in the catalogs like every other; an item this version does not know (a newer
partners) is shown in partners' own English sentence rather than left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from referrals_web import i18n
from referrals_web.vocabulary import AGE_GROUPS

_CRITERIA = {
    "turnaround": i18n.N_("Deciding factor: the shortest opinion turnaround."),
    "load": i18n.N_("Deciding factor: the same turnaround, with fewer places taken this week."),
    "price": i18n.N_("Deciding factor: the same turnaround and load, at a lower price."),
    "code": i18n.N_("Deciding factor: a tie on turnaround, load and price, broken by code."),
}


@dataclass(frozen=True)
class RoutingWords:
    """The explanation in the page's language: the reasons first (the inbox shows only them),
    then the rules the center met, and the rank line."""

    reasons: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)
    rank: str = ""


def _reason(item: dict[str, Any], routing: dict[str, Any], locale: str) -> list[str]:
    t = i18n.translations(locale)
    code, count = item.get("code"), item.get("count") or 0
    eligible, considered = routing.get("eligible_count", 0), routing.get("considered_count", 0)
    if code == "ranked_first":
        words = [
            t.ngettext(
                "Ranked first of %(num)s eligible center.",
                "Ranked first of %(num)s eligible centers.",
                eligible,
            )
            % {"num": eligible}
        ]
        criterion = _CRITERIA.get(item.get("criterion") or "")
        return words + ([t.gettext(criterion)] if criterion else [])
    if code == "only_eligible":
        text = t.ngettext(
            "The only eligible center of %(num)s considered.",
            "The only eligible center of %(num)s considered.",
            considered,
        )
        return [text % {"num": considered}]
    if code == "chosen_by_patient":
        text = t.ngettext(
            "The patient chose your center among %(num)s proposed center.",
            "The patient chose your center among %(num)s proposed centers.",
            count,
        )
        return [text % {"num": count}]
    if code == "no_choice_by_deadline":
        return [
            t.gettext(
                "The patient did not choose a center in time: the first-ranked center is "
                "offered the case."
            )
        ]
    if code == "rerouted_after_decline":
        text = t.ngettext(
            "Offered after %(num)s other center declined it.",
            "Offered after %(num)s other centers declined it.",
            count,
        )
        return [text % {"num": count}]
    if code == "rerouted_after_expiry":
        text = t.ngettext(
            "Offered after %(num)s other center did not answer in time.",
            "Offered after %(num)s other centers did not answer in time.",
            count,
        )
        return [text % {"num": count}]
    if code == "further_opinion":
        return [t.gettext("A further opinion: opinion number %(num)s.") % {"num": count}]
    return [str(item.get("text") or "")]


def _match(item: dict[str, Any], locale: str) -> str:
    t = i18n.translations(locale)
    rule, codes = item.get("rule"), list(item.get("codes") or [])
    if rule == "diagnosis" and codes:
        if len(codes) > 1:
            return t.gettext("Diagnosis: your center reviews %(entry)s, which covers %(code)s.") % {
                "entry": codes[0],
                "code": codes[1],
            }
        return t.gettext("Diagnosis: your center reviews %(code)s.") % {"code": codes[0]}
    if rule == "age_group" and codes:
        group = AGE_GROUPS.get(codes[0])
        return t.gettext("Age group your center sees: %(group)s.") % {
            "group": t.gettext(group) if group else codes[0]
        }
    if rule == "destination" and codes:
        return t.gettext("Where the patient asked for the opinion from: %(country)s.") % {
            "country": i18n.country_name(codes[0], locale)
        }
    if rule == "languages" and codes:
        names = i18n.all_of([i18n.language_name(code, locale) for code in codes], locale)
        return t.gettext("Languages of the documents, all read by your reviewers: %(names)s.") % {
            "names": names
        }
    if rule == "capacity" and item.get("weekly_capacity"):
        return t.gettext(
            "Places taken this week when the case was routed: %(taken)s of %(all)s."
        ) % {
            "taken": item.get("places_taken") or 0,
            "all": item["weekly_capacity"],
        }
    if rule == "turnaround" and item.get("turnaround_days"):
        days = item["turnaround_days"]
        text = t.ngettext(
            "Your usual opinion turnaround: %(num)s day.",
            "Your usual opinion turnaround: %(num)s days.",
            days,
        )
        return text % {"num": days}
    return str(item.get("text") or "")


def explain(routing: dict[str, Any] | None, locale: str) -> RoutingWords | None:
    """The referral's `routing` in words; None when partners recorded none (older referrals)."""
    if not routing:
        return None
    t = i18n.translations(locale)
    reasons = [
        line for item in routing.get("reasons") or [] for line in _reason(item, routing, locale)
    ]
    rank = t.gettext("Rank among the eligible centers: %(rank)s of %(eligible)s.") % {
        "rank": routing.get("rank"),
        "eligible": routing.get("eligible_count"),
    }
    return RoutingWords(
        reasons=[line for line in reasons if line],
        matched=[
            line for line in (_match(m, locale) for m in routing.get("matched") or []) if line
        ],
        rank=rank,
    )


__all__ = ["RoutingWords", "explain"]
