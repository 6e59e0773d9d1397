"""Routing: which cancer center gets a case next, and why. Pure and deterministic: no I/O, no clock.

`decide` looks at every center of the registry with its load this week and the centers already
tried for the case, and returns a `RoutingDecision`: the chosen center (or none, with the cause),
an English rationale for operators and the patient, and an assessment of every center considered,
with the reasons it was not chosen. Keeping it pure lets the service call it inside the case's
transaction, replay it in tests and store the decision as the audit of the choice.

A center is **eligible** when all of these hold (each failure is a `Reason` in its assessment):

- it is active (not paused);
- it is where the patient wants the opinion from: `ukraine` → in UA; `countries` → in one of the
  named countries; `abroad` → outside UA; and without consent to cross-border transfer only
  Ukrainian centers qualify, whatever the preference;
- it reviews the case's ICD-10 code (see `registry.IcdSpec` for the matching rules);
- it sees the case's age group (adult / pediatric);
- its reviewers read *every* language the documents are in (English counts only for a center that
  reads English: no language is assumed);
- it has capacity left this week (open referrals < weekly capacity);
- it has not been offered this case before.

Eligible centers are **ranked** by opinion turnaround (days), then relative load this week
(open referrals / weekly capacity), then price in the registry's reference currency, then center
code. The key is total, so the decision does not depend on the order of the input.

Speed: each center's facts are compiled once (`Center.routing_profile`, kept with the center, so
callers should keep `Center` objects between decisions rather than re-validate them); the
per-decision reasons are built once and shared between centers; language and country names
(babel) are looked up once per code and cached. One decision over 1,000 centers takes about
1.5 ms on one core (bench/partners.py); its full audit record (`as_record`) about 1 ms more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from operator import itemgetter
from typing import Annotated, Any, NamedTuple

from babel import Locale
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from referrals_common.contracts import AgeGroup, CaseReadyForReferral
from referrals_common.contracts.intake import (
    Destination,
    DestinationPreference,
    Icd10Code,
    LanguageCode,
    Payer,
    PayerKind,
)
from referrals_common.contracts.partners import UnroutableReason

from .registry import Center, ExchangeRates, RoutingProfile

UKRAINE = "UA"
RATIONALE_MAX = 1000
"""`ReferralRequested.rationale` holds at most 1,000 characters."""

_ENGLISH = Locale("en")
_CENT = Decimal("0.01")


@lru_cache(maxsize=512)
def language_name(code: str) -> str:
    """The English name of an ISO 639-1 language (`uk` → Ukrainian); the code if unknown."""
    return str(_ENGLISH.languages.get(code, code))


@lru_cache(maxsize=512)
def country_name(code: str) -> str:
    """The English name of an ISO 3166-1 country (`DE` → Germany); the code if unknown."""
    return str(_ENGLISH.territories.get(code, code))


def _and_list(items: Sequence[str], conjunction: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _clip(text: str, limit: int = RATIONALE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ------------------------------------------------------------------------------ the inputs


def _no_duplicates(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("the list has duplicate items")
    return values


class RoutingRequest(BaseModel):
    """What routing needs to know about a case: the facts of `case.ready_for_referral`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    icd10: Icd10Code
    age_group: AgeGroup
    destination: Destination
    cross_border_transfer_allowed: bool = Field(
        description="Without it only Ukrainian centers are eligible"
    )
    document_languages: Annotated[list[LanguageCode], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="Languages of the documents; a center must read every one"
    )
    payer: Payer | None = Field(
        default=None, description="Who pays; a center must accept it (None: not checked)"
    )

    @classmethod
    def from_ready_event(cls, event: CaseReadyForReferral) -> RoutingRequest:
        """The request for a `case.ready_for_referral` event."""
        return cls(
            icd10=event.clinical.icd10,
            age_group=event.clinical.age_group,
            destination=event.destination,
            cross_border_transfer_allowed=event.cross_border_transfer_allowed,
            document_languages=event.document_languages,
            payer=event.payer,
        )


