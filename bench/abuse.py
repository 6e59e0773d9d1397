"""Benchmark: an abusive client beside good ones. Good front ends create cases and upload a
document at a steady pace, first alone (the quiet run, the baseline), then while one client
floods intake with bad API keys and records with oversize uploads from another address.

Not a test: it prints figures and writes bench/results/abuse.json. It starts its own stack and
runs intake and records as their real API processes (`referrals-intake api`,
`referrals-records api`) with their default rate limits and lockout. Figures:

* the good clients' latency (p50, p99) in both runs, and the ratio abusive / quiet (target ≤ 2);
* nothing lost: every case a good client was told was created exists, every upload is stored,
  and no good request was refused;
* the audit tables' growth during the abusive run against the number of abusive requests
  (failed authentications are aggregated, so the growth is bounded);
* what the attacker got (401, 429, 413, ...), and the CPU-seconds of each API process per run.

    uv run python bench/abuse.py [--seconds 20] [--good-clients 6] [--rate 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import json
import os
import secrets
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _harness.processes import cpu_seconds
from _harness.results import parser, report
from _harness.stack import QUIET, api, create_client, own_stack_async
from _harness.stats import pct
from rich.console import Console

from devstack.process import stop_group
from referrals_common.auth.case_tokens import generate_private_key_pem, public_jwks
from referrals_common.crypto import FieldCipher

console = Console()
ATTACKER_ADDRESS = "127.0.0.2"
"""The attacker's source address (all of 127/8 is loopback): rate limits and lockout count
addresses, so the good clients, on 127.0.0.1, must not share the attacker's."""

CASE = {
    "diagnosis": {"icd10": "C34.1", "text": "Adenocarcinoma of the right upper lobe"},
    "stage": {"tnm": "cT2aN1M0", "group": "IIB"},
    "reasons": ["choose_treatment"],
    "questions": ["Is my tumour a candidate for targeted therapy (EGFR, ALK)?"],
    "destination": {"preference": "countries", "countries": ["DE"]},
    "locale": "uk",
    "date_of_birth": "1968-02-29",
    "contact": {"email": "patient@example.org"},
}


def small_pdf(marker: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, f"Pathology report {marker}: invasive adenocarcinoma, G2.")
    return bytes(pdf.output())


class GoodClient:
    """A partner front end with its own key: creates a case, uploads one document to it, at
    `rate` cases a second, and remembers what it was told was created."""

    def __init__(self, intake: str, records: str, key: str, rate: float) -> None:
        self.intake, self.records, self.key, self.rate = intake, records, key, rate
        self.latencies: list[float] = []
        self.refused: collections.Counter[int] = collections.Counter()
        self.created: list[str] = []
        self.stored: list[str] = []

    async def run(self, seconds: float) -> None:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            stop_at = time.perf_counter() + seconds
            next_at = time.perf_counter()
            while time.perf_counter() < stop_at:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += 1 / self.rate
                await self.one_case(client)

    async def one_case(self, client: httpx.AsyncClient) -> None:
        began = time.perf_counter()
        r = await client.post(
            f"{self.intake}/v1/cases",
            json=CASE,
            headers={"X-Api-Key": self.key, "Idempotency-Key": str(uuid.uuid4())},
        )
        self.latencies.append(time.perf_counter() - began)
        if r.status_code != 201:
            self.refused[r.status_code] += 1
            return
        case_id, token = r.json()["case"]["id"], r.json()["access_token"]
        self.created.append(case_id)
        began = time.perf_counter()
        u = await client.post(
            f"{self.records}/v1/cases/{case_id}/documents",
            data={"kind": "pathology_report"},
            files={"file": ("report.pdf", small_pdf(case_id), "application/pdf")},
            headers={"Authorization": f"Bearer {token}"},
        )
        self.latencies.append(time.perf_counter() - began)
        if u.status_code == 201:
            self.stored.append(u.json()["id"])
        else:
            self.refused[u.status_code] += 1


