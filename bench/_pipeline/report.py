"""The pipeline benchmark's results: the JSON (bench/results/pipeline.json), the plot
(pipeline.png) and the tables printed."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from _harness.platform_metrics import lag_columns
from _harness.stats import ratio
from rich.console import Console
from rich.table import Table

console = Console()


class Bench(Protocol):
    """What the report reads of a pipeline run (pipeline.py's `Bench`), without importing it."""

    chain: Any
    floor_seen: Any
    front: Any
    handlers: Any
    lag: Any
    offered: Any
    runs: Any
    sampler: Any
    staging: Any
    staging_staged: Any
    windows: Any

    def phase_result(self, name: str) -> Any: ...


TARGET_CASES_PER_S = 50.0
TARGET_P99_S = 2.0


def build_results(
    bench: Bench, floor: dict[str, Any], args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, Any]:
    fixed, maxed = bench.phase_result("fixed_rate"), bench.phase_result("max_rate")
    staged = bench.phase_result("staged_max_rate")
    lat_f, lat_m = fixed["latency_submit_to_offered"], maxed["latency_submit_to_offered"]
    lat_s = staged["latency_submit_to_offered"]
    floor_f, floor_m = floor["fixed_rate"]["latency"], floor["max_rate"]["latency"]
    busiest = sorted(
        maxed.get("resources", {}).get("processes", {}).items(),
        key=lambda kv: -kv[1]["cores"],
    )
    t0 = bench.windows["fixed_rate"][0]
    cases = []
    for phase in ("fixed_rate", "staged_max_rate", "max_rate"):
        for r in bench.runs[phase]:
            if r.case_id in bench.offered and r.submitted:
                cases.append(
                    [
                        phase,
                        round(r.submitted - t0, 3),
                        round(bench.offered[r.case_id] - r.submitted, 4),
                    ]
                )
    for phase in ("floor_fixed_rate", "floor_max_rate"):
        for r in bench.runs[phase]:
            if r.case_id in bench.floor_seen:
                cases.append(
                    [
                        phase,
                        round(r.submitted - t0, 3),
                        round(bench.floor_seen[r.case_id] - r.submitted, 4),
                    ]
                )
    cores_t, cores = bench.sampler.cores_series(step=2.0)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
        "parameters": {
            "cases_per_phase": args.cases,
            "rate_per_s": args.rate,
            "clients": args.clients,
            "phase1": args.phase1,
            "lead_s": args.lead if args.phase1 == "lead" else None,
            "warmup_cases": args.warmup,
            "document_variants": args.variants,
            "seed": args.seed,
            "destination": "DE",
            "documents_per_case": 3,
        },
        "hops": {
            "count": 4,
            "path": [
                "intake API → outbox → intake relay → case.submitted (referrals.cases.v1) → "
                "translation consumer",
                "translation → outbox → translation relay → document.language_accepted x3 "
                "(referrals.language-checks.v1) → intake consumer",
                "intake → outbox → intake relay → case.ready_for_referral (referrals.cases.v1) "
                "→ partners consumer",
                "partners → outbox → partners relay → referral.offered "
                "(referrals.partner-inbox.<center>.v1) → center (the benchmark's reader)",
            ],
            "floor": "driver → hop0 → hop 1 (x3) → hop1 → hop 2 (1 after the 3rd) → hop2 → "
            "hop 3 → hop3 → reader; raw aiokafka, a consumer group and an idempotent acks=all "
            "producer per hop, offsets committed per batch, no database",
        },
        "chain_of_one_warm_up_case": bench.chain,
        "idle": {
            "resources": bench.sampler.window(*bench.windows["idle"])
            if "idle" in bench.windows
            else {},
            "consumer_handlers": bench.handlers.get("idle", {}),
        },
        "staging_before_phase_1": bench.staging,
        "staging_before_phase_2": bench.staging_staged,
        "pipeline": {"fixed_rate": fixed, "staged_max_rate": staged, "max_rate": maxed},
        "front_end_retries_after_transport_errors": bench.front.retries,
        "floor": floor,
        "ratios": {
            "fixed_rate_p50_vs_floor": ratio(lat_f.get("p50_ms"), floor_f.get("p50_ms")),
            "fixed_rate_p99_vs_floor": ratio(lat_f.get("p99_ms"), floor_f.get("p99_ms")),
            "staged_max_rate_p50_vs_floor_max_rate": ratio(
                lat_s.get("p50_ms"), floor_m.get("p50_ms")
            ),
            "staged_max_rate_p99_vs_floor_max_rate": ratio(
                lat_s.get("p99_ms"), floor_m.get("p99_ms")
            ),
            "max_rate_p50_vs_floor_max_rate": ratio(lat_m.get("p50_ms"), floor_m.get("p50_ms")),
            "max_rate_p99_vs_floor_max_rate": ratio(lat_m.get("p99_ms"), floor_m.get("p99_ms")),
            "sustained_vs_floor_max_rate": round(
                maxed["sustained_offered_per_s"] / floor["max_rate"]["sustained_per_s"], 5
            )
            if floor["max_rate"]["sustained_per_s"]
            else None,
        },
        "targets": {
            "sustained_cases_per_s>=50 (staged cases, submitted at max rate)": staged[
                "sustained_offered_per_s"
            ]
            >= TARGET_CASES_PER_S,
            "sustained_cases_per_s>=50 (whole cases at max rate)": maxed["sustained_offered_per_s"]
            >= TARGET_CASES_PER_S,
            f"p99_s<=2 (fixed rate, {args.rate:g}/s)": bool(lat_f.get("p99_ms"))
            and lat_f["p99_ms"] <= TARGET_P99_S * 1000,
        },
        "notes": [
            "Latencies run from the submit's HTTP answer to the moment a reader process saw "
            "referral.offered; both are wall-clock times on this machine.",
            "CPU is user + system time of each process tree (a process and all its "
            "descendants, every pid ever seen); RSS is summed over the tree, so pages shared "
            "between forked processes (translation's workers share ~900 MB of language models) "
            "count once per process.",
            "other_load_cpu_s is the machine's busy CPU that none of the measured processes "
            "used: other work on the machine, competing for the same cores.",
            "cases_per_s_if_cpu_bound_on_all_cores divides the cores left after idle burn by "
            "the platform's CPU seconds per case above idle: an upper bound that ignores every "
            "other limit.",
        ],
        "busiest_processes_max_rate": [
            {"process": name, **figures} for name, figures in busiest[:6]
        ],
        "series": {
            "t0_wall": t0,
            "windows": {
                k: [round(a - t0, 2), round(b - t0, 2)] for k, (a, b) in bench.windows.items()
            },
            "cases": cases,
            "consumer_lag": lag_columns(bench.lag.samples, t0),
            "consumer_lag_by_topic_peak": {
                g: {
                    topic: max(lag.get(g, {}).get(topic, 0) for _, lag in bench.lag.samples)
                    for topic in {tp for _, lag in bench.lag.samples for tp in lag.get(g, {})}
                }
                for g in bench.lag.groups
            },
            "cores": {
                "t": [round(t - t0, 2) for t in cores_t],
                **{k: [round(v, 3) for v in vs] for k, vs in cores.items()},
            },
        },
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    """Indented like the other benchmarks' results, with the long time series on one line."""
    body = json.dumps({k: v for k, v in results.items() if k != "series"}, indent=2)
    series = json.dumps(results["series"], separators=(",", ":"), ensure_ascii=False)
    path.write_text(body[: body.rindex("}")].rstrip() + f',\n  "series": {series}\n}}\n')


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = results["series"]
    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(15, 11), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    colours = {
        "staging": "tab:purple",
        "fixed_rate": "tab:blue",
        "staging_2": "tab:pink",
        "staged_max_rate": "tab:green",
        "max_rate": "tab:orange",
        "floor_fixed_rate": "tab:gray",
        "floor_max_rate": "tab:olive",
    }
    labels = {
        "fixed_rate": f"pipeline, {results['parameters']['rate_per_s']:g} cases/s",
        "staged_max_rate": "pipeline, staged cases at max rate",
        "max_rate": "pipeline, whole cases at max rate",
        "floor_fixed_rate": "floor (raw aiokafka), same rate",
        "floor_max_rate": "floor, max rate",
    }
    for phase, colour in colours.items():
        points = [(t, lat) for p, t, lat in series["cases"] if p == phase and phase in labels]
        if points:
            xs, ys = zip(*points, strict=True)
            top.scatter(xs, ys, s=6, color=colour, label=labels[phase], alpha=0.7)
    floor_p99 = results["floor"]["fixed_rate"]["latency"].get("p99_ms")
    if floor_p99:
        top.axhline(floor_p99 / 1000, color="black", ls="--", lw=1, label="floor p99")
    top.axhline(TARGET_P99_S, color="red", ls=":", lw=1, label="target p99 (2 s)")
    top.set_yscale("log")
    top.set_ylabel("submit → referral.offered (s)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    top.set_title(
        f"Pipeline benchmark: {results['parameters']['cases_per_phase']} cases per phase, "
        f"{results['machine']['cpus']} CPUs, load average "
        f"{results['machine']['loadavg_start'][0]:.1f} → {results['machine']['loadavg_end'][0]:.1f}"
    )
    for ax in (top, middle, bottom):
        for name, (a, b) in series["windows"].items():
            if not name.startswith("floor"):
                ax.axvspan(a, b, color=colours.get(name, "tab:green"), alpha=0.06)
    lag = series["consumer_lag"]
    for name, values in lag.items():
        if name != "t" and max(values, default=0) >= 20:  # the groups and topics that fell behind
            group, topic = name.split(" ← ")
            short = topic.removeprefix("referrals.").removesuffix(".v1")
            middle.plot(lag["t"], values, label=f"{group} ← {short}", lw=1)
    middle.set_ylabel("consumer lag (records)")
    middle.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    cores = series["cores"]
    names = [k for k in cores if k not in ("t", "machine")]
    busiest = sorted(names, key=lambda k: -sum(cores[k]))[:7]
    for name in busiest:
        bottom.plot(cores["t"], cores[name], label=name, lw=1)
    platform_total = [
        sum(cores[k][i] for k in names if not k.startswith("bench-"))
        for i in range(len(cores["t"]))
    ]
    bottom.plot(cores["t"], platform_total, label="platform (services + infrastructure)", lw=1.5)
    bottom.plot(cores["t"], cores["machine"], label="whole machine", color="black", lw=1.2)
    bottom.set_ylabel("CPU (cores)")
    bottom.set_xlabel("seconds since phase 1 began")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def show(results: dict[str, Any]) -> None:
    rate = results["parameters"]["rate_per_s"]
    phases = {
        f"pipeline {rate:g}/s": results["pipeline"]["fixed_rate"],
        "staged, max": results["pipeline"]["staged_max_rate"],
        "whole, max": results["pipeline"]["max_rate"],
    }
    fixed = phases[f"pipeline {rate:g}/s"]
    floor = results["floor"]
    floors = {f"floor {rate:g}/s": floor["fixed_rate"], "floor max": floor["max_rate"]}
    stagings = (("phase 1", "staging_before_phase_1"), ("phase 2", "staging_before_phase_2"))
    for label, key in stagings:
        staging = results.get(key) or {}
        if staging:
            console.print(
                f"staging before {label}: {staging['prepared']} cases opened and filled in "
                f"{staging['open_consent_upload_listed_s']:.0f} s ({staging['uploads_per_s']:.1f} "
                f"uploads/s), all documents read after "
                f"{staging['until_all_documents_read_s']:.0f} s "
                f"({staging['documents_read_per_s']:.2f} documents/s)"
            )
    table = Table(title="submit → referral.offered (4 Kafka hops)")
    table.add_column("")
    for column in (*phases, *floors):
        table.add_column(column, justify="right")

    def ms(d: dict[str, Any], key: str) -> str:
        return f"{d[key]:,.0f} ms" if key in d else "-"

    table.add_row(
        "offered / submitted",
        *(f"{p['offered']}/{p['submitted']}" for p in phases.values()),
        *(f"{f['arrived']}/{f['records']}" for f in floors.values()),
    )
    table.add_row(
        "submit rate /s",
        *(f"{p['submit_rate_per_s']:.1f}" for p in phases.values()),
        *(f"{f['send_rate_per_s']:.1f}" for f in floors.values()),
    )
    table.add_row(
        "sustained offered /s",
        *(f"{p['sustained_offered_per_s']:.1f}" for p in phases.values()),
        *(f"{f['sustained_per_s']:.1f}" for f in floors.values()),
    )
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        table.add_row(
            key.removesuffix("_ms"),
            *(ms(p["latency_submit_to_offered"], key) for p in phases.values()),
            *(ms(f["latency"], key) for f in floors.values()),
        )
    late = fixed.get("submits_late_over_100ms")
    if late is not None:
        table.add_row(
            "submits late > 100 ms",
            f"{late} (max {fixed['submit_lateness_max_s']:.1f} s)",
            *([""] * 4),
        )
    table.add_row(
        "errors / dead ends",
        *(f"{sum(p['errors'].values())} / {sum(p['dead_ends'].values())}" for p in phases.values()),
        "",
        "",
    )
    console.print(table)
    procs = Table(title="CPU seconds (cores used) and peak RSS per process tree; idle: cores")
    procs.add_column("process")
    procs.add_column("idle", justify="right")
    for column in phases:
        procs.add_column(column, justify="right")
    procs.add_column("peak RSS MiB", justify="right")
    used = {label: p.get("resources", {}).get("processes", {}) for label, p in phases.items()}
    pr_m = used["whole, max"]
    pr_i = results["idle"].get("resources", {}).get("processes", {})
    for name in sorted(pr_m, key=lambda k: -pr_m[k]["cpu_s"]):
        figures = [u.get(name, {}) for u in used.values()]
        if not any(f.get("peak_rss_MiB") for f in figures):
            continue  # not running in these phases (the floor's helpers)
        procs.add_row(
            name,
            f"{pr_i.get(name, {}).get('cores', 0):.3f}",
            *(f"{f.get('cpu_s', 0):.1f} ({f.get('cores', 0):.2f})" for f in figures),
            f"{max(f.get('peak_rss_MiB', 0) for f in figures):.0f}",
        )
    for label, res in phases.items():
        r = res.get("resources", {})
        if r:
            procs.caption = (procs.caption or "") + (
                f"{label}: machine busy {r['machine_busy_cores']:.2f} cores, "
                f"other load {r['other_load_cpu_s']:.0f} CPU s over {r['seconds']:.0f} s. "
            )
    console.print(procs)
    ratios = results["ratios"]
    console.print(
        f"pipeline vs floor at {rate:g}/s: p50 x"
        f"{ratios['fixed_rate_p50_vs_floor']}, p99 x{ratios['fixed_rate_p99_vs_floor']}; "
        f"staged at max rate vs floor max: p50 x{ratios['staged_max_rate_p50_vs_floor_max_rate']}"
        f", p99 x{ratios['staged_max_rate_p99_vs_floor_max_rate']}; whole cases at max rate: "
        f"p50 x{ratios['max_rate_p50_vs_floor_max_rate']}, p99 "
        f"x{ratios['max_rate_p99_vs_floor_max_rate']}; sustained "
        f"{ratios['sustained_vs_floor_max_rate']} of the floor's"
    )
    for label, res in phases.items():
        cpu = res.get("cpu_per_case") or {}
        if cpu:
            top = ", ".join(
                f"{k} {v:.3f}" for k, v in list(cpu["by_process_above_idle"].items())[:4]
            )
            console.print(
                f"{label}: platform CPU per case {cpu['platform_cpu_s_per_case_above_idle']:.2f} s "
                f"above idle ({top}); CPU-bound on all {results['machine']['cpus']} cores: "
                f"{cpu['cases_per_s_if_cpu_bound_on_all_cores']} cases/s"
            )
    for target, met in results["targets"].items():
        console.print(f"target {target}: " + ("[green]met[/]" if met else "[red]not met[/]"))
    console.print(
        f"load average {results['machine']['loadavg_start']} at start, "
        f"{results['machine']['loadavg_end']} at end"
    )