@dataclass(frozen=True, slots=True)
class CenterState:
    """A center and its load: the referrals it has open (offered or accepted) this week."""

    center: Center
    load: int = 0

    def __post_init__(self) -> None:
        if self.load < 0:
            raise ValueError(f"load of {self.center.code} is negative: {self.load}")


# ----------------------------------------------------------------------------- the outputs


class ReasonCode(StrEnum):
    """Why a center was not chosen (machine-readable; `Reason.text` words it in English)."""

    PAUSED = "paused"
    OUTSIDE_DESTINATION = "outside_destination"
    NO_CROSS_BORDER_CONSENT = "no_cross_border_consent"
    DIAGNOSIS_NOT_REVIEWED = "diagnosis_not_reviewed"
    AGE_GROUP_NOT_SEEN = "age_group_not_seen"
    LANGUAGE_NOT_READ = "language_not_read"
    PAYER_NOT_ACCEPTED = "payer_not_accepted"
    NO_CAPACITY = "no_capacity"
    ALREADY_TRIED = "already_tried"
    RANKED_LOWER = "ranked_lower"
    """Eligible, but another center ranked higher."""


class Reason(NamedTuple):
    """One reason a center was not chosen (build it with `Reason.of`)."""

    code: ReasonCode
    text: str
    """In English, completing "the center …": `does not read Ukrainian`."""
    subject: str | None
    """What the reason is about, as a code: the language (`uk`), the country (`DE`), the ICD-10
    code, the age group, `load/capacity`; None when nothing more is needed."""
    key: str
    """`code` or `code:subject`: `language_not_read:uk`, `no_capacity:20/20`."""

    @classmethod
    def of(cls, code: ReasonCode, text: str, subject: str | None = None) -> Reason:
        key = code.value if subject is None else f"{code.value}:{subject}"
        return cls(code, text, subject, key)

    def as_record(self) -> dict[str, Any]:
        return {"code": self.code.value, "text": self.text, "subject": self.subject}


_PAUSED = Reason.of(ReasonCode.PAUSED, "is paused")
_TRIED = Reason.of(ReasonCode.ALREADY_TRIED, "was already offered this case")
_PAUSED_ONLY, _TRIED_ONLY = (_PAUSED,), (_TRIED,)


class Score(NamedTuple):
    """The ranking key of an eligible center, field by field in order of precedence: scores
    sort in ranking order (the best first)."""

    turnaround_days: int
    load_ratio: float
    """Open referrals this week / weekly capacity."""
    price: float
    """Price in the reference currency, rounded to cents."""
    code: str
    """The final tie-break: codes are unique."""

    def as_record(self) -> dict[str, Any]:
        return {
            "turnaround_days": self.turnaround_days,
            "load_ratio": round(self.load_ratio, 4),
            "price": self.price,
            "code": self.code,
        }


class Assessment(NamedTuple):
    """How one center fared: eligible with a rank and score, or not with its reasons.

    An immutable record (a named tuple: cheap to build a thousand times per decision).
    """

    code: str
    center: Center
    load: int
    reasons: tuple[Reason, ...]
    """Empty for the chosen center; `ranked_lower` for the other eligible ones."""
    rank: int | None = None
    """1 for the best eligible center; None when not eligible."""
    score: Score | None = None

    @property
    def eligible(self) -> bool:
        return self.rank is not None

    def as_record(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "country": self.center.country,
            "eligible": self.eligible,
            "rank": self.rank,
            "load": self.load,
            "weekly_capacity": self.center.weekly_capacity,
            "score": self.score.as_record() if self.score else None,
            "reasons": [reason.as_record() for reason in self.reasons],
        }


