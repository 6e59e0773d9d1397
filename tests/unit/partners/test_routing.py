"""Routing as a specification: who is eligible and why not, how the eligible are ranked, what the
decision says, and when no center is left."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from referrals_common.contracts import UnroutableReason
from referrals_common.contracts.intake import (
    AgeGroup,
    CaseReadyForReferral,
    ClinicalSummary,
    ReferralReason,
)
from referrals_partners.registry import load_registry
from referrals_partners.routing import (
    RATIONALE_MAX,
    CenterState,
    ReasonCode,
    RoutingRequest,
    country_name,
    decide,
    language_name,
)

from .helpers import RATES, center, destination, request, state

pytestmark = pytest.mark.unit
R = ReasonCode


def reasons_of(single: CenterState, req: RoutingRequest, tried: tuple[str, ...] = ()) -> tuple:
    """The reason codes against the one center, () when it is eligible."""
    decision = decide(req, [single], tried, rates=RATES)
    item = decision.assessment(single.center.code)
    assert item.eligible == (decision.chosen is not None)
    return tuple(reason.code for reason in item.reasons)


def check(single: CenterState, req: RoutingRequest, expected: tuple, tried=()) -> None:
    assert reasons_of(single, req, tried) == expected


# ------------------------------------------------------------------------------ destination

DESTINATIONS = [
    pytest.param("UA", destination("ukraine"), True, (), id="ukraine-accepts-ua"),
    pytest.param("DE", destination("ukraine"), True, (R.OUTSIDE_DESTINATION,), id="ukraine-not-de"),
    pytest.param("DE", destination("abroad"), True, (), id="abroad-accepts-de"),
    pytest.param("UA", destination("abroad"), True, (R.OUTSIDE_DESTINATION,), id="abroad-not-ua"),
    pytest.param("AT", destination("countries", "DE", "AT"), True, (), id="named-accepts-at"),
    pytest.param(
        "PL",
        destination("countries", "DE", "AT"),
        True,
        (R.OUTSIDE_DESTINATION,),
        id="named-not-pl",
    ),
    pytest.param(
        "UA", destination("countries", "DE"), True, (R.OUTSIDE_DESTINATION,), id="named-not-ua"
    ),
    pytest.param("UA", destination("ukraine"), False, (), id="no-consent-ukraine-ua"),
    pytest.param(
        "UA", destination("countries", "UA", "PL"), False, (), id="no-consent-named-ua-still-ok"
    ),
    pytest.param(
        "PL",
        destination("countries", "UA", "PL"),
        False,
        (R.NO_CROSS_BORDER_CONSENT,),
        id="no-consent-named-pl-refused",
    ),
    pytest.param(
        "DE", destination("abroad"), False, (R.NO_CROSS_BORDER_CONSENT,), id="no-consent-abroad-de"
    ),
    pytest.param(
        "DE",
        destination("ukraine"),
        False,
        (R.OUTSIDE_DESTINATION, R.NO_CROSS_BORDER_CONSENT),
        id="no-consent-ukraine-de-both-reasons",
    ),
]


@pytest.mark.parametrize(("country", "where", "consent", "expected"), DESTINATIONS)
def test_destination(country: str, where: Any, consent: bool, expected: tuple) -> None:
    single = state(country=country, languages=["uk", "de", "pl", "en"])
    check(single, request(destination=where, cross_border_transfer_allowed=consent), expected)


# ---------------------------------------------------------------------------------- ICD-10

ICD = [
    pytest.param(["C50"], "C50.9", True, id="category-covers-subcode"),
    pytest.param(["C50"], "C50", True, id="category-covers-itself"),
    pytest.param(["C50"], "C51.0", False, id="category-not-next-category"),
    pytest.param(["C91.0"], "C91.0", True, id="subcode-exact"),
    pytest.param(["C91.0"], "C91.00", True, id="subcode-covers-extension"),
    pytest.param(["C91.0"], "C91.1", False, id="subcode-not-sibling"),
    pytest.param(["C91.0"], "C91", False, id="subcode-not-bare-category"),
    pytest.param(["C91.0"], "C91.10", False, id="subcode-not-sibling-extension"),
    pytest.param(["C00-C14"], "C00.0", True, id="range-first-category"),
    pytest.param(["C00-C14"], "C14.8", True, id="range-last-category"),
    pytest.param(["C00-C14"], "C14", True, id="range-last-category-bare"),
    pytest.param(["C00-C14"], "C07", True, id="range-inside"),
    pytest.param(["C00-C14"], "C15.0", False, id="range-after-last"),
    pytest.param(["C10-C14"], "C09.9", False, id="range-before-first"),
    pytest.param(["C96-D01"], "D00.1", True, id="range-across-letters"),
    pytest.param(["C96-D01"], "C95.0", False, id="range-across-letters-before"),
    pytest.param(["D37-D48"], "D46.9", True, id="range-uncertain-behaviour"),
    pytest.param(["D37-D48"], "D49", False, id="range-uncertain-behaviour-after"),
    pytest.param(["C34", "C91.0", "C00-C14"], "C91.0", True, id="several-entries-subcode"),
    pytest.param(["C34", "C91.0", "C00-C14"], "C02.1", True, id="several-entries-range"),
    pytest.param(["C34", "C91.0", "C00-C14"], "C50.9", False, id="several-entries-none"),
]


@pytest.mark.parametrize(("cancers", "code", "reviews"), ICD)
def test_diagnosis(cancers: list[str], code: str, reviews: bool) -> None:
    expected = () if reviews else (R.DIAGNOSIS_NOT_REVIEWED,)
    check(state(cancers=cancers), request(icd10=code), expected)


# ------------------------------------------------------------------------------- age group

AGES = [
    pytest.param(["adult"], "adult", True, id="adult-center-adult"),
    pytest.param(["adult"], "pediatric", False, id="adult-center-child"),
    pytest.param(["pediatric"], "adult", False, id="children-center-adult"),
    pytest.param(["pediatric"], "pediatric", True, id="children-center-child"),
    pytest.param(["adult", "pediatric"], "pediatric", True, id="both-child"),
    pytest.param(["adult", "pediatric"], "adult", True, id="both-adult"),
]


@pytest.mark.parametrize(("ages", "age", "sees"), AGES)
def test_age_group(ages: list[str], age: str, sees: bool) -> None:
    expected = () if sees else (R.AGE_GROUP_NOT_SEEN,)
    check(state(age_groups=ages), request(age_group=age), expected)


# ------------------------------------------------------------------------------- languages

LANGUAGES = [
    pytest.param(["de", "en"], ["de", "en"], (), id="reads-both"),
    pytest.param(["uk", "en", "ru"], ["uk", "en"], (), id="reads-both-and-more"),
    pytest.param(["en"], ["uk", "en"], ("uk",), id="misses-ukrainian"),
    pytest.param(["uk"], ["uk", "en"], ("en",), id="misses-english"),
    pytest.param(["de"], ["en"], ("en",), id="english-not-assumed"),
    pytest.param(["en"], ["uk", "de"], ("uk", "de"), id="misses-both-in-document-order"),
    pytest.param(["en"], ["de", "uk"], ("de", "uk"), id="misses-both-other-order"),
    pytest.param(["en"], ["en"], (), id="english-read"),
]


@pytest.mark.parametrize(("reads", "documents", "missing"), LANGUAGES)
def test_languages(reads: list[str], documents: list[str], missing: tuple[str, ...]) -> None:
    single = state(languages=reads)
    decision = decide(request(document_languages=documents), [single], rates=RATES)
    reasons = decision.assessment("center-a").reasons
    assert [r.code for r in reasons] == [R.LANGUAGE_NOT_READ] * len(missing)
    assert tuple(r.subject for r in reasons) == missing
    assert [r.text for r in reasons] == [f"does not read {language_name(m)}" for m in missing]


# -------------------------------------------------------------------- capacity, status, tried

OTHERS = [
    pytest.param({"load": 9}, (), (), id="one-place-left"),
    pytest.param({"load": 0}, (), (), id="empty"),
    pytest.param({"load": 10}, (), (R.NO_CAPACITY,), id="full"),
    pytest.param({"load": 12}, (), (R.NO_CAPACITY,), id="over-full"),
    pytest.param({"status": "paused"}, (), (R.PAUSED,), id="paused"),
    pytest.param({}, ("center-a",), (R.ALREADY_TRIED,), id="already-tried"),
    pytest.param({}, ("center-b",), (), id="another-center-tried"),
    pytest.param(
        {"status": "paused", "load": 10, "languages": ["de"], "cancers": ["C34"]},
        ("center-a",),
        (R.PAUSED, R.DIAGNOSIS_NOT_REVIEWED, R.LANGUAGE_NOT_READ, R.NO_CAPACITY, R.ALREADY_TRIED),
        id="every-reason-listed-in-order",
    ),
]


@pytest.mark.parametrize(("fields", "tried", "expected"), OTHERS)
def test_capacity_status_and_tried(fields: dict, tried: tuple, expected: tuple) -> None:
    load = fields.pop("load", 0)
    check(state(load=load, **fields), request(), expected, tried)


# --------------------------------------------------------------------------------- ranking

RANKINGS = [
    pytest.param(
        [("a", 0, {"opinion_turnaround_days": 10}), ("b", 0, {"opinion_turnaround_days": 7})],
        ["b", "a"],
        "opinion in 10 days, the chosen center's in 7",
        id="faster-opinion-first",
    ),
    pytest.param(
        [
            (
                "a",
                7,
                {
                    "opinion_turnaround_days": 7,
                    "weekly_capacity": 50,
                    "price": {"amount": 900, "currency": "EUR"},
                },
            ),
            (
                "b",
                0,
                {
                    "opinion_turnaround_days": 8,
                    "weekly_capacity": 50,
                    "price": {"amount": 100, "currency": "EUR"},
                },
            ),
        ],
        ["a", "b"],
        "opinion in 8 days, the chosen center's in 7",
        id="turnaround-beats-load-and-price",
    ),
    pytest.param(
        [("a", 3, {"weekly_capacity": 5}), ("b", 5, {"weekly_capacity": 20})],
        ["b", "a"],
        "same turnaround, busier this week (3 of 5 places taken, the chosen center 5 of 20)",
        id="relative-load-not-absolute",
    ),
    pytest.param(
        [
            ("a", 2, {"weekly_capacity": 10, "price": {"amount": 100, "currency": "EUR"}}),
            ("b", 1, {"weekly_capacity": 10, "price": {"amount": 5000, "currency": "EUR"}}),
        ],
        ["b", "a"],
        "same turnaround, busier this week (2 of 10 places taken, the chosen center 1 of 10)",
        id="load-beats-price",
    ),
    pytest.param(
        [
            ("a", 0, {"price": {"amount": 1000, "currency": "EUR"}}),
            ("b", 0, {"price": {"amount": 40000, "currency": "UAH"}}),
        ],
        ["b", "a"],
        "same turnaround and load, higher price (about 1,000.00 EUR, the chosen center 800.00 EUR)",
        id="price-compared-in-reference-currency",
    ),
    pytest.param(
        [
            ("a", 0, {"price": {"amount": 700, "currency": "USD"}}),
            ("b", 0, {"price": {"amount": 2400, "currency": "PLN"}}),
        ],
        ["b", "a"],
        "same turnaround and load, higher price (about 630.00 EUR, the chosen center 600.00 EUR)",
        id="price-two-foreign-currencies",
    ),
    pytest.param(
        [("b", 0, {}), ("a", 0, {})],
        ["a", "b"],
        "same turnaround, load and price; the tie is broken by center code",
        id="code-breaks-full-tie",
    ),
    pytest.param(
        [("a", 2, {"weekly_capacity": 10}), ("b", 4, {"weekly_capacity": 20})],
        ["a", "b"],
        "same turnaround, load and price; the tie is broken by center code",
        id="equal-ratio-is-a-tie",
    ),
]


@pytest.mark.parametrize(("centers", "order", "why_second"), RANKINGS)
def test_ranking(centers: list, order: list[str], why_second: str) -> None:
    states = [state(code, load, **fields) for code, load, fields in centers]
    decision = decide(request(), states, rates=RATES)
    assert [item.code for item in decision.eligible] == order
    assert [item.rank for item in decision.eligible] == [1, 2]
    assert decision.chosen is not None
    assert decision.chosen.code == order[0]
    first, second = decision.eligible
    assert first.reasons == ()
    assert [r.code for r in second.reasons] == [R.RANKED_LOWER]
    assert second.reasons[0].text == f"ranked 2 of 2: {why_second}"
    assert first.score is not None
    assert second.score is not None
    assert first.score < second.score


def test_score_parts() -> None:
    states = [state("a", 3, weekly_capacity=12, price={"amount": 40000, "currency": "UAH"})]
    score = decide(request(), states, rates=RATES).eligible[0].score
    assert score is not None
    assert score.turnaround_days == 7
    assert score.load_ratio == pytest.approx(0.25)
    assert score.price == 800.0
    assert score.code == "a"


SAMPLE = load_registry()


def varied_registry() -> list[CenterState]:
    """The sample centers plus twins that tie with them on everything but the code."""
    registry = SAMPLE
    states = [CenterState(c, i % 4) for i, c in enumerate(registry.centers)]
    for i, base in enumerate(registry.centers):
        twin = base.model_copy(update={"code": f"{base.code}-twin"})
        states.append(CenterState(twin, i % 4))
    return states


@pytest.mark.parametrize("seed", range(5))
def test_input_order_does_not_matter(seed: int) -> None:
    states = varied_registry()
    req = request(document_languages=["en"], destination=destination("abroad"))
    expected = decide(req, states, ["sample-oncology-hospital-istanbul"], rates=SAMPLE.currency)
    shuffled = states[:]
    random.Random(seed).shuffle(shuffled)
    decision = decide(req, shuffled, {"sample-oncology-hospital-istanbul"}, rates=SAMPLE.currency)
    assert len(decision.eligible) > 4
    assert decision.chosen == expected.chosen
    assert decision.rationale == expected.rationale
    assert [(a.code, a.rank, a.reasons) for a in decision.assessments] == [
        (a.code, a.rank, a.reasons) for a in expected.assessments
    ]
    assert decision.as_record() == expected.as_record()


def test_twins_tie_on_everything_but_code() -> None:
    decision = decide(request(), varied_registry(), rates=SAMPLE.currency)
    first, second = decision.eligible[:2]
    assert second.code == f"{first.code}-twin"
    assert "the tie is broken by center code" in second.reasons[0].text


# ------------------------------------------------------------------------------ explaining


def demo_request(**fields: Any) -> RoutingRequest:
    values = {
        "destination": destination("countries", "DE"),
        "document_languages": ["de", "en"],
    }
    return request(**{**values, **fields})


def test_demo_case_routes_to_two_german_centers_in_turn() -> None:
    """The demo: C50.9 adult for Germany, documents in German and English."""
    registry = SAMPLE
    states = [CenterState(c, 3) for c in registry.centers]
    first = decide(demo_request(), states, rates=registry.currency)
    assert [a.center.country for a in first.eligible] == ["DE", "DE"]
    assert first.chosen is not None
    assert first.chosen.code == "sample-breast-center-berlin"
    second = decide(demo_request(), states, [first.chosen.code], rates=registry.currency)
    assert second.chosen is not None
    assert second.chosen.code == "sample-university-oncology-munich"
    tried = [first.chosen.code, second.chosen.code]
    third = decide(demo_request(), states, tried, rates=registry.currency)
    assert third.chosen is None
    assert third.unroutable is UnroutableReason.ALL_CENTERS_DECLINED


def test_rationale_of_a_choice() -> None:
    states = [
        state("berlin", 3, name="Sample Breast Center Berlin", weekly_capacity=20),
        state("munich", 0, name="Sample Oncology Munich", opinion_turnaround_days=10),
        state("kyiv", 0, country="UA", languages=["uk", "en"]),
        state("vienna", 0, country="AT"),
    ]
    decision = decide(demo_request(), states, rates=RATES)
    assert decision.rationale == (
        "Chosen: Sample Breast Center Berlin (Germany): reviews C50, reads German and English, "
        "opinion in 7 days, 3 of 20 places taken this week; 4 centers considered, 2 eligible; "
        "next: Sample Oncology Munich (opinion in 10 days, the chosen center's in 7)."
    )


def test_rationale_names_the_narrowest_matching_entry() -> None:
    states = [state("a", cancers=["C00-C80", "C50", "C50.9"])]
    assert "reviews C50.9," in decide(request(), states, rates=RATES).rationale
    states = [state("a", cancers=["C00-C80"])]
    assert "reviews C00-C80," in decide(request(), states, rates=RATES).rationale


def test_reason_texts_name_languages_countries_and_codes() -> None:
    states = [
        state("chosen"),
        state("poland", country="PL", languages=["pl", "en"]),
        state("no-german", languages=["en"]),
        state("no-breast", cancers=["C34"]),
        state("children", age_groups=["pediatric"], kind="children_hospital"),
        state("full", 10),
        state("paused", status="paused"),
        state("tried"),
    ]
    decision = decide(demo_request(), states, ["tried"], rates=RATES)
    texts = {a.code: [r.text for r in a.reasons] for a in decision.assessments}
    assert texts == {
        "chosen": [],
        "poland": [
            "is in Poland, not in a country the patient named (Germany)",
            "does not read German",
        ],
        "no-german": ["does not read German"],
        "no-breast": ["does not review C50.9"],
        "children": ["does not see adult patients"],
        "full": ["has no places left this week (10 of 10 taken)"],
        "paused": ["is paused"],
        "tried": ["was already offered this case"],
    }


@pytest.mark.parametrize(
    ("where", "consent", "country", "text"),
    [
        pytest.param(
            destination("ukraine"),
            True,
            "DE",
            "is in Germany; the patient asked for a center in Ukraine",
            id="ukraine",
        ),
        pytest.param(
            destination("abroad"),
            True,
            "UA",
            "is in Ukraine; the patient asked for a center abroad",
            id="abroad",
        ),
        pytest.param(
            destination("countries", "DE", "AT"),
            True,
            "TR",
            "is in Türkiye, not in a country the patient named (Austria or Germany)",
            id="named",
        ),
        pytest.param(
            destination("abroad"),
            False,
            "US",
            "is in United States; the patient has not consented to cross-border transfer",
            id="no-consent",
        ),
    ],
)
def test_destination_reason_texts(where: Any, consent: bool, country: str, text: str) -> None:
    single = state(country=country, languages=["uk", "en"])
    req = request(destination=where, cross_border_transfer_allowed=consent)
    reasons = decide(req, [single], rates=RATES).assessment("center-a").reasons
    assert [r.text for r in reasons] == [text]
    assert reasons[0].subject == country


def test_babel_names() -> None:
    assert language_name("uk") == "Ukrainian"
    assert language_name("he") == "Hebrew"
    assert country_name("DE") == "Germany"
    assert country_name("UA") == "Ukraine"
    assert language_name("zz") == "zz"


def test_rationale_fits_the_event_even_with_long_names() -> None:
    long = "Sample " + "Very Long Name " * 13
    states = [state(f"c{i}", name=long[:200], opinion_turnaround_days=7 + i) for i in range(3)]
    decision = decide(request(), states, rates=RATES)
    assert decision.chosen is not None
    assert 0 < len(decision.rationale) <= RATIONALE_MAX
    unroutable = decide(request(icd10="C91.0", age_group="pediatric"), states, rates=RATES)
    assert 0 < len(unroutable.rationale) <= RATIONALE_MAX


def test_record_is_json_and_complete() -> None:
    states = [state("a"), state("b", opinion_turnaround_days=9), state("c", languages=["de"])]
    decision = decide(request(), states, rates=RATES)
    record = json.loads(json.dumps(decision.as_record()))
    assert record["chosen"] == "a"
    assert record["unroutable"] is None
    assert record["considered"] == 3
    assert record["eligible"] == 2
    assert [c["code"] for c in record["ranked"]] == ["a", "b"]
    assert record["ranked"][1]["reasons"][0]["code"] == "ranked_lower"
    assert record["ranked"][0]["score"] == {
        "turnaround_days": 7,
        "load_ratio": 0.0,
        "price": 1000.0,
        "code": "a",
    }
    assert record["not_eligible"] == {"c": ["language_not_read:en"]}
    assert record["reasons"] == {"language_not_read:en": "does not read English"}
    assert "not_eligible" not in decision.as_record(include_ineligible=False)


# ------------------------------------------------------------------------- nothing eligible


def test_nothing_reviews_the_diagnosis() -> None:
    states = [state("a", cancers=["C34"]), state("b", cancers=["C61"], languages=["de"])]
    decision = decide(request(), states, rates=RATES)
    assert decision.chosen is None
    assert decision.unroutable is UnroutableReason.NO_ELIGIBLE_CENTER
    assert not decision.waiting_for_capacity
    assert decision.eligible == ()
    assert decision.rationale.startswith(
        "No center chosen: none of 2 centers considered is eligible (C50.9, adult patient, "
        "abroad, documents in English)."
    )
    assert "Most frequent reasons: does not review C50.9 (2); does not read English (1)." in (
        decision.rationale
    )


def test_every_matching_center_tried() -> None:
    states = [state("a"), state("b"), state("c", cancers=["C34"])]
    decision = decide(request(), states, ["a", "b"], rates=RATES)
    assert decision.chosen is None
    assert decision.unroutable is UnroutableReason.ALL_CENTERS_DECLINED
    assert not decision.waiting_for_capacity
    assert "all 2 centers that match the case" in decision.rationale
    assert "were already offered it" in decision.rationale


def test_matching_centers_full() -> None:
    states = [state("a", 10), state("b", 3, weekly_capacity=3), state("c", cancers=["C34"])]
    decision = decide(request(), states, rates=RATES)
    assert decision.chosen is None
    assert decision.unroutable is UnroutableReason.NO_ELIGIBLE_CENTER
    assert decision.waiting_for_capacity
    assert "2 matching center(s) have no places left this week" in decision.rationale


def test_one_tried_one_full_waits_for_capacity() -> None:
    decision = decide(request(), [state("a"), state("b", 10)], ["a"], rates=RATES)
    assert decision.unroutable is UnroutableReason.NO_ELIGIBLE_CENTER
    assert decision.waiting_for_capacity


def test_tried_and_full_counts_as_tried() -> None:
    decision = decide(request(), [state("a", 10)], ["a"], rates=RATES)
    assert decision.unroutable is UnroutableReason.ALL_CENTERS_DECLINED
    assert not decision.waiting_for_capacity


def test_empty_registry() -> None:
    decision = decide(request(), [], rates=RATES)
    assert decision.chosen is None
    assert decision.unroutable is UnroutableReason.NO_ELIGIBLE_CENTER
    assert decision.considered == 0


# ------------------------------------------------------------------------------ the inputs


def test_duplicate_codes_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        decide(request(), [state("a"), state("a", 1)], rates=RATES)


def test_negative_load_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        state("a", -1)


def test_currency_without_rate_refused() -> None:
    single = state("a", price={"amount": 10, "currency": "CHF"})
    with pytest.raises(ValueError, match="no exchange rate for CHF"):
        decide(request(), [single], rates=RATES)


def test_request_from_ready_event() -> None:
    event = CaseReadyForReferral(
        case_id=uuid.uuid4(),
        clinical=ClinicalSummary(
            icd10="C91.0", age_group=AgeGroup.PEDIATRIC, reasons=[ReferralReason.OTHER]
        ),
        destination=destination("countries", "PL"),
        cross_border_transfer_allowed=True,
        document_ids=[uuid.uuid4()],
        document_languages=["pl", "en"],
    )
    assert RoutingRequest.from_ready_event(event) == request(
        icd10="C91.0",
        age_group="pediatric",
        destination=destination("countries", "PL"),
        document_languages=["pl", "en"],
    )


def test_a_copied_center_is_routed_by_its_own_fields() -> None:
    original = center("a", languages=["de"])
    assert "en" not in original.routing_profile.languages
    copy = original.model_copy(update={"languages": ["de", "en"]})
    assert copy.routing_profile.languages == {"de", "en"}
    assert decide(request(), [CenterState(copy)], rates=RATES).chosen == copy


# ------------------------------------------------------------------------------ who pays

PAYERS = [
    pytest.param(None, {}, (), id="no-payer-not-checked"),
    pytest.param({"kind": "self_pay"}, {}, (), id="self-pay-by-default"),
    pytest.param({"kind": "charity"}, {}, (), id="charity-by-default"),
    pytest.param(
        {"kind": "self_pay"}, {"self_pay": False}, (R.PAYER_NOT_ACCEPTED,), id="no-self-pay"
    ),
    pytest.param({"kind": "charity"}, {"charity": False}, (R.PAYER_NOT_ACCEPTED,), id="no-charity"),
    pytest.param(
        {"kind": "insurer", "insurer": "allianz-care"},
        {},
        (R.PAYER_NOT_ACCEPTED,),
        id="no-insurer-by-default",
    ),
    pytest.param(
        {"kind": "insurer", "insurer": "allianz-care"},
        {"insurers": ["allianz-care"]},
        (),
        id="insurer-with-agreement",
    ),
    pytest.param(
        {"kind": "insurer", "insurer": "axa-health"},
        {"insurers": ["allianz-care"]},
        (R.PAYER_NOT_ACCEPTED,),
        id="another-insurer",
    ),
]


@pytest.mark.parametrize(("payer", "accepted", "expected"), PAYERS)
def test_a_center_must_accept_the_cases_payer(payer, accepted, expected):
    check(state(payers=accepted), request(payer=payer), expected)


def test_the_payer_reason_names_it_and_an_unroutable_rationale_says_so():
    req = request(payer={"kind": "insurer", "insurer": "axa-health"})
    decision = decide(req, [state("center-a"), state("center-b")], rates=RATES)
    assert decision.chosen is None
    assert decision.unroutable is UnroutableReason.PAYER_NOT_ACCEPTED
    (reason,) = decision.assessment("center-a").reasons
    assert reason.key == "payer_not_accepted:insurer/axa-health"
    assert "axa-health" in reason.text
    assert "does not accept the case's payer (2)" in decision.rationale


def test_the_payer_is_the_unroutable_reason_only_when_it_alone_stands_in_the_way():
    insured = request(payer={"kind": "insurer", "insurer": "axa-health"})
    # One center would match but for the payer, the other does not read the documents either:
    # the payer is what stands in the way.
    mixed = [state("center-a"), state("center-b", languages=["pl"])]
    assert decide(insured, mixed, rates=RATES).unroutable is UnroutableReason.PAYER_NOT_ACCEPTED
    # No center would match even with the payer accepted: the payer is not the reason.
    elsewhere = [state("center-a", languages=["pl"])]
    assert decide(insured, elsewhere, rates=RATES).unroutable is (
        UnroutableReason.NO_ELIGIBLE_CENTER
    )
    # A center that accepts the payer is only full this week: waiting, not the payer.
    full = [state("center-a"), state("center-b", load=20, payers={"insurers": ["axa-health"]})]
    decision = decide(insured, full, rates=RATES)
    assert decision.unroutable is UnroutableReason.NO_ELIGIBLE_CENTER
    assert decision.waiting_for_capacity


def test_an_insurer_is_named_exactly_when_an_insurer_pays():
    from pydantic import ValidationError

    from referrals_common.contracts.intake import Payer

    for wrong in ({"kind": "insurer"}, {"kind": "self_pay", "insurer": "allianz-care"}):
        with pytest.raises(ValidationError):
            Payer.model_validate(wrong)
