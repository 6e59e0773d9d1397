"""Benchmark: uploads through the records service vs the `minio` SDK's direct put_object.

Not a test: it prints figures and writes bench/results/records.json. In one run, on a stack it
starts itself: files of 1 MB, 20 MB and 200 MB (DICOM imaging studies, the kind with the larger
limit) are uploaded through `referrals-records api` (multipart over HTTP, inspected, hashed,
streamed to MinIO with SSE-S3) and put directly into MinIO with the SDK (same SSE-S3). It prints
MB/s for both, their ratio, and the service's peak resident memory during the uploads. One
untimed 1 MB upload each way comes first, so no timed one opens a connection.

The client sends what a front end sends (`FormClient`): one multipart/form-data request with
`kind`, then the file, with its Content-Length, under the case's token. As the SDK's side does
with its own client, it builds that request as a well-written client would: the form's head and
end are made around the file's bytes, read in blocks of the SDK's part size, and the case tokens,
which intake signs and a front end only holds, are signed before the uploads are timed. (httpx's
`files=` form, the harness's `RecordsServer.upload`, read the file in 64 kB slices through its
multipart encoder: 0.4 CPU-ms more per 1 MB upload, measured against a socket that only reads.)

With `--against REV`, records' API as it was at the commit REV (its package from a `git
worktree` of REV, first on the import path; every other package this tree's) runs beside this
tree's on the same stack, and uploads of 1 MB and of `--big-mb` go through each in turn and
directly, alternated for `--rounds` rounds (A/B/A/B, the order reversed every other round): it
prints and writes (bench/results/records-ab.json) the medians per upload of the CPU-ms of each
records process, of MinIO and of PostgreSQL (its backends included), and of the wall time. On
a shared machine of two cores the rate follows the CPU spent, and a process's CPU per upload
varies far less than the wall time does.

    uv run python bench/records.py [--repeat-scale 1.0]
    uv run python bench/records.py --against HEAD~1 [--rounds 6 --files 40 --big-mb 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from _harness.processes import PeakRss
from _harness.records import MB, make_dicom_like, per_gb, records_server, timed
from _harness.results import parser, report
from _harness.revision import worktree_at
from _harness.stack import api
from rich.console import Console

from devstack.process import stop_group

console = Console()
SIZES = [(1, 80), (20, 15), (200, 3)]  # (MB, repetitions): 1 MB ones take ~18 ms each


class FormClient:
    """Uploads through records as a front end sends them: one multipart/form-data request with
    `kind` then the file (`application/dicom`, its name), a Content-Length, and the case's
    token, to a new case each. The tokens are signed ahead (`ready`): intake signs them, a front
    end holds its case's."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._tokens: list[tuple[uuid.UUID, str]] = []

    def ready(self, uploads: int) -> None:
        """Sign the case tokens of the next `uploads` uploads now, outside what is timed."""
        issuer = self.server.issuer
        cases = [uuid.uuid4() for _ in range(uploads)]
        self._tokens += [(case, issuer.issue(case, "bench").token) for case in cases]

    def upload(self, http: httpx.Client, base: str, path: Path, file_name: str) -> None:
        """`path` uploaded to `base`'s records, to a new case, as an imaging study."""
        if not self._tokens:
            self.ready(1)
        case_id, token = self._tokens.pop()
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n'
            f"imaging_study\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            "Content-Type: application/dicom\r\n\r\n"
        ).encode()
        end = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        r = http.post(
            f"{base}/v1/cases/{case_id}/documents",
            content=_form_body(head, path, end),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(end)),
            },
        )
        if r.status_code != 201:
            raise RuntimeError(f"upload failed: {r.status_code} {r.text}")


def _form_body(head: bytes, path: Path, end: bytes) -> Iterator[bytes]:
    """The form's head, the file's bytes in blocks of the SDK's part size (8 MB: a 1 MB file
    read whole, as the SDK reads it), and the form's end."""
    yield head
    with path.open("rb") as f:
        while block := f.read(8 * MB):
            yield block
    yield end


def measure(args: argparse.Namespace) -> dict[str, object]:
    with records_server("bench-records-") as server:
        results: dict[str, dict[str, float]] = {}
        idle_rss = psutil.Process(server.proc.pid).memory_info().rss
        client = FormClient(server)
        with PeakRss(server.proc.pid) as peak, httpx.Client(timeout=600) as http:
            # One untimed upload each way first: the connections (HTTP, PostgreSQL, MinIO) and
            # the first request's set-up are not what the 1 MB figure is about.
            warm = server.tmp / "warm-up.dcm"
            make_dicom_like(warm, MB)
            client.upload(http, server.base, warm, "WARM-UP")
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
                    client.upload(http, server.base, path, path.stem.upper())

                client.ready(reps)
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