_new_tuple = tuple.__new__
"""Builds an `Assessment` from a complete tuple of its fields, skipping the generated
`__new__` (half the cost, in the loop that runs once per center)."""


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The outcome of one routing: the chosen center or why none, and every center's assessment."""

    request: RoutingRequest
    chosen: Center | None
    unroutable: UnroutableReason | None
    """None when a center was chosen; `no_eligible_center` when no center matches the case (or
    every matching one is full); `all_centers_declined` when every matching center was tried;
    `payer_not_accepted` when no center matches, but some would if they accepted the payer."""
    rationale: str
    """Why this center (or why none), in English, at most 1,000 characters."""
    assessments: tuple[Assessment, ...]
    """Every center considered: the eligible by rank (the chosen first), then the rest by code."""
    waiting_for_capacity: bool = False
    """No center chosen, but a matching center not yet tried is only full this week: the case
    could be routed when capacity frees up."""
    reference_currency: str = "EUR"
    eligible_count: int = 0
    """How many centers were eligible: the first `eligible_count` assessments."""

    @property
    def eligible(self) -> tuple[Assessment, ...]:
        """The eligible centers' assessments, by rank."""
        return self.assessments[: self.eligible_count]

    @property
    def considered(self) -> int:
        return len(self.assessments)

    def assessment(self, code: str) -> Assessment:
        """The assessment of one center; `KeyError` if it was not considered."""
        for item in self.assessments:
            if item.code == code:
                return item
        raise KeyError(code)

    def as_record(self, include_ineligible: bool = True) -> dict[str, Any]:
        """The decision as compact JSON-ready data, for the referral's audit and operators.

        `ranked` lists the eligible centers by rank, with their score and (below the first) why
        they ranked lower. With `include_ineligible`, `not_eligible` maps every other center's
        code to its reason keys, and `reasons` maps each key to its English text once.
        """
        record: dict[str, Any] = {
            "chosen": self.chosen.code if self.chosen else None,
            "unroutable": self.unroutable.value if self.unroutable else None,
            "rationale": self.rationale,
            "waiting_for_capacity": self.waiting_for_capacity,
            "reference_currency": self.reference_currency,
            "considered": self.considered,
            "eligible": self.eligible_count,
            "ranked": [item.as_record() for item in self.eligible],
        }
        if include_ineligible:
            rest = self.assessments[self.eligible_count :]
            record["not_eligible"] = {
                item.code: [reason.key for reason in item.reasons] for item in rest
            }
            record["reasons"] = {
                reason.key: reason.text for item in rest for reason in item.reasons
            }
        return record


# ------------------------------------------------------------------------ per-decision facts


@dataclass(slots=True)
class _Case:
    """The request's facts as plain values, and the reasons built once per decision."""

    code: str
    category: str
    age_group: str
    languages: frozenset[str]
    language_order: tuple[str, ...]
    preference: DestinationPreference
    countries: frozenset[str]
    cross_border: bool
    tried: frozenset[str]
    diagnosis_reason: Reason
    age_reason: Reason
    language_reasons: dict[str, Reason]
    destination_reasons: dict[str, tuple[Reason, ...]]
    payer: Payer | None
    payer_reasons: tuple[Reason, ...]

    @classmethod
    def of(cls, request: RoutingRequest, tried: Collection[str]) -> _Case:
        code, age = request.icd10, request.age_group.value
        languages = tuple(request.document_languages)
        return cls(
            code=code,
            category=code[:3],
            age_group=age,
            languages=frozenset(languages),
            language_order=languages,
            preference=request.destination.preference,
            countries=frozenset(request.destination.countries),
            cross_border=request.cross_border_transfer_allowed,
            tried=frozenset(tried),
            diagnosis_reason=Reason.of(
                ReasonCode.DIAGNOSIS_NOT_REVIEWED, f"does not review {code}", code
            ),
            age_reason=Reason.of(
                ReasonCode.AGE_GROUP_NOT_SEEN, f"does not see {age} patients", age
            ),
            language_reasons={
                lang: Reason.of(
                    ReasonCode.LANGUAGE_NOT_READ, f"does not read {language_name(lang)}", lang
                )
                for lang in languages
            },
            destination_reasons={},
            payer=request.payer,
            payer_reasons=(_payer_reason(request.payer),) if request.payer else (),
        )

    def against_country(self, country: str) -> tuple[Reason, ...]:
        """The destination reasons against a center in this country (memoised per decision)."""
        found = self.destination_reasons.get(country)
        if found is None:
            found = self.destination_reasons[country] = self._destination(country)
        return found

    def _destination(self, country: str) -> tuple[Reason, ...]:
        reasons = []
        name = country_name(country)
        if self.preference is DestinationPreference.UKRAINE and country != UKRAINE:
            text = f"is in {name}; the patient asked for a center in Ukraine"
            reasons.append(Reason.of(ReasonCode.OUTSIDE_DESTINATION, text, country))
        elif self.preference is DestinationPreference.ABROAD and country == UKRAINE:
            text = "is in Ukraine; the patient asked for a center abroad"
            reasons.append(Reason.of(ReasonCode.OUTSIDE_DESTINATION, text, country))
        elif self.preference is DestinationPreference.COUNTRIES and country not in self.countries:
            named = _and_list([country_name(c) for c in sorted(self.countries)], "or")
            text = f"is in {name}, not in a country the patient named ({named})"
            reasons.append(Reason.of(ReasonCode.OUTSIDE_DESTINATION, text, country))
        if not self.cross_border and country != UKRAINE:
            text = f"is in {name}; the patient has not consented to cross-border transfer"
            reasons.append(Reason.of(ReasonCode.NO_CROSS_BORDER_CONSENT, text, country))
        return tuple(reasons)


