"""Benchmark: intake's case creation (and create → consent → submit) against the running service
on real PostgreSQL, beside a bare FastAPI endpoint served the same way, in the same run.

Not a test: it prints figures and writes bench/results/intake.json. It starts its own stack,
runs intake as `referrals-intake api` (uvicorn) and the baseline as a bare FastAPI app (same
body, pydantic validation, same uvicorn settings), and drives both with the same closed-loop load
from wrk (N connections, each sending its next request when the previous one answered). The
create → consent → submit flow is driven by a Python client (4 requests a case).

CPU per request is measured too (user + system CPU-seconds over the requests served, each server
process tree alone, PostgreSQL's backends included), as it says more than a rate on a machine
shared with other loads.

With `--against REV`, intake as it was at the commit REV (its package and the common library
from a `git worktree` of REV, first on the import path; every other package this tree's) runs
beside this tree's on one stack, and wrk drives each in turn for `--seconds`, alternated for
`--rounds` rounds (A/B/A/B, the order reversed every other round): it prints and writes
(bench/results/intake-ab.json) the medians per creation of the CPU-ms of each intake process
tree and of PostgreSQL (its backends included), and the rates. On a shared machine of two cores
a process's CPU per creation varies far less than its rate does.

    uv run python bench/intake.py [--seconds 15] [--concurrency 8] [--workers 2] [--no-flow]
    uv run python bench/intake.py --against HEAD~1 [--rounds 6 --seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import httpx
import psutil
from _harness.processes import cpu_seconds, wait_healthy
from _harness.results import loadavg, parser, report
from _harness.revision import worktree_at
from _harness.stack import QUIET, api, create_client, own_stack_async
from _harness.stats import pct
from rich.console import Console

from devstack.process import free_port, spawn, stop_group
from referrals_common.auth.case_tokens import generate_private_key_pem
from referrals_common.crypto import FieldCipher

console = Console()

CASE = {
    "diagnosis": {"icd10": "C34.1", "text": "Adenocarcinoma of the right upper lobe"},
    "stage": {"tnm": "cT2aN1M0", "group": "IIB"},
    "reasons": ["choose_treatment", "drug_options"],
    "questions": ["Is my tumour a candidate for targeted therapy (EGFR, ALK)?"],
    "destination": {"preference": "countries", "countries": ["DE", "AT"]},
    "locale": "uk",
    "date_of_birth": "1968-02-29",
    "contact": {"email": "patient@example.org", "phone": "+380671234567"},
}

BASELINE_APP = """
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

class Body(BaseModel):
    model_config = ConfigDict(extra="allow")

def create():
    app = FastAPI()

    @app.post("/echo", status_code=201)
    async def echo(body: Body) -> dict:
        return {"case": body.model_dump(), "id": "x"}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app
"""


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[BODY]]
local prefix
local counter = 0
init = function(args)
  prefix = tostring({}):sub(8) .. string.format("%.0f", os.clock() * 1e6)
end
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Api-Key"] = "KEY",
    ["Idempotency-Key"] = "bench-" .. prefix .. "-" .. counter,
  }, wrk.body)
end
"""


def ensure_wrk() -> str:
    """wrk (C, event-driven) generates the load: a Python client would saturate a 2-core
    machine long before the services do, and measure itself."""
    import shutil

    path = shutil.which("wrk")
    if path:
        return path
    console.print("→ installing wrk from Debian packages (first run only)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("wrk") or "wrk"


def _ms(text: str) -> float:
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * units[unit], 2)
    raise ValueError(text)


def wrk_load(wrk: str, url: str, seconds: float, connections: int, script: str) -> dict:
    """Run wrk and parse its rate, latency percentiles and non-2xx count."""
    import re

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", f.name, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(f.name)
    # wrk pads a latency in seconds ("1.28s ") with a trailing space.
    pcts = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(pcts["50"]),
        "p90_ms": _ms(pcts["90"]),
        "p99_ms": _ms(pcts["99"]),
        "requests": total,
        "errors": int(errors.group(1)) if errors else 0,
    }


async def load(seconds: float, concurrency: int, one_request) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Closed loop: `concurrency` clients for `seconds`; returns rate, latencies and errors."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                ok = await one_request(client)
                latencies.append(time.perf_counter() - began)
                errors += 0 if ok else 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = [v * 1000 for v in latencies]
    return {
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(pct(ms, 0.5), 1),
        "p95_ms": round(pct(ms, 0.95), 1),
        "p99_ms": round(pct(ms, 0.99), 1),
        "requests": len(ms),
        "errors": errors,
    }


