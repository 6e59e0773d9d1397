"""Benchmark: a 50 MB imaging study uploaded to records in parts (resumable upload) vs the
`minio` SDK's direct put, and vs records' one-shot upload, in the same run.

Not a test: it prints figures and writes bench/results/resumable.json. On a stack it starts
itself, `referrals-records api` runs as a process; each file goes (1) in parts: create, `PUT`
each 8 MB part, complete (each part streamed into a MinIO multipart part, hashed and inspected
on the way, one document recorded); (2) in one multipart/form-data request; (3) straight into
MinIO with `fput_object` (8 MB parts, SSE-S3, as records stores). MB/s of each and the ratios.

    uv run python bench/resumable.py [--files 3]
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import httpx
from _harness.records import MB, make_dicom_like, per_gb, records_server, timed
from _harness.results import parser, report

SIZE_MB = 50


def measure(args: argparse.Namespace) -> dict[str, object]:
    with records_server("bench-resumable-") as server:
        base, issuer = server.base, server.issuer
        files = []
        for i in range(args.files):
            path = server.tmp / f"study-{i}.dcm"
            make_dicom_like(path, SIZE_MB * MB)
            files.append(path)
        pids = server.pids()

        with httpx.Client(timeout=600) as http:

            def in_parts(path: Path) -> None:
                case_id = uuid.uuid4()
                auth = {"Authorization": f"Bearer {issuer.issue(case_id, 'bench').token}"}
                size = path.stat().st_size
                r = http.post(
                    f"{base}/v1/cases/{case_id}/uploads",
                    json={"kind": "imaging_study", "file_name": path.name, "size_bytes": size},
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                )
                r.raise_for_status()
                upload = r.json()
                with path.open("rb") as f:
                    for number in range(1, upload["parts_total"] + 1):
                        part = f.read(upload["part_size"])
                        r = http.put(
                            f"{base}/v1/cases/{case_id}/uploads/{upload['id']}/parts/{number}",
                            content=part,
                            headers=auth,
                        )
                        r.raise_for_status()
                r = http.post(
                    f"{base}/v1/cases/{case_id}/uploads/{upload['id']}/complete", headers=auth
                )
                if r.status_code != 201:
                    raise RuntimeError(f"completion failed: {r.status_code} {r.text}")

            def one_shot(path: Path) -> None:
                server.upload(http, path, path.name)

            server.put_direct(files[0])  # warm the connections and MinIO before timing
            parts_s, parts_cpu = timed(files, in_parts, pids)
            shot_s, shot_cpu = timed(files, one_shot, pids)
            direct_s, direct_cpu = timed(files, server.put_direct, pids)
    total_mb = SIZE_MB * args.files
    return {
        "file_MB": SIZE_MB,
        "files": args.files,
        "in_parts_MB_per_s": round(total_mb / parts_s, 1),
        "one_shot_MB_per_s": round(total_mb / shot_s, 1),
        "direct_MB_per_s": round(total_mb / direct_s, 1),
        "in_parts_vs_direct": round(direct_s / parts_s, 3),
        "in_parts_vs_one_shot": round(shot_s / parts_s, 3),
        "cpu_s_per_GB_in_parts": per_gb(parts_cpu, total_mb),
        "cpu_s_per_GB_one_shot": per_gb(shot_cpu, total_mb),
        "cpu_s_per_GB_direct": per_gb(direct_cpu, total_mb),
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--files", type=int, default=3)
    report("resumable.json", measure(cli.parse_args()))


if __name__ == "__main__":
    main()
