"""records' API on a stack of its own, and the uploads timed against it and against MinIO's SDK
(bench/records.py, bench/resumable.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from minio import Minio
from minio.sse import SseS3

from _harness.processes import CpuSeconds
from _harness.stack import QUIET, api, own_stack
from devstack.process import stop_group
from referrals_common.auth.case_tokens import CaseTokenIssuer, generate_private_key_pem, public_jwks

MB = 1024 * 1024


@dataclass
class RecordsServer:
    """`referrals-records api` as a process on a stack of its own, with a case-token issuer and
    a MinIO client for the direct baseline (bucket `bench-direct`)."""

    tmp: Path
    info: Any
    base: str
    proc: subprocess.Popen[bytes]
    issuer: CaseTokenIssuer
    minio: Minio

    def pids(self) -> dict[str, int]:
        """The processes whose CPU an upload costs: the service, MinIO and this client."""
        return {"service": self.proc.pid, "minio": self.info.pids["minio"], "client": os.getpid()}

    def upload(self, http: httpx.Client, path: Path, file_name: str) -> None:
        """`path` uploaded through the service in one multipart/form-data request, to a new
        case, as an imaging study."""
        case_id = uuid.uuid4()
        token = self.issuer.issue(case_id, "bench").token
        with path.open("rb") as f:
            r = http.post(
                f"{self.base}/v1/cases/{case_id}/documents",
                data={"kind": "imaging_study"},
                files={"file": (file_name, f, "application/dicom")},
                headers={"Authorization": f"Bearer {token}"},
            )
        if r.status_code != 201:
            raise RuntimeError(f"upload failed: {r.status_code} {r.text}")

    def put_direct(self, path: Path) -> None:
        """The baseline: `path` put straight into MinIO with the SDK (8 MB parts, SSE-S3, as
        records stores)."""
        self.minio.fput_object(
            "bench-direct",
            f"direct/{uuid.uuid4()}",
            str(path),
            content_type="application/dicom",
            sse=SseS3(),
            part_size=8 * MB,
        )


@contextlib.contextmanager
def records_server(prefix: str) -> Iterator[RecordsServer]:
    """Start a stack and records' API on it (migrations first: minutes on a loaded machine);
    stop and remove both afterwards."""
    with own_stack(prefix, ("records",)) as (tmp, info):
        key_pem = generate_private_key_pem()
        env = {
            "REFERRALS_RECORDS_POSTGRES__DSN": info.database_dsns["records"],
            "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": info.kafka_bootstrap,
            "REFERRALS_S3__ENDPOINT": info.s3_endpoint,
            "REFERRALS_S3__ACCESS_KEY": info.s3_access_key,
            "REFERRALS_S3__SECRET_KEY": info.s3_secret_key,
            "REFERRALS_RECORDS_CASE_TOKEN_JWKS": json.dumps(public_jwks(key_pem)),
            "REFERRALS_RECORDS_BUCKET": "bench-documents",
            # A few tokens drive the whole load: the rate limits would measure themselves.
            "REFERRALS_RATE_LIMIT__ENABLED": "false",
            **QUIET,
        }
        proc, base = api("records", env, tmp, timeout=180)
        try:
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
            stop_group(proc.pid)


def make_dicom_like(path: Path, size: int) -> None:
    """A file records accepts as DICOM: the 128-byte preamble, `DICM`, then data."""
    with path.open("wb") as f:
        f.write(b"\x00" * 128 + b"DICM")
        remaining = size - 132
        block = os.urandom(MB)
        while remaining > 0:
            f.write(block[: min(MB, remaining)])
            remaining -= MB


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
    """CPU seconds per GB uploaded, per process."""
    return {name: round(seconds * 1024 / total_mb, 2) for name, seconds in cpu.items()}
