"""Benchmark: partners' routing decisions per second over a registry of 1,000 centers.

Not a test: it prints figures and writes bench/results/partners.json. Needs no stack. In one run,
on one core (a single process, no threads), over the same generated registry and cases:

1. `routing.decide` as the service calls it (centers built once, their routing facts compiled
   on first use and kept), with and without turning each decision into its audit record
   (`as_record()`, which the service stores);
2. the same decision with the centers re-validated from their stored profile before each
   decision (what a service that rebuilds `Center` objects per case pays);
3. a naive baseline in this file: the same rules with nothing precomputed (ICD entries parsed per
   check, languages as lists, babel looked up per reason), checked to choose the same center and
   rank the same way on every case; and the ratio.

The registry is generated from a fixed seed: a realistic mix of Ukrainian, Polish, German,
Austrian, Israeli, Turkish, US, Italian and Spanish centers, of kinds, languages, specialisations,
capacities, loads (some full), paused centers and prices; the cases mix diagnoses, adult and
pediatric patients, destinations, consent, document languages and already tried centers.

    uv run python bench/partners.py [--centers 1000] [--cases 300] [--seconds 3] [--seed 7]

A second section measures one hop over real Kafka on a stack it starts itself: `referrals-partners
consumer` and `relay` run as their own processes (sample registry); `case.ready_for_referral`
events (with their documents' `document.stored`) are published at a fixed rate, and a plain
consumer of the centers' inbox topics times each `referral.offered` from the moment its case was
published (p50, p99; target p99 <= 150 ms). Beside it, in the same run, the floor: one raw
aiokafka produce → consume hop. Skip it with `--no-kafka`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _harness.results import parser, report
from _harness.stats import pct_floor
from babel import Locale
from rich.console import Console

from referrals_common.contracts.intake import Destination
from referrals_partners.registry import Center, ExchangeRates, load_registry, parse_icd_spec
from referrals_partners.routing import CenterState, RoutingRequest, decide

console = Console()
TARGET_DECISIONS_PER_S = 500

# (country, weight, first language, {other language: probability}, currency, price range)
COUNTRIES = [
    ("UA", 30, "uk", {"en": 0.7, "ru": 0.4, "pl": 0.1}, "UAH", (0, 8000)),
    ("PL", 12, "pl", {"en": 0.9, "uk": 0.4, "de": 0.1}, "PLN", (900, 3000)),
    ("DE", 14, "de", {"en": 0.95, "ru": 0.1, "uk": 0.1}, "EUR", (700, 2200)),
    ("AT", 5, "de", {"en": 0.9}, "EUR", (800, 2000)),
    ("IL", 6, "he", {"en": 0.95, "ru": 0.6, "uk": 0.1}, "ILS", (4000, 12000)),
    ("TR", 8, "tr", {"en": 0.8, "ru": 0.3}, "TRY", (20000, 60000)),
    ("US", 13, "en", {"es": 0.3}, "USD", (2500, 6500)),
    ("IT", 6, "it", {"en": 0.85}, "EUR", (700, 2000)),
    ("ES", 6, "es", {"en": 0.85}, "EUR", (700, 2000)),
]
PROGRAMS = {
    "breast": ["C50", "D05"],
    "lung": ["C33-C34"],
    "digestive": ["C15-C26"],
    "gynecologic": ["C51-C58"],
    "urologic": ["C60-C68"],
    "head_neck": ["C00-C14", "C30-C32"],
    "skin": ["C43-C44"],
    "cns": ["C70-C72"],
    "sarcoma": ["C40-C41", "C45-C49"],
    "hematology": ["C81-C96", "D46"],
    "thyroid": ["C73"],
    "leukemia_only": ["C91.0", "C92.0", "C92.1"],
}
PEDIATRIC = ["C22.2", "C40-C41", "C47-C49", "C64", "C69", "C71-C72", "C74", "C91.0", "C92.0"]
KINDS = [
    ("national_cancer_institute", 5),
    ("university_hospital", 30),
    ("regional_cancer_center", 30),
    ("private_clinic", 28),
    ("children_hospital", 7),
]
# (ICD-10 code, weight, pediatric)
DIAGNOSES = [
    ("C50.9", 20, False),
    ("C50.4", 5, False),
    ("C34.1", 12, False),
    ("C18.7", 7, False),
    ("C20", 4, False),
    ("C61", 8, False),
    ("C16.9", 4, False),
    ("C25.0", 4, False),
    ("C56", 4, False),
    ("C53.9", 3, False),
    ("C43.5", 3, False),
    ("C73", 2, False),
    ("C71.9", 3, False),
    ("C83.3", 3, False),
    ("C92.0", 2, False),
    ("D46.9", 1, False),
    ("C02.1", 2, False),
    ("C49.2", 1, False),
    ("C91.0", 3, True),
    ("C71.6", 2, True),
    ("C64", 1, True),
    ("C40.2", 1, True),
    ("C22.2", 1, True),
    ("C38.4", 1, False),
    ("D47.2", 2, False),  # no generated center lists it: the unroutable path
]
RATES = ExchangeRates(
    reference="EUR",
    rates={"EUR": 1, "UAH": 0.021, "PLN": 0.235, "USD": 0.87, "ILS": 0.25, "TRY": 0.021},
)


# ---------------------------------------------------------------------------- the workload


def _weighted(rng: random.Random, items: Sequence[Any], weights: Sequence[float]) -> Any:
    return rng.choices(items, weights=weights, k=1)[0]


def _cancers(rng: random.Random, kind: str) -> list[str]:
    if kind == "children_hospital":
        return rng.sample(PEDIATRIC, rng.randint(4, len(PEDIATRIC)))
    if kind == "national_cancer_institute" or (
        kind == "university_hospital" and rng.random() < 0.3
    ):
        return ["C00-C80", "C81-C96", "D00-D09"]
    count = {"private_clinic": (1, 3), "regional_cancer_center": (2, 5)}.get(kind, (2, 6))
    programs = rng.sample(sorted(PROGRAMS), rng.randint(*count))
    return sorted({entry for program in programs for entry in PROGRAMS[program]})


def generated_center(rng: random.Random, index: int) -> dict[str, Any]:
    """One plausible, invented center as a registry entry."""
    country, _, first, others, currency, prices = _weighted(
        rng, COUNTRIES, [c[1] for c in COUNTRIES]
    )
    kind = _weighted(rng, [k for k, _ in KINDS], [w for _, w in KINDS])
    languages = [first] + [lang for lang, p in others.items() if rng.random() < p]
    ages = ["pediatric"] if kind == "children_hospital" else ["adult"]
    if kind == "university_hospital" and rng.random() < 0.2:
        ages.append("pediatric")
    code = f"bench-{country.lower()}-{index:04d}"
    return {
        "code": code,
        "name": f"Bench Center {country} {index:04d}",
        "country": country,
        "city": f"City {index % 40}",
        "kind": kind,
        "languages": languages,
        "cancers": _cancers(rng, kind),
        "age_groups": ages,
        "weekly_capacity": rng.randint(5, 60),
        "answer_deadline_hours": rng.choice([24, 48, 72]),
        "opinion_turnaround_days": rng.randint(3, 21),
        "price": {"amount": rng.randrange(prices[0], prices[1] + 1, 50), "currency": currency},
        "contact": {"email": f"desk@{code}.bench.example", "phone": f"+1202555{index:04d}"},
        "status": "paused" if rng.random() < 0.05 else "active",
    }


def generated_states(rng: random.Random, n: int) -> list[CenterState]:
    centers = [Center.model_validate(generated_center(rng, i)) for i in range(n)]
    states = []
    for center in centers:
        full = rng.random() < 0.1
        load = center.weekly_capacity if full else rng.randint(0, center.weekly_capacity - 1)
        states.append(CenterState(center, load))
    return states


def _destination(rng: random.Random) -> tuple[Destination, bool, list[str]]:
    """A destination, the cross-border consent and the document languages it leads to."""
    roll = rng.random()
    if roll < 0.3:
        return Destination(preference="ukraine"), rng.random() < 0.5, ["uk"]
    if roll < 0.65:
        languages = rng.choice([["en"], ["en"], ["uk", "en"]])
        return Destination(preference="abroad"), True, languages
    named = rng.sample([c[0] for c in COUNTRIES if c[0] != "UA"], rng.randint(1, 3))
    local = next(c[2] for c in COUNTRIES if c[0] == named[0])
    languages = rng.choice([["en"], sorted({local, "en"}), [local]])
    return Destination(preference="countries", countries=named), True, languages


def generated_cases(
    rng: random.Random, n: int, codes: Sequence[str]
) -> list[tuple[RoutingRequest, frozenset[str]]]:
    cases = []
    for _ in range(n):
        icd10, _, pediatric = _weighted(rng, DIAGNOSES, [d[1] for d in DIAGNOSES])
        destination, consent, languages = _destination(rng)
        request = RoutingRequest(
            icd10=icd10,
            age_group="pediatric" if pediatric else "adult",
            destination=destination,
            cross_border_transfer_allowed=consent,
            document_languages=languages,
        )
        tried = frozenset(rng.sample(list(codes), rng.choice([0, 0, 1, 2, 3])))
        cases.append((request, tried))
    return cases


# --------------------------------------------------------------------------- naive baseline


def naive_decide(
    request: RoutingRequest, centers: Sequence[CenterState], tried: frozenset[str]
) -> list[tuple[str, int | None]]:
    """The same rules with nothing precomputed; returns (code, rank) for every center."""
    english = Locale("en")
    eligible, rejected = [], []
    for state in centers:
        center = state.center
        reasons = []
        if center.status != "active":
            reasons.append("is paused")
        country = center.country
        preference = request.destination.preference
        if (
            (preference == "ukraine" and country != "UA")
            or (preference == "abroad" and country == "UA")
            or (preference == "countries" and country not in request.destination.countries)
        ):
            reasons.append(f"is in {english.territories[country]}")
        if not request.cross_border_transfer_allowed and country != "UA":
            reasons.append(f"is in {english.territories[country]}; no consent")
        if not any(parse_icd_spec(entry).covers(request.icd10) for entry in center.cancers):
            reasons.append(f"does not review {request.icd10}")
        if request.age_group not in center.age_groups:
            reasons.append(f"does not see {request.age_group} patients")
        for lang in request.document_languages:
            if lang not in center.languages:
                reasons.append(f"does not read {english.languages[lang]}")
        if state.load >= center.weekly_capacity:
            reasons.append("has no places left")
        if center.code in tried:
            reasons.append("was already offered this case")
        if reasons:
            rejected.append((center.code, None))
        else:
            price = float(RATES.to_reference(center.price))
            key = (center.opinion_turnaround_days, state.load / center.weekly_capacity, price)
            eligible.append((key, center.code))
    ranked = [(code, rank) for rank, (_, code) in enumerate(sorted(eligible), start=1)]
    return ranked + sorted(rejected)


# ------------------------------------------------------------------------------- measuring


def _rate(run_one: Callable[[int], object], count: int, seconds: float) -> dict[str, float]:
    """Decisions per second: repeated passes over the cases for about `seconds`, best pass."""
    per_pass: list[float] = []
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not per_pass:
        began = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            run_one(i)
            latencies.append(time.perf_counter() - t0)
        per_pass.append(count / (time.perf_counter() - began))
    return {
        "decisions_per_s": round(statistics.median(per_pass), 1),
        "best_pass_decisions_per_s": round(max(per_pass), 1),
        "p50_ms": round(pct_floor(latencies, 0.5) * 1000, 3),
        "p99_ms": round(pct_floor(latencies, 0.99) * 1000, 3),
        "decisions": len(latencies),
    }


def _same_choices(
    states: list[CenterState], cases: list[tuple[RoutingRequest, frozenset[str]]]
) -> int:
    """Check that the naive baseline ranks exactly like `decide`; returns the cases routed."""
    routed = 0
    for request, tried in cases:
        decision = decide(request, states, tried, rates=RATES)
        ours = [(a.code, a.rank) for a in decision.assessments]
        if ours != naive_decide(request, states, tried):
            raise AssertionError(f"the baseline disagrees with decide() on {request!r}")
        routed += decision.chosen is not None
    return routed


def bench_decisions(args: argparse.Namespace) -> dict[str, Any]:
    """Routing decisions per second over a generated registry, against a naive baseline."""
    rng = random.Random(args.seed)
    states = generated_states(rng, args.centers)
    cases = generated_cases(rng, args.cases, [s.center.code for s in states])
    routed = _same_choices(states, cases)
    console.print(
        f"[bold]{args.centers} centers, {args.cases} cases[/]: {routed} routed, "
        f"{args.cases - routed} unroutable; the baseline agrees on every case"
    )
    n = len(cases)

    def service_path(i: int) -> object:
        request, tried = cases[i]
        return decide(request, states, tried, rates=RATES)

    def with_record(i: int) -> object:
        return service_path(i).as_record()  # type: ignore[attr-defined]

    stored = [(s.center.model_dump(mode="json"), s.load) for s in states]

    def cold_centers(i: int) -> object:
        fresh = [CenterState(Center.model_validate(profile), load) for profile, load in stored]
        request, tried = cases[i]
        return decide(request, fresh, tried, rates=RATES)

    def naive(i: int) -> object:
        request, tried = cases[i]
        return naive_decide(request, states, tried)

    results: dict[str, Any] = {}
    for name, run_one, count, seconds in [
        ("decide", service_path, n, args.seconds),
        ("decide_and_as_record", with_record, n, args.seconds),
        ("decide_with_centers_revalidated", cold_centers, min(n, 30), args.seconds / 3),
        ("naive_baseline", naive, n, args.seconds),
    ]:
        results[name] = _rate(run_one, count, seconds)
        console.print(f"  {name:34} {results[name]['decisions_per_s']:>10,.1f} decisions/s")
    decide_rate = results["decide"]["decisions_per_s"]
    results["ratios"] = {
        "decide_vs_naive": round(decide_rate / results["naive_baseline"]["decisions_per_s"], 2),
        "as_record_cost_factor": round(
            decide_rate / results["decide_and_as_record"]["decisions_per_s"], 2
        ),
    }
    results["targets"] = {
        f"decisions_per_s>={TARGET_DECISIONS_PER_S}": decide_rate >= TARGET_DECISIONS_PER_S
    }
    results["parameters"] = {
        "centers": args.centers,
        "cases": args.cases,
        "routed_cases": routed,
        "seconds": args.seconds,
        "seed": args.seed,
        "sample_seed_centers": len(load_registry().centers),
    }
    return results


async def _hop(bootstrap: str, env: dict[str, str], tmp: Path, args: argparse.Namespace) -> dict:
    import asyncio
    import os
    import subprocess
    import sys
    import uuid
    from datetime import UTC, datetime

    from _harness.stack import service
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from devstack.process import stop_group
    from referrals_common.contracts import (
        CaseReadyForReferral,
        DocumentStored,
        new_event,
        topics,
    )
    from referrals_common.messaging.kafka import ensure_topics

    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)
    await ensure_topics(bootstrap, ["bench.floor"], with_dead_letters=False)
    run_env = {**os.environ, **env}
    subprocess.run(
        [sys.executable, "-m", "referrals_partners.cli", "load-seed"], env=run_env, check=True
    )
    procs = [
        service("partners", role, run_env, tmp / f"partners-{role}.log")
        for role in ("consumer", "relay")
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    inbox = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-centers-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="latest",
        metadata_max_age_ms=1000,
    )
    await producer.start()
    await inbox.start()
    inbox.subscribe(pattern=r"^referrals\.partner-inbox\..*\.v1$")
    published: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def watch() -> None:
        while True:
            for records in (await inbox.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    subject = json.loads(record.value)["subject"]
                    arrived.setdefault(subject, now)

    watcher = asyncio.create_task(watch())

    async def one_case(index: int) -> None:
        case_id = uuid.uuid4()
        docs = []
        for kind in ("discharge_summary", "pathology_report"):
            doc = uuid.uuid4()
            docs.append(doc)
            event = new_event(
                DocumentStored(
                    case_id=case_id,
                    document_id=doc,
                    kind=kind,
                    media_type="application/pdf",
                    size_bytes=50_000,
                    sha256=uuid.uuid4().hex * 2,
                    object_key=f"cases/{case_id}/{doc}",
                    stored_at=datetime.now(UTC),
                )
            )
            await producer.send_and_wait(
                topics.DOCUMENTS, event.to_json(), key=str(case_id).encode()
            )
        ready = new_event(
            CaseReadyForReferral(
                case_id=case_id,
                clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
                destination={"preference": "abroad"},
                cross_border_transfer_allowed=True,
                document_ids=docs,
                document_languages=["en"],
            )
        )
        published[str(case_id)] = time.perf_counter()
        await producer.send_and_wait(topics.CASES, ready.to_json(), key=str(case_id).encode())

    try:
        await asyncio.sleep(8)  # the consumer joins its group; the inbox subscription settles
        for i in range(5):  # warm-up
            await one_case(i)
        await asyncio.sleep(3)
        published.clear()
        arrived.clear()
        interval = 1.0 / args.rate
        start = time.perf_counter()
        for i in range(args.hop_cases):
            await one_case(i)
            delay = start + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        deadline = time.perf_counter() + 30
        while len([c for c in published if c in arrived]) < len(published):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.1)
        hops = [(arrived[c] - published[c]) * 1000 for c in published if c in arrived]
        # The floor: one raw produce -> consume hop on this broker, same run.
        floor_consumer = AIOKafkaConsumer(
            "bench.floor",
            bootstrap_servers=bootstrap,
            group_id=f"bench-floor-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",  # a fresh topic: nothing is skipped
        )
        await floor_consumer.start()
        while not floor_consumer.assignment():
            await floor_consumer.getmany(timeout_ms=100)
        floor = []
        for _ in range(200):
            sent = time.perf_counter()
            await producer.send_and_wait("bench.floor", b"x")
            for _ in range(50):
                if await floor_consumer.getmany(timeout_ms=100):
                    floor.append((time.perf_counter() - sent) * 1000)
                    break
        await floor_consumer.stop()
    finally:
        watcher.cancel()
        await inbox.stop()
        await producer.stop()
        for proc in procs:
            stop_group(proc.pid)
    return {
        "cases": len(published),
        "offered": len(hops),
        "rate_per_second": args.rate,
        "p50_ms": round(statistics.median(hops), 1),
        "p99_ms": round(pct_floor(hops, 0.99), 1),
        "floor_p50_ms": round(statistics.median(floor), 2),
        "floor_p99_ms": round(pct_floor(floor, 0.99), 2),
    }


def bench_hop(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from _harness.stack import QUIET, own_stack

    with own_stack("bench-partners-", ("partners",)) as (tmp, info):
        env = {
            "REFERRALS_PARTNERS_POSTGRES__DSN": info.database_dsns["partners"],
            "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": info.kafka_bootstrap,
            **QUIET,
        }
        result = asyncio.run(_hop(info.kafka_bootstrap, env, tmp, args))
    console.print(
        f"hop case.ready_for_referral → referral.offered: {result['offered']}/{result['cases']} "
        f"offered at {args.rate}/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"(target p99 <= 150 ms); raw aiokafka hop p50 {result['floor_p50_ms']} ms, "
        f"p99 {result['floor_p99_ms']} ms"
    )
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"decisions": bench_decisions(args)}
    if not args.no_kafka:
        results["hop"] = bench_hop(args)
    return results


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--centers", type=int, default=1000)
    cli.add_argument("--cases", type=int, default=300)
    cli.add_argument("--seconds", type=float, default=3.0)
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument("--no-kafka", action="store_true", help="skip the hop over real Kafka")
    cli.add_argument("--hop-cases", type=int, default=200)
    cli.add_argument("--rate", type=float, default=20.0, help="cases per second for the hop")
    report("partners.json", measure(cli.parse_args()))


if __name__ == "__main__":
    main()