def _intake_env(info) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The environment of an intake API under measurement, on the stack `info`."""
    return {
        "REFERRALS_INTAKE_POSTGRES__DSN": info.database_dsns["intake"],
        "REFERRALS_INTAKE_POSTGRES__POOL_SIZE": "10",
        "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": info.kafka_bootstrap,
        "REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM": generate_private_key_pem().decode(),
        "REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY": FieldCipher.generate_key_base64(),
        "REFERRALS_INTAKE_API_KEY_PEPPER": "bench-pepper-" + uuid.uuid4().hex,
        # One key drives the whole load: the per-client rate limit would measure itself.
        "REFERRALS_RATE_LIMIT__ENABLED": "false",
        **QUIET,
    }


async def measure(args: argparse.Namespace) -> dict[str, object]:
    procs: list[subprocess.Popen[bytes]] = []
    async with own_stack_async("bench-intake-", ("intake",)) as (tmp, info):
        try:
            dsn = info.database_dsns["intake"]
            env = {**os.environ, **_intake_env(info)}
            proc, intake = api("intake", env, tmp, "--workers", str(args.workers))
            procs.append(proc)
            (tmp / "baseline_app.py").write_text(BASELINE_APP)
            base_port, base_log = free_port(), tmp / "baseline.log"
            argv = ["uvicorn", "baseline_app:create", "--factory", "--port", str(base_port)]
            argv += ["--workers", str(args.workers), "--no-access-log", "--log-level", "warning"]
            procs.append(spawn([sys.executable, "-m", *argv], log=base_log, env=env, cwd=tmp))
            baseline = f"http://127.0.0.1:{base_port}"
            wait_healthy(baseline, procs[1], base_log)
            key = create_client(env, "bench")
            pids = {"intake": proc.pid, "bare": procs[1].pid, "postgres": info.pids["postgres"]}
            figures = await drive(args, intake, baseline, key, dsn, pids)
        finally:
            for proc in procs:
                stop_group(proc.pid)
    bare_figures, create_figures = figures["bare"], figures["create"]
    return {
        "bare_fastapi_echo": bare_figures,
        "intake_create": create_figures,
        "intake_create_consent_submit_flow": figures.get("flow"),
        "cpu_ms_per_request": figures["cpu_ms"],
        "ratios": {
            "create_rate_vs_bare": round(
                create_figures["requests_per_s"] / bare_figures["requests_per_s"], 3
            ),
            "create_p99_vs_bare": round(create_figures["p99_ms"] / bare_figures["p99_ms"], 2),
        },
        "targets": {
            "creations_per_s>=300": create_figures["requests_per_s"] >= 300,
            "create_p99_ms<=100": create_figures["p99_ms"] <= 100,
        },
        "parameters": {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "loadavg": loadavg(),
        },
    }


def _workers(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def timed_load(pids: dict[str, int], run):  # type: ignore[no-untyped-def]
    """wrk's figures of `run()`, and the CPU-milliseconds per request each process tree of
    `pids` spent meanwhile."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    figures = run()
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    per_request = {
        name: round(1000 * s / max(figures["requests"], 1), 3) for name, s in spent.items()
    }
    return figures, per_request


