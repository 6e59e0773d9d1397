"""Benchmark: uploads through the records service vs the `minio` SDK's direct put_object.

Not a test: it prints figures and writes bench/results/records.json. In one run, on a stack it
starts itself: files of 1 MB, 20 MB and 200 MB (DICOM imaging studies, the kind with the larger
limit) are uploaded through `referrals-records api` (multipart over HTTP, inspected, hashed,
streamed to MinIO with SSE-S3) and put directly into MinIO with the SDK (same SSE-S3). It prints
MB/s for both, their ratio, and the service's peak resident memory during the uploads.

    uv run python bench/records.py [--repeat-scale 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from harness import wait_healthy
from minio import Minio
from minio.sse import SseS3
from rich.console import Console

from devstack import stack as stack_mod
from devstack.process import free_port, stop_group
from referrals_common.auth.case_tokens import CaseTokenIssuer, generate_private_key_pem, public_jwks

ROOT = Path(__file__).resolve().parents[1]
console = Console()
MB = 1024 * 1024
SIZES = [(1, 20), (20, 15), (200, 3)]  # (MB, repetitions)


def make_dicom_like(path: Path, size: int) -> None:
    """A file records accepts as DICOM: the 128-byte preamble, `DICM`, then data."""
    with path.open("wb") as f:
        f.write(b"\x00" * 128 + b"DICM")
        remaining = size - 132
        block = os.urandom(MB)
        while remaining > 0:
            f.write(block[: min(MB, remaining)])
            remaining -= MB


class CpuSeconds:
    """CPU seconds (user + system) spent by named processes in a block."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {}
        for name, proc in self.processes.items():
            times = (
                proc.cpu_times()
            )  # the process alone: the stack's parts are the bench's children
            now[name] = times.user + times.system
        return now

    def __enter__(self) -> CpuSeconds:
        self._began = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.spent = {name: end[name] - self._began[name] for name in end}


def timed(
    files: list[Path], upload: Callable[[Path], None], pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Wall seconds to upload every file in turn, and the CPU seconds each process spent."""
    with CpuSeconds(pids) as cpu:
        began = time.perf_counter()
        for path in files:
            upload(path)
        seconds = time.perf_counter() - began
    return seconds, cpu.spent


def per_gb(cpu: dict[str, float], total_mb: int) -> dict[str, float]:
    return {name: round(seconds * 1024 / total_mb, 2) for name, seconds in cpu.items()}


class PeakRss:
    """Samples the resident memory of a process tree every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RecordsServer:
    """`referrals-records api` as a process on a stack of its own, with a case-token issuer and
    a MinIO client for the direct baseline (bucket `bench-direct`)."""

    tmp: Path
    info: stack_mod.StackInfo
    base: str
    proc: subprocess.Popen[bytes]
    issuer: CaseTokenIssuer
    minio: Minio


@contextlib.contextmanager
def records_server(prefix: str) -> Iterator[RecordsServer]:
    """Start a stack and records' API on it (migrations first: minutes on a loaded machine);
    stop and remove both afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    info = stack_mod.start(tmp / "stack", Console(stderr=True), databases=("records",))
    proc = None
    try:
        key_pem = generate_private_key_pem()
        env = {
            **os.environ,
            "REFERRALS_RECORDS_POSTGRES__DSN": info.database_dsns["records"],
            "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": info.kafka_bootstrap,
            "REFERRALS_S3__ENDPOINT": info.s3_endpoint,
            "REFERRALS_S3__ACCESS_KEY": info.s3_access_key,
            "REFERRALS_S3__SECRET_KEY": info.s3_secret_key,
            "REFERRALS_RECORDS_CASE_TOKEN_JWKS": json.dumps(public_jwks(key_pem)),
            "REFERRALS_RECORDS_BUCKET": "bench-documents",
            # A few tokens drive the whole load: the rate limits would measure themselves.
            "REFERRALS_RATE_LIMIT__ENABLED": "false",
            "REFERRALS_TELEMETRY__LOG_LEVEL": "WARNING",
            "OTEL_TRACES_EXPORTER": "none",
        }
        port = free_port()
        log = tmp / "records.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "referrals_records.cli", "api", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, log, timeout=180)
        minio = Minio(
            info.s3_endpoint,
            access_key=info.s3_access_key,
            secret_key=info.s3_secret_key,
            secure=False,
            region="us-east-1",
        )
        if not minio.bucket_exists("bench-direct"):
            minio.make_bucket("bench-direct")
        yield RecordsServer(tmp, info, base, proc, CaseTokenIssuer(key_pem), minio)
    finally:
        if proc is not None:
            stop_group(proc.pid)
        stack_mod.stop(info)
        stack_mod.purge(tmp)


def main(args: argparse.Namespace) -> dict[str, object]:
    with records_server("bench-records-") as server:
        tmp, info, base, proc = server.tmp, server.info, server.base, server.proc
        issuer, minio = server.issuer, server.minio
        results: dict[str, dict[str, float]] = {}
        idle_rss = psutil.Process(proc.pid).memory_info().rss
        with PeakRss(proc.pid) as peak, httpx.Client(timeout=600) as http:
            for size_mb, reps in SIZES:
                reps = max(1, round(reps * args.repeat_scale))
                files = []
                for i in range(reps):
                    path = tmp / f"study-{size_mb}-{i}.dcm"
                    make_dicom_like(path, size_mb * MB)
                    files.append(path)
                console.print(f"[bold]{size_mb} MB[/] x {reps}: service, then direct put_object")
                pids = {"service": proc.pid, "minio": info.pids["minio"], "client": os.getpid()}

                def through_service(path: Path) -> None:
                    case_id = uuid.uuid4()
                    token = issuer.issue(case_id, "bench").token
                    with path.open("rb") as f:
                        r = http.post(
                            f"{base}/v1/cases/{case_id}/documents",
                            data={"kind": "imaging_study"},
                            files={"file": (path.stem.upper(), f, "application/dicom")},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    if r.status_code != 201:
                        raise RuntimeError(f"upload failed: {r.status_code} {r.text}")

                def direct(path: Path) -> None:
                    minio.fput_object(
                        "bench-direct",
                        f"direct/{uuid.uuid4()}",
                        str(path),
                        content_type="application/dicom",
                        sse=SseS3(),
                        part_size=8 * MB,
                    )

                service_s, service_cpu = timed(files, through_service, pids)
                direct_s, direct_cpu = timed(files, direct, pids)
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat-scale", type=float, default=1.0)
    results = main(parser.parse_args())
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(data=results)