class Attacker:
    """From its own address: bad API keys at intake and oversize uploads at records, as fast
    as `concurrency` connections go."""

    def __init__(self, intake: str, records: str, upload_target: tuple[str, str]) -> None:
        self.intake, self.records = intake, records
        self.case_id, self.token = upload_target
        self.answers: collections.Counter[str] = collections.Counter()
        self.requests = 0

    async def run(self, seconds: float, concurrency: int) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER_ADDRESS, retries=0)
        async with httpx.AsyncClient(timeout=30, transport=transport) as client:
            stop_at = time.perf_counter() + seconds

            async def bad_keys() -> None:
                while time.perf_counter() < stop_at:
                    key = f"rfk_{secrets.token_urlsafe(9)}_{secrets.token_urlsafe(24)}"
                    await self.send(
                        "bad key",
                        client.post(
                            f"{self.intake}/v1/cases", json=CASE, headers={"X-Api-Key": key}
                        ),
                    )

            async def oversize() -> None:
                chunk, megabytes = b"0" * (1024 * 1024), 300  # above every limit but DICOM's
                boundary = "abuse"
                head = (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n'
                    f"imaging_study\r\n--{boundary}\r\nContent-Disposition: form-data; "
                    f'name="file"; filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
                ).encode()
                tail = f"\r\n--{boundary}--\r\n".encode()
                length = len(head) + 9 + megabytes * len(chunk) + len(tail)

                async def multipart():  # type: ignore[no-untyped-def]
                    yield head + b"%PDF-1.7\n"
                    for _ in range(megabytes):
                        yield chunk
                    yield tail

                while time.perf_counter() < stop_at:
                    await self.send(
                        "oversize upload",
                        client.post(
                            f"{self.records}/v1/cases/{self.case_id}/documents",
                            content=multipart(),
                            headers={
                                "Authorization": f"Bearer {self.token}",
                                "Content-Type": f"multipart/form-data; boundary={boundary}",
                                "Content-Length": str(length),
                            },
                        ),
                    )

            await asyncio.gather(
                *(bad_keys() for _ in range(concurrency)), *(oversize() for _ in range(2))
            )

    async def send(self, what: str, request: Any) -> None:
        self.requests += 1
        try:
            r = await request
            self.answers[f"{what}: {r.status_code}"] += 1
        except httpx.HTTPError as exc:
            self.answers[f"{what}: {type(exc).__name__}"] += 1


def attack(
    intake: str, records: str, target: tuple[str, str], seconds: float, concurrency: int
) -> tuple[int, dict[str, int]]:
    """The attacker in a process of its own (its own event loop and CPU time, so the good
    clients' latencies measure the services, not the bench): (requests, answers). It runs at
    the lowest priority: a real attacker's client runs on the attacker's machine, and on one
    machine a load generator at full speed would take the services' CPU itself, measuring the
    generator rather than how the services defend themselves."""
    os.nice(19)
    attacker = Attacker(intake, records, target)
    asyncio.run(attacker.run(seconds, concurrency))
    return attacker.requests, dict(attacker.answers)


async def audit_rows(pools: dict[str, asyncpg.Pool], good: list[str]) -> dict[str, int]:
    """Audit rows of each service not written for the good clients' own calls (their actors
    name their key ids): what the attacker's requests added."""
    patterns = [f"%{key_id}%" for key_id in good]
    return {
        name: await pool.fetchval(
            "select count(*) from access_audit where not (actor like any($1::text[]))", patterns
        )
        for name, pool in pools.items()
    }


async def run_phase(
    name: str,
    args: argparse.Namespace,
    intake: str,
    records: str,
    keys: list[str],
    pids: dict[str, int],
    pools: dict[str, asyncpg.Pool],
    attacker: tuple[str, str] | None,
) -> dict[str, Any]:
    console.print(
        f"[bold]{name}[/]: {args.good_clients} good clients x {args.rate} cases/s, "
        f"{args.seconds:.0f} s"
    )
    good = [GoodClient(intake, records, key, args.rate) for key in keys]
    key_ids = [key.split("_")[1] for key in keys]
    cpu_before = {service: cpu_seconds(pid) for service, pid in pids.items()}
    audit_before = await audit_rows(pools, key_ids)
    tasks: list[Any] = [c.run(args.seconds) for c in good]
    if attacker is not None:
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ProcessPoolExecutor(1)
        tasks.append(
            loop.run_in_executor(
                pool, attack, intake, records, attacker, args.seconds, args.attack_concurrency
            )
        )
    began = time.perf_counter()
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    audit_after = await audit_rows(pools, key_ids)
    ms = [v * 1000 for c in good for v in c.latencies]
    created = [case for c in good for case in c.created]
    stored = [doc for c in good for doc in c.stored]
    found_cases = await pools["intake"].fetchval(
        "select count(*) from cases where id = any($1::uuid[])", created
    )
    found_docs = await pools["records"].fetchval(
        "select count(*) from documents where id = any($1::uuid[])", stored
    )
    refused: collections.Counter[int] = collections.Counter()
    for c in good:
        refused.update(c.refused)
    figures: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "good_requests": len(ms),
        "good_p50_ms": round(pct(ms, 0.5), 1),
        "good_p99_ms": round(pct(ms, 0.99), 1),
        "good_refused": dict(refused),
        "cases_created": len(created),
        "cases_found": int(found_cases),
        "uploads_stored": len(stored),
        "uploads_found": int(found_docs),
        "audit_rows_added": {k: audit_after[k] - audit_before[k] for k in audit_after},
        "audit_rows_before": audit_before,
        "cpu_seconds": {s: round(cpu_seconds(p) - cpu_before[s], 2) for s, p in pids.items()},
    }
    if attacker is not None:
        pool.shutdown()
        figures["attacker_requests"], figures["attacker_answers"] = results[-1]
    console.print(figures)
    return figures


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async with own_stack_async("bench-abuse-", ("intake", "records")) as (tmp, info):
        return await run(args, tmp, info)