def _payer_reason(payer: Payer) -> Reason:
    if payer.kind is PayerKind.INSURER:
        text, subject = f"does not accept the insurer {payer.insurer}", f"insurer/{payer.insurer}"
    elif payer.kind is PayerKind.CHARITY:
        text, subject = "does not accept payment by a charity or fund", "charity"
    else:
        text, subject = "does not accept self-paying patients", "self_pay"
    return Reason.of(ReasonCode.PAYER_NOT_ACCEPTED, text, subject)


@lru_cache(maxsize=4096)
def _full(load: int, capacity: int) -> Reason:
    text = f"has no places left this week ({load} of {capacity} taken)"
    return Reason.of(ReasonCode.NO_CAPACITY, text, f"{load}/{capacity}")


# --------------------------------------------------------------------------------- deciding


@dataclass(slots=True)
class _Tally:
    """Counts that tell apart why nothing is eligible."""

    matching: int = 0
    """Centers that pass every check except capacity and having been tried."""
    matching_tried: int = 0
    matching_full_untried: int = 0
    payer_only: int = 0
    """Centers that would match the case but do not accept its payer."""

    def count(self, tried: bool, full: bool) -> None:
        """Count a center that matches the case but is full or was tried."""
        self.matching += 1
        self.matching_tried += tried
        self.matching_full_untried += full and not tried


def _assess(
    case: _Case, centers: Sequence[CenterState]
) -> tuple[list[tuple[CenterState, RoutingProfile]], list[Assessment], _Tally]:
    """Split the centers into eligible ones and assessments of the rest.

    The hot loop, once per center: names are bound to locals, reasons are shared per decision
    and gathered by tuple concatenation (adding to an empty tuple allocates nothing), nothing is
    formatted."""
    eligible: list[tuple[CenterState, RoutingProfile]] = []
    rejected: list[Assessment] = []
    tally = _Tally()
    code, category, age, languages = case.code, case.category, case.age_group, case.languages
    order, tried_codes = case.language_order, case.tried
    by_country, against_country = case.destination_reasons.get, case.against_country
    diagnosis, age_group = (case.diagnosis_reason,), (case.age_reason,)
    language_reasons = {lang: (reason,) for lang, reason in case.language_reasons.items()}
    payer, payer_reasons = case.payer, case.payer_reasons
    for state in centers:
        profile = state.center.routing_profile
        reasons: tuple[Reason, ...] = () if profile.active else _PAUSED_ONLY
        against = by_country(profile.country)
        if against is None:
            against = against_country(profile.country)
        reasons += against
        if category not in profile.categories and not (
            profile.subcodes and code.startswith(profile.subcodes)
        ):
            reasons += diagnosis
        if age not in profile.age_groups:
            reasons += age_group
        if not languages <= profile.languages:
            for lang in order:
                if lang not in profile.languages:
                    reasons += language_reasons[lang]
        if payer is not None and not profile.payers.accepts(payer):
            tally.payer_only += not reasons
            reasons += payer_reasons
        matches = not reasons
        load = state.load
        full = load >= profile.capacity
        if full:
            reasons += (_full(load, profile.capacity),)
        tried = profile.code in tried_codes
        if tried:
            reasons += _TRIED_ONLY
        if not reasons:
            eligible.append((state, profile))
            continue
        if matches:
            tally.count(tried, full)
        rejected.append(
            _new_tuple(Assessment, (profile.code, state.center, load, reasons, None, None))
        )
    return eligible, rejected, tally


