"""Benchmark: uploads through the records service vs the `minio` SDK's direct put_object.

Not a test: it prints figures and writes bench/results/records.json. In one run, on a stack it
starts itself: files of 1 MB, 20 MB and 200 MB (DICOM imaging studies, the kind with the larger
limit) are uploaded through `referrals-records api` (multipart over HTTP, inspected, hashed,
streamed to MinIO with SSE-S3) and put directly into MinIO with the SDK (same SSE-S3). It prints
MB/s for both, their ratio, and the service's peak resident memory during the uploads. One
untimed 1 MB upload each way comes first, so no timed one opens a connection.

    uv run python bench/records.py [--repeat-scale 1.0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import psutil
from _harness.processes import PeakRss
from _harness.records import MB, make_dicom_like, per_gb, records_server, timed
from _harness.results import parser, report
from rich.console import Console

console = Console()
SIZES = [(1, 20), (20, 15), (200, 3)]  # (MB, repetitions)


def measure(args: argparse.Namespace) -> dict[str, object]:
    with records_server("bench-records-") as server:
        results: dict[str, dict[str, float]] = {}
        idle_rss = psutil.Process(server.proc.pid).memory_info().rss
        with PeakRss(server.proc.pid) as peak, httpx.Client(timeout=600) as http:
            # One untimed upload each way first: the connections (HTTP, PostgreSQL, MinIO) and
            # the first request's set-up are not what the 1 MB figure is about.
            warm = server.tmp / "warm-up.dcm"
            make_dicom_like(warm, MB)
            server.upload(http, warm, "WARM-UP")
            server.put_direct(warm)
            warm.unlink()
            for size_mb, reps in SIZES:
                reps = max(1, round(reps * args.repeat_scale))
                files = []
                for i in range(reps):
                    path = server.tmp / f"study-{size_mb}-{i}.dcm"
                    make_dicom_like(path, size_mb * MB)
                    files.append(path)
                console.print(f"[bold]{size_mb} MB[/] x {reps}: service, then direct put_object")

                def through_service(path: Path) -> None:
                    server.upload(http, path, path.stem.upper())

                service_s, service_cpu = timed(files, through_service, server.pids())
                direct_s, direct_cpu = timed(files, server.put_direct, server.pids())
                total_mb = size_mb * reps
                results[f"{size_mb}MB"] = {
                    "files": reps,
                    "service_MB_per_s": round(total_mb / service_s, 1),
                    "direct_MB_per_s": round(total_mb / direct_s, 1),
                    "ratio": round(direct_s / service_s, 3),
                    "cpu_s_per_GB_service": per_gb(service_cpu, total_mb),
                    "cpu_s_per_GB_direct": per_gb(direct_cpu, total_mb),
                }
                console.print(results[f"{size_mb}MB"])
                for path in files:
                    path.unlink()
        peak_mib = peak.peak / MB
    return {
        "uploads": results,
        "service_idle_rss_MiB": round(idle_rss / MB, 1),
        "service_peak_rss_MiB": round(peak_mib, 1),
        "targets": {
            "ratio>=0.7_for_20MB_and_above": all(
                v["ratio"] >= 0.7 for k, v in results.items() if k != "1MB"
            ),
            "peak_rss_MiB<200": peak_mib < 200,
        },
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeat-scale", type=float, default=1.0)
    report("records.json", measure(cli.parse_args()))


if __name__ == "__main__":
    main()
