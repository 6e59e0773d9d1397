"""bench/cost.py's aggregation: the issue's twelve keys, read from the other benchmarks' results
as they are shaped, with targets judged; so the script cannot drift from the benches it reads."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import psutil
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
ISSUE_KEYS = {
    "cpu_s_per_staged_case",
    "cpu_s_per_whole_case",
    "hop_p99_ratio_vs_raw",
    "submit_to_offered_p99_ms",
    "platform_rss_mib_under_load",
    "translation_rss_mib",
    "upload_ratio_1mb",
    "upload_ratio_200mb",
    "intake_create_ratio_vs_bare",
    "langid_accuracy",
    "langid_undetermined",
    "langid_sentences_per_s",
}


@pytest.fixture(scope="module")
def cost():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_cost", BENCH / "cost.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))
        for name, loaded in list(sys.modules.items()):  # the benchmarks, _harness, _pipeline
            if Path(getattr(loaded, "__file__", None) or "/").is_relative_to(BENCH):
                del sys.modules[name]


def _pipeline_phase(cpu: float, p99: float, rss: float, pss: float = 0.0) -> dict:
    return {
        "latency_submit_to_offered": {"p99_ms": p99},
        "cpu_per_case": {
            "platform_cpu_s_per_case_above_idle": cpu,
            "by_process_above_idle": {"postgres": cpu / 2},
        },
        "resources": {
            "platform_peak_pss_MiB": pss,
            "processes": {
                "intake-api": {"peak_rss_MiB": rss},
                "postgres": {"peak_rss_MiB": rss},
                "bench-watcher": {"peak_rss_MiB": 999.0},
            },
        },
    }


PARTS = {
    "pipeline": {
        "pipeline": {
            "fixed_rate": _pipeline_phase(0.2, 150.0, 100.0),
            "staged_max_rate": _pipeline_phase(0.03, 900.0, 100.0),
            "max_rate": _pipeline_phase(0.3, 900.0, 600.0, pss=900.0),
        },
        "floor": {"fixed_rate": {"latency": {"p99_ms": 20.0}}},
        "idle": {"resources": {"processes": {"postgres": {"peak_rss_MiB": 50.0}}}},
    },
    "messaging": {
        "ratios": {"p99_latency_vs_raw": 3.5},
        "raw_aiokafka": {"latency": {"p99_ms": 6.0}},
        "outbox_to_consumer": {"latency_at_rate": {"p99_ms": 21.0}},
    },
    "records": {
        "uploads": {
            "1MB": {"ratio": 0.65, "service_MB_per_s": 65, "direct_MB_per_s": 100},
            "200MB": {"ratio": 0.85, "service_MB_per_s": 85, "direct_MB_per_s": 100},
        }
    },
    "intake": {
        "ratios": {"create_rate_vs_bare": 0.05},
        "intake_create": {"requests_per_s": 500},
        "bare_fastapi_echo": {"requests_per_s": 10000},
    },
    "language": {
        "langid_accuracy": 0.998,
        "langid_undetermined": 0.001,
        "langid_sentences_per_s": 4000,
        "translation_rss_mib": 700,
        "memory": {"rss_mib_sum": 1200},
        "language_identification": {
            "py3langid": {"accuracy": 0.99, "undetermined": 0.0, "sentences_per_cpu_s": 12000},
            "lingua": {"accuracy": 0.998, "undetermined": 0.0, "sentences_per_cpu_s": 900},
        },
    },
}


def test_cost_json_has_every_issue_key_as_a_number_with_its_target(cost) -> None:  # type: ignore[no-untyped-def]
    result = cost.aggregate(PARTS, {"quick": True}, ["a note"])
    assert set(cost.KEYS) == ISSUE_KEYS
    for key in ISSUE_KEYS:
        assert isinstance(result[key], int | float), key
        assert result["targets"][key]["met"] in (True, False), key
    assert result["cpu_s_per_staged_case"] == 0.03
    assert result["cpu_s_per_whole_case"] == 0.3
    assert result["submit_to_offered_p99_ms"] == 150.0
    # The platform's PSS at its fullest; the sum of RSS (the bench's own processes left out) is
    # shown beside it.
    assert result["platform_rss_mib_under_load"] == 900.0
    assert (
        "1200.0 MiB under load"
        in result["targets"]["platform_rss_mib_under_load"]["baseline_same_run"]
    )
    met = {key: t["met"] for key, t in result["targets"].items()}
    assert met["cpu_s_per_staged_case"] and met["submit_to_offered_p99_ms"]
    assert met["upload_ratio_1mb"] and not met["upload_ratio_200mb"]
    assert not met["hop_p99_ratio_vs_raw"] and not met["translation_rss_mib"]
    assert not met["intake_create_ratio_vs_bare"]
    assert result["measured"] == 12
    assert result["met"] == sum(met.values())
    assert "20.0 ms" in result["targets"]["submit_to_offered_p99_ms"]["baseline_same_run"]
    json.dumps(result)  # cost.json is plain JSON


def test_runs_of_different_parts_merge_into_one_cost_json(cost) -> None:  # type: ignore[no-untyped-def]
    pipeline_only = cost.aggregate({"pipeline": PARTS["pipeline"]}, {"parts": ["pipeline"]}, [])
    others = {name: data for name, data in PARTS.items() if name != "pipeline"}
    the_rest = cost.aggregate(others, {"parts": sorted(others)}, ["side by side"])
    merged = cost.merge([pipeline_only, the_rest], ["merged"])
    assert merged["measured"] == 12
    assert merged["cpu_s_per_staged_case"] == 0.03 and merged["hop_p99_ratio_vs_raw"] == 3.5
    assert merged["figure_from_run_of_parts"]["cpu_s_per_staged_case"] == "['pipeline']"
    assert "side by side" in merged["notes"] and "merged" in merged["notes"]


def test_the_plot_is_drawn_from_the_figures(cost, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cost.aggregate(PARTS, {"measured_at": "now"}, [])
    cost.plot(result, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_part_not_run_leaves_its_figures_empty_and_unjudged(cost) -> None:  # type: ignore[no-untyped-def]
    result = cost.aggregate({"messaging": PARTS["messaging"]}, {}, [])
    assert result["hop_p99_ratio_vs_raw"] == 3.5
    assert result["cpu_s_per_staged_case"] is None
    assert result["targets"]["cpu_s_per_staged_case"]["met"] is None
    assert result["measured"] == 1


def test_every_benchmark_the_cost_run_reads_is_importable_with_its_entry_point(cost) -> None:  # type: ignore[no-untyped-def]
    import importlib

    entry = {
        "pipeline": ("main", "run", "DocumentSet"),
        "messaging": ("main", "measure"),
        "records": ("main", "measure"),
        "intake": ("main", "measure"),
        "translation": ("main", "measure", "language_summary"),
    }
    for name, attributes in entry.items():
        module = importlib.import_module(name)
        for attribute in attributes:
            assert hasattr(module, attribute), f"bench/{name}.py lost {attribute}"
    assert set(cost.RUNNERS) == set(cost.PARTS)
    quick, full = cost.parameters(True), cost.parameters(False)
    assert quick["pipeline"]["cases"] < full["pipeline"]["cases"]


def test_each_file_of_bench_is_one_benchmark_with_its_command(cost) -> None:  # type: ignore[no-untyped-def]
    """bench/ holds one file per benchmark (what they share is in bench/_harness/, the
    pipeline's own parts in bench/_pipeline/): each has a main() and shows its command line."""
    import importlib

    files = sorted(BENCH.glob("*.py"))
    assert len(files) >= 12
    for path in files:
        module = importlib.import_module(path.stem)
        assert callable(getattr(module, "main", None)), f"bench/{path.name} has no main()"
        assert f"python bench/{path.name}" in (module.__doc__ or ""), path.name


def test_the_platforms_memory_is_its_fullest_moment_not_a_sum_of_peaks(cost) -> None:  # type: ignore[no-untyped-def]
    from _harness.processes import ResourceSampler

    sampler = ResourceSampler({"intake": 1, "postgres": 2, "bench-driver": 3})
    mib = 2**20
    # intake peaks at one moment and PostgreSQL at another: the platform never used 500 MiB.
    sampler.samples = [(t, {}, {}, 0.0) for t in (10.0, 12.0, 14.0)]
    sampler.pss_samples = [
        (10.0, {"intake": 300 * mib, "postgres": 100 * mib, "bench-driver": 900 * mib}),
        (12.0, {"intake": 100 * mib, "postgres": 200 * mib, "bench-driver": 900 * mib}),
        (14.0, {"intake": 100 * mib, "postgres": 100 * mib}),
    ]
    window = sampler.window(9.0, 15.0)
    assert window["platform_peak_pss_MiB"] == 400.0  # the bench's own processes left out
    assert window["processes"]["intake"]["peak_pss_MiB"] == 300.0
    assert window["processes"]["postgres"]["peak_pss_MiB"] == 200.0


def test_a_phases_cpu_counts_all_its_work_with_the_enclosing_samples(cost) -> None:  # type: ignore[no-untyped-def]
    """A phase of a few seconds between two samples: the samples inside it miss its first and
    last moments; the enclosing ones count them."""
    from _harness.processes import ResourceSampler

    sampler = ResourceSampler({"intake": 1})
    # intake burns 1 CPU-s in each half second from 1.0 to 3.0, none before or after.
    cumulative = {0.0: 0.0, 0.5: 0.0, 1.0: 0.0, 1.5: 1.0, 2.0: 2.0, 2.5: 3.0, 3.0: 4.0, 3.5: 4.0}
    sampler.samples = [(t, {"intake": c}, {"intake": 0}, 0.0) for t, c in cumulative.items()]
    inside = sampler.window(1.2, 2.7)
    assert inside["processes"]["intake"]["cpu_s"] == 2.0  # 1.5 → 2.5: half the work lost
    enclosing = sampler.window(1.2, 2.7, enclosing=True)
    assert enclosing["processes"]["intake"]["cpu_s"] == 4.0
    assert enclosing["seconds"] == 2.0  # 1.0 → 3.0, for subtracting idle over the same span
    # At the edges of what was sampled, what there is.
    assert sampler.window(3.2, 9.0, enclosing=True)["processes"]["intake"]["cpu_s"] == 0.0


def test_pss_of_this_process_is_read_and_below_its_rss(cost) -> None:  # type: ignore[no-untyped-def]
    import os

    import psutil
    from _harness.processes import pss_bytes

    pss = pss_bytes(os.getpid())
    assert 0 < pss <= psutil.Process().memory_info().rss
    assert pss_bytes(2**22 + 12345) == 0  # no such process


def test_the_machines_speed_is_measured_as_work_per_cpu_second() -> None:
    """The speed probe the cost run records at its start and end: both kinds of work done, per
    CPU-second, and the echo process it talks to gone afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        from _harness import speed
    finally:
        sys.path.remove(str(BENCH))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    figures = speed.machine_speed(repeats=1)
    assert set(figures) == {"python_kops_per_cpu_s", "loopback_round_trips_per_cpu_s"}
    # Work done, in plausible amounts for any machine that runs the platform (this one: ~140
    # thousand JSON round trips and ~60,000 loopback round trips a CPU-second).
    assert 5 < figures["python_kops_per_cpu_s"] < 10_000
    assert 1_000 < figures["loopback_round_trips_per_cpu_s"] < 10_000_000
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