async def run(args: argparse.Namespace, tmp: Path, info: Any) -> dict[str, Any]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    pools: dict[str, asyncpg.Pool] = {}
    try:
        key_pem = generate_private_key_pem()
        env = {
            **os.environ,
            **info.env(),
            "REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM": key_pem.decode(),
            "REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY": FieldCipher.generate_key_base64(),
            "REFERRALS_INTAKE_API_KEY_PEPPER": "bench-pepper-" + uuid.uuid4().hex,
            "REFERRALS_RECORDS_CASE_TOKEN_JWKS": json.dumps(public_jwks(key_pem)),
            **QUIET,
        }
        bases: dict[str, str] = {}
        for service in ("intake", "records"):
            procs[service], bases[service] = api(service, env, tmp)

        keys = [create_client(env, f"good front end {i}") for i in range(args.good_clients)]
        attacker_key = create_client(env, "abusive front end")
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER_ADDRESS)
        async with httpx.AsyncClient(transport=transport) as client:
            r = await client.post(
                f"{bases['intake']}/v1/cases", json=CASE, headers={"X-Api-Key": attacker_key}
            )
            r.raise_for_status()
            target = (r.json()["case"]["id"], r.json()["access_token"])
        for service in ("intake", "records"):
            pools[service] = await asyncpg.create_pool(
                info.database_dsns[service], min_size=1, max_size=2
            )
        pids = {s: p.pid for s, p in procs.items()}
        # Warm up (imports, connection pools, prepared statements), unmeasured.
        warm = [GoodClient(bases["intake"], bases["records"], key, args.rate) for key in keys]
        await asyncio.gather(*(c.run(3) for c in warm))
        quiet = await run_phase(
            "quiet", args, bases["intake"], bases["records"], keys, pids, pools, None
        )
        await asyncio.sleep(2)
        abusive = await run_phase(
            "abusive", args, bases["intake"], bases["records"], keys, pids, pools, target
        )
        # Failed authentications are written as one summary row per window; stopping the APIs
        # (SIGTERM) flushes what is still counted, so the count below is complete.
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            await asyncio.to_thread(proc.wait, 30)
        final = await audit_rows(pools, [key.split("_")[1] for key in keys])
        abusive["audit_rows_added"] = {k: final[k] - abusive["audit_rows_before"][k] for k in final}
        console.print(f"audit rows the attack added, once flushed: {abusive['audit_rows_added']}")
    finally:
        for pool in pools.values():
            await pool.close()
        for proc in procs.values():
            stop_group(proc.pid)

    audit_added = sum(abusive["audit_rows_added"].values())
    lost = (
        abusive["cases_created"]
        - abusive["cases_found"]
        + abusive["uploads_stored"]
        - abusive["uploads_found"]
    )
    return {
        "quiet": quiet,
        "abusive": abusive,
        "ratios": {
            "good_p99_abusive_vs_quiet": round(abusive["good_p99_ms"] / quiet["good_p99_ms"], 2),
            "good_p50_abusive_vs_quiet": round(abusive["good_p50_ms"] / quiet["good_p50_ms"], 2),
            "audit_rows_per_1000_abusive_requests": round(
                1000 * audit_added / max(1, abusive["attacker_requests"]), 2
            ),
        },
        "targets": {
            "good_p99_within_2x_of_quiet": abusive["good_p99_ms"] <= 2 * quiet["good_p99_ms"],
            "nothing_lost": lost == 0,
            "no_good_request_refused": not abusive["good_refused"] and not quiet["good_refused"],
        },
        "parameters": {
            "seconds": args.seconds,
            "good_clients": args.good_clients,
            "rate_per_client": args.rate,
            "attack_concurrency": args.attack_concurrency,
            "cpus": os.cpu_count(),
        },
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, default=20.0)
    cli.add_argument("--good-clients", type=int, default=6)
    cli.add_argument("--rate", type=float, default=2.0, help="cases a second per good client")
    cli.add_argument("--attack-concurrency", type=int, default=16)
    report("abuse.json", asyncio.run(measure(cli.parse_args())), "ratios", "targets")


if __name__ == "__main__":
    main()
