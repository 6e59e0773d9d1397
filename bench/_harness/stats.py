"""Percentiles, latency summaries, sustained rates and ratios to a baseline of the same run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, by nearest rank; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pct_floor(values: Sequence[float], q: float) -> float:
    """The value at index ⌊q·n⌋ of the sorted `values`: the rank bench/partners.py and
    bench/notifications.py have always reported (kept, so their figures compare with earlier
    runs)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(latencies_s: Sequence[float], digits: int = 1, *, with_max: bool = True) -> dict:
    """p50, p95, p99, (max,) mean in milliseconds and the count of `latencies_s` (seconds)."""
    if not latencies_s:
        return {"count": 0}
    ms = [v * 1000 for v in latencies_s]
    out = {f"p{q}_ms": round(pct(ms, q / 100), digits) for q in (50, 95, 99)}
    if with_max:
        out["max_ms"] = round(max(ms), digits)
    return {**out, "mean_ms": round(statistics.fmean(ms), digits), "count": len(ms)}


def sustained_rate(times: Sequence[float]) -> float:
    """Events per second over the steady part: from the 10th to the 90th percentile event."""
    if len(times) < 10:
        return 0.0
    ordered = sorted(times)
    lo, hi = int(0.1 * len(ordered)), int(0.9 * len(ordered)) - 1
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else 0.0


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """`a` / `b` rounded (a figure over its baseline); None when either is missing or zero."""
    return round(a / b, digits) if a and b else None