async def drive(
    args: argparse.Namespace,
    intake: str,
    baseline: str,
    key: str,
    dsn: str,
    pids: dict[str, int],
) -> dict[str, dict]:
    """The three loads, one after the other: bare FastAPI and intake's create under wrk, then
    create → consents → submit from Python clients (not with `--no-flow`)."""
    pg = await asyncpg.create_pool(dsn, min_size=4, max_size=8)

    async def create_and_submit(client: httpx.AsyncClient) -> bool:
        r = await client.post(
            f"{intake}/v1/cases",
            json=CASE,
            headers={"X-Api-Key": key, "Idempotency-Key": str(uuid.uuid4())},
        )
        if r.status_code != 201:
            return False
        case_id, token = r.json()["case"]["id"], r.json()["access_token"]
        # What records' document.stored event would have told intake (no HTTP involved).
        await pg.execute(
            'insert into case_documents (document_id, case_id, kind, stored, "check", '
            "created_at, updated_at) values ($1, $2, 'pathology_report', true, 'pending', "
            "now(), now())",
            uuid.uuid4(),
            uuid.UUID(case_id),
        )
        auth = {"Authorization": f"Bearer {token}"}
        for kind in ("processing", "cross_border"):
            c = await client.put(
                f"{intake}/v1/cases/{case_id}/consents/{kind}",
                json={"version": "2026-01"},
                headers=auth,
            )
            if c.status_code != 200:
                return False
        s = await client.post(
            f"{intake}/v1/cases/{case_id}/submit",
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        return s.status_code == 200

    try:
        wrk = ensure_wrk()
        script = WRK_SCRIPT.replace("BODY", json.dumps(CASE)).replace("KEY", key)
        console.print("warming up…")
        wrk_load(wrk, f"{baseline}/echo", 3, args.concurrency, script)
        wrk_load(wrk, f"{intake}/v1/cases", 3, args.concurrency, script)
        console.print(
            f"[bold]bare FastAPI[/] {args.seconds:.0f} s x {args.concurrency} connections"
        )
        bare, bare_cpu = timed_load(
            {"bare": pids["bare"]},
            lambda: wrk_load(wrk, f"{baseline}/echo", args.seconds, args.concurrency, script),
        )
        console.print(f"[bold]intake: create[/] {args.seconds:.0f} s x {args.concurrency}")
        replaced = _workers(pids["intake"])
        create, create_cpu = timed_load(
            {"intake": pids["intake"], "postgres": pids["postgres"]},
            lambda: wrk_load(wrk, f"{intake}/v1/cases", args.seconds, args.concurrency, script),
        )
        # A worker uvicorn replaced meanwhile (one that missed its health check) spent CPU
        # these figures do not count, and served nothing while it started again.
        create["workers_replaced"] = len(replaced - _workers(pids["intake"]))
        cpu_ms = {"bare_echo": bare_cpu["bare"], "intake_create": create_cpu}
        if getattr(args, "no_flow", False):
            return {"bare": bare, "create": create, "cpu_ms": cpu_ms}
        console.print(
            f"[bold]intake: create → consents → submit[/] {args.seconds:.0f} s "
            f"x {args.flow_clients} clients (Python client: 4 requests a case)"
        )
        flow = await load(args.seconds, args.flow_clients, create_and_submit)
    finally:
        await pg.close()
    return {"bare": bare, "create": create, "flow": flow, "cpu_ms": cpu_ms}


async def measure_against(args: argparse.Namespace) -> dict[str, object]:
    """Intake at `args.against` and this tree's, side by side on one stack (see the module's
    docstring): medians per creation of each process tree's CPU-ms, and the rates."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with worktree_at(args.against, "bench-intake-old-") as worktree:
        async with own_stack_async("bench-intake-ab-", ("intake",)) as (tmp, info):
            try:
                env = {**os.environ, **_intake_env(info)}
                old_env = {
                    **env,
                    "PYTHONPATH": os.pathsep.join(
                        str(worktree / part / "src") for part in ("services/intake", "libs/common")
                    ),
                }
                bases = {}
                for name, its_env in (("old", old_env), ("new", env)):
                    folder = tmp / name
                    folder.mkdir()
                    procs[name], bases[name] = api(
                        "intake", its_env, folder, "--workers", str(args.workers), timeout=300
                    )
                key = create_client(env, "bench")
                return _alternate(args, procs, bases, key, info.pids["postgres"])
            finally:
                for proc in procs.values():
                    stop_group(proc.pid)


def _alternate(
    args: argparse.Namespace,
    procs: dict[str, subprocess.Popen[bytes]],
    bases: dict[str, str],
    key: str,
    postgres: int,
) -> dict[str, object]:
    wrk = ensure_wrk()
    script = WRK_SCRIPT.replace("BODY", json.dumps(CASE)).replace("KEY", key)
    console.print("warming up…")
    for base in bases.values():
        wrk_load(wrk, f"{base}/v1/cases", 3, args.concurrency, script)
    rows: list[dict[str, Any]] = []
    ways = list(procs)
    for round_ in range(args.rounds):
        for way in ways if round_ % 2 == 0 else ways[::-1]:
            figures, cpu_ms = timed_load(
                {"intake": procs[way].pid, "postgres": postgres},
                lambda way=way: wrk_load(
                    wrk, f"{bases[way]}/v1/cases", args.seconds, args.concurrency, script
                ),
            )
            row = {"round": round_, "way": way, "requests_per_s": figures["requests_per_s"]}
            row |= {"errors": figures["errors"], "p99_ms": figures["p99_ms"]}
            row |= {f"{k}_cpu_ms": v for k, v in cpu_ms.items()}
            console.print(row)
            rows.append(row)
    medians = {}
    for way in ways:
        mine = [r for r in rows if r["way"] == way]
        medians[way] = {
            k: round(statistics.median(r[k] for r in mine), 3)
            for k in ("intake_cpu_ms", "postgres_cpu_ms", "requests_per_s", "p99_ms")
        }
        medians[way]["errors"] = sum(r["errors"] for r in mine)
    result = {
        "against": args.against,
        "rounds": args.rounds,
        "seconds_per_load": args.seconds,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "medians_per_creation": medians,
        "loadavg": loadavg(),
    }
    console.print(result)
    return result


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--seconds", type=float, default=15.0)
    cli.add_argument("--concurrency", type=int, default=8)
    cli.add_argument("--flow-clients", type=int, default=8)
    cli.add_argument("--workers", type=int, default=2)
    cli.add_argument(
        "--no-flow", action="store_true", help="only the creations (no create → submit flow)"
    )
    cli.add_argument("--against", help="a commit: its intake API A/B against this tree's")
    cli.add_argument("--rounds", type=int, default=6, help="with --against")
    args = cli.parse_args()
    if args.against:
        report("intake-ab.json", asyncio.run(measure_against(args)))
    else:
        report("intake.json", asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