def _tree_cpu(pid: int) -> float:
    """CPU-seconds of a process and its children now (PostgreSQL: the postmaster and its
    backends)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _own_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_against(args: argparse.Namespace) -> dict[str, object]:
    """Records at `args.against` and this tree's, side by side on one stack (see the module's
    docstring): medians per upload of each process's CPU-ms and of the wall time."""
    with (
        worktree_at(args.against, "bench-records-old-") as worktree,
        records_server("bench-records-ab-") as server,
    ):
        # The same environment as this tree's API, the old records package first.
        env = dict(psutil.Process(server.proc.pid).environ())
        env["PYTHONPATH"] = str(worktree / "services" / "records" / "src")
        folder = server.tmp / "old"
        folder.mkdir()
        old_proc, old_base = api("records", env, folder, timeout=300)
        try:
            procs = {"old": old_proc, "new": server.proc}
            return _alternate(args, server, procs, {"old": old_base, "new": server.base})
        finally:
            stop_group(old_proc.pid)


def _alternate(
    args: argparse.Namespace,
    server: Any,
    procs: dict[str, subprocess.Popen[bytes]],
    bases: dict[str, str],
) -> dict[str, object]:
    minio, postgres = server.info.pids["minio"], server.info.pids["postgres"]
    rows: list[dict[str, Any]] = []
    client = FormClient(server)
    with httpx.Client(timeout=600) as http:
        files = {}
        for size_mb, name in ((1, "1MB"), (args.big_mb, f"{args.big_mb}MB")):
            files[name] = server.tmp / f"ab-{name}.dcm"
            make_dicom_like(files[name], size_mb * MB)
        for base in bases.values():  # connections opened before anything is timed
            client.upload(http, base, files["1MB"], "WARM-UP")
        server.put_direct(files["1MB"])

        def once(way: str, path: Path) -> None:
            if way == "direct":
                server.put_direct(path)
            else:
                client.upload(http, bases[way], path, path.stem.upper())

        ways = [*procs, "direct"]
        for round_ in range(args.rounds):
            for name, path in files.items():
                count = args.files if name == "1MB" else 1
                for way in ways if round_ % 2 == 0 else ways[::-1]:
                    client.ready(count)
                    before = {
                        "minio": _tree_cpu(minio),
                        "postgres": _tree_cpu(postgres),
                        **({"records": _own_cpu(procs[way].pid)} if way in procs else {}),
                    }
                    began = time.perf_counter()
                    for _ in range(count):
                        once(way, path)
                    wall = time.perf_counter() - began
                    after = {
                        "minio": _tree_cpu(minio),
                        "postgres": _tree_cpu(postgres),
                        **({"records": _own_cpu(procs[way].pid)} if way in procs else {}),
                    }
                    row = {"round": round_, "size": name, "way": way, "wall_ms": wall / count * 1e3}
                    row |= {f"{k}_cpu_ms": (after[k] - before[k]) / count * 1e3 for k in after}
                    rows.append(row)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for name in files:
        for way in ways:
            mine = [r for r in rows if r["size"] == name and r["way"] == way]
            keys = [k for k in mine[0] if k.endswith("_ms")]
            medians.setdefault(name, {})[way] = {
                k: round(statistics.median(r[k] for r in mine), 2) for k in keys
            }
    result = {
        "against": args.against,
        "rounds": args.rounds,
        "files_of_1MB_per_round": args.files,
        "medians_per_upload": medians,
        "load_average": os.getloadavg(),
    }
    console.print(result)
    return result


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeat-scale", type=float, default=1.0)
    cli.add_argument("--against", help="a commit: its records API A/B against this tree's")
    cli.add_argument("--rounds", type=int, default=6, help="with --against")
    cli.add_argument("--files", type=int, default=40, help="1 MB files a round (--against)")
    cli.add_argument("--big-mb", type=int, default=200, help="the large file (--against)")
    args = cli.parse_args()
    if args.against:
        report("records-ab.json", measure_against(args))
    else:
        report("records.json", measure(args))


if __name__ == "__main__":
    main()