@lru_cache(maxsize=8192)
def _in_reference(amount: Decimal, rate: Decimal) -> float:
    """A price in the reference currency, rounded to cents (exact, then a float for sorting)."""
    return float((amount * rate).quantize(_CENT))


def _score(state: CenterState, profile: RoutingProfile, rates: ExchangeRates) -> Score:
    price = state.center.price
    rate = rates.rates.get(price.currency)
    if rate is None:
        raise ValueError(f"center {profile.code}: no exchange rate for {price.currency}")
    load_ratio = state.load / profile.capacity
    return Score(
        profile.turnaround_days, load_ratio, _in_reference(price.amount, rate), profile.code
    )


def _why_lower(
    rank: int,
    total: int,
    lower: tuple[Score, CenterState],
    best: tuple[Score, CenterState],
    currency: str,
) -> Reason:
    """Words the first ranking criterion on which a center lost to the chosen one."""
    (score, state), (top, top_state) = lower, best
    if score.turnaround_days != top.turnaround_days:
        why = f"opinion in {score.turnaround_days} days, the chosen center's in "
        why += f"{top.turnaround_days}"
    elif score.load_ratio != top.load_ratio:
        why = (
            f"same turnaround, busier this week ({state.load} of {state.center.weekly_capacity} "
            f"places taken, the chosen center {top_state.load} of "
            f"{top_state.center.weekly_capacity})"
        )
    elif score.price != top.price:
        why = (
            f"same turnaround and load, higher price (about {score.price:,.2f} {currency}, "
            f"the chosen center {top.price:,.2f} {currency})"
        )
    else:
        why = "same turnaround, load and price; the tie is broken by center code"
    return Reason.of(ReasonCode.RANKED_LOWER, f"ranked {rank} of {total}: {why}")


def _rank(
    eligible: list[tuple[CenterState, RoutingProfile]], rates: ExchangeRates
) -> list[Assessment]:
    """The eligible centers by score (a `Score` sorts in ranking order), the best first."""
    scored = sorted((_score(state, profile, rates), state) for state, profile in eligible)
    total, ranked = len(scored), []
    for rank, pair in enumerate(scored, start=1):
        score, state = pair
        reasons: tuple[Reason, ...] = ()
        if rank > 1:
            reasons = (_why_lower(rank, total, pair, scored[0], rates.reference),)
        ranked.append(Assessment(score.code, state.center, state.load, reasons, rank, score))
    return ranked


def decide(
    request: RoutingRequest,
    centers: Sequence[CenterState],
    tried: Collection[str] = (),
    *,
    rates: ExchangeRates,
) -> RoutingDecision:
    """Choose the center to offer the case to next, or say why there is none.

    `centers` is the registry with each center's load this week (codes must be unique); `tried`
    the codes of centers already offered this case (they declined or let the offer expire);
    `rates` convert prices to one currency for ranking (the registry's `currency`).
    """
    if len({state.center.code for state in centers}) != len(centers):
        raise ValueError("centers lists a center code more than once")
    case = _Case.of(request, tried)
    eligible, rejected, tally = _assess(case, centers)
    ranked = _rank(eligible, rates)
    rejected.sort(key=itemgetter(0))  # by code
    assessments = (*ranked, *rejected)
    chosen = ranked[0] if ranked else None
    if chosen is not None:
        unroutable, rationale = None, _chosen_rationale(case, chosen, ranked, len(assessments))
    else:
        if tally.matching and tally.matching == tally.matching_tried:
            unroutable = UnroutableReason.ALL_CENTERS_DECLINED
        elif not tally.matching and tally.payer_only:
            unroutable = UnroutableReason.PAYER_NOT_ACCEPTED
        else:
            unroutable = UnroutableReason.NO_ELIGIBLE_CENTER
        rationale = _unroutable_rationale(request, case, unroutable, tally, assessments)
    return RoutingDecision(
        request=request,
        chosen=chosen.center if chosen else None,
        unroutable=unroutable,
        rationale=_clip(rationale),
        assessments=assessments,
        waiting_for_capacity=chosen is None and tally.matching_full_untried > 0,
        reference_currency=rates.reference,
        eligible_count=len(ranked),
    )


# ------------------------------------------------------------------------------- explaining


def _chosen_rationale(
    case: _Case, chosen: Assessment, ranked: list[Assessment], considered: int
) -> str:
    center = chosen.center
    spec = center.routing_profile.icd.best_match(case.code)
    reviews = spec.text if spec is not None else case.code
    reads = _and_list([language_name(lang) for lang in case.language_order])
    days = center.opinion_turnaround_days
    text = (
        f"Chosen: {center.name} ({country_name(center.country)}): reviews {reviews}, "
        f"reads {reads}, opinion in {days} day{'s' if days != 1 else ''}, "
        f"{chosen.load} of {center.weekly_capacity} places taken this week; "
        f"{considered} centers considered, {len(ranked)} eligible"
    )
    if len(ranked) > 1:
        runner_up = ranked[1]
        why = runner_up.reasons[0].text.split(": ", 1)[1]
        text += f"; next: {runner_up.center.name} ({why})"
    return text + "."


def _where(request: RoutingRequest) -> str:
    destination = request.destination
    if destination.preference is DestinationPreference.UKRAINE:
        where = "in Ukraine"
    elif destination.preference is DestinationPreference.ABROAD:
        where = "abroad"
    else:
        where = "in " + _and_list([country_name(c) for c in destination.countries], "or")
    if not request.cross_border_transfer_allowed and destination.preference is not (
        DestinationPreference.UKRAINE
    ):
        where += " (only Ukraine without consent to cross-border transfer)"
    return where


_SUMMARY = {
    ReasonCode.OUTSIDE_DESTINATION: "is not where the patient asked for",
    ReasonCode.NO_CROSS_BORDER_CONSENT: "is outside Ukraine (no cross-border consent)",
    ReasonCode.NO_CAPACITY: "has no places left this week",
    ReasonCode.PAYER_NOT_ACCEPTED: "does not accept the case's payer",
}


def _summary(reason: Reason) -> str:
    """The reason without its center-specific details, for counting."""
    return _SUMMARY.get(reason.code, reason.text)


def _unroutable_rationale(
    request: RoutingRequest,
    case: _Case,
    unroutable: UnroutableReason,
    tally: _Tally,
    assessments: Sequence[Assessment],
) -> str:
    reads = _and_list([language_name(lang) for lang in case.language_order])
    facts = f"{case.code}, {case.age_group} patient, {_where(request)}, documents in {reads}"
    if unroutable is UnroutableReason.ALL_CENTERS_DECLINED:
        return (
            f"No center chosen: all {tally.matching} centers that match the case ({facts}) "
            f"were already offered it; {len(assessments)} centers considered."
        )
    text = f"No center chosen: none of {len(assessments)} centers considered is eligible ({facts})."
    if tally.matching_full_untried:
        text += (
            f" {tally.matching_full_untried} matching center(s) have no places left this week;"
            " routing may succeed when capacity frees up."
        )
    counts = Counter(_summary(reason) for item in assessments for reason in item.reasons)
    common = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3]
    if common:
        text += " Most frequent reasons: " + "; ".join(f"{t} ({n})" for t, n in common) + "."
    return text


__all__ = [
    "RATIONALE_MAX",
    "Assessment",
    "CenterState",
    "Reason",
    "ReasonCode",
    "RoutingDecision",
    "RoutingRequest",
    "Score",
    "country_name",
    "decide",
    "language_name",
]
