"""Where submit → offered goes, hop by hop, read from the services' own outbox and inbox rows of a
running platform (this benchmark's own, while it runs):

    python bench/_pipeline/hops.py STACK_DIR [--skip N] [--cases N]

STACK_DIR holds the stack's `stack.json` (a `bench/pipeline.py` run's `<tmp>/stack`, read while
the run is on: the stack is removed at its end). Cases are taken in the order they were
submitted (`--skip` the warm-up ones). Every time is PostgreSQL's: an outbox row's
`created_at` and an inbox row's `processed_at` are the start of the transaction that wrote them
(`now()`), `sent_at` the start of the relay's claim. Per case, for the four hops of
bench/pipeline.py's docstring:

    hN_relay    transaction start → the relay's claim of its row: the transaction's own work,
                its commit, the NOTIFY and the relay's wake-up (hop 1: intake's submit)
    hN_kafka    the claim → the next consumer's transaction start: produce, the broker, the
                consumer's fetch and its wait for a worker and a database connection

Not a test and not part of the pipeline's JSON: a look inside one run, printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

HOPS = (
    ("intake", "case.submitted", "translation"),
    ("translation", "document.language_accepted", "intake"),
    ("intake", "case.ready_for_referral", "partners"),
    ("partners", "referral.offered", None),
)


def _ms(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _rows(dsn: str) -> tuple[list[asyncpg.Record], dict[Any, datetime]]:
    conn = await asyncpg.connect(dsn)
    try:
        outbox = await conn.fetch(
            "select id, aggregate_id, event_type, created_at, sent_at from outbox"
        )
        inbox = await conn.fetch(
            "select event_id, min(processed_at) as at from inbox group by event_id"
        )
    finally:
        await conn.close()
    return list(outbox), {row["event_id"]: row["at"] for row in inbox}


async def split_cases(
    dsns: dict[str, str], cases: list[str] | None = None, skip: int = 0, count: int = 10**9
) -> dict[str, dict[str, float]]:
    """Per case that went all the way, its milliseconds in each part (`hN_relay`, `hN_kafka`):
    the `cases` given, or those submitted `skip`th to `skip + count`th."""
    services = {hop[0] for hop in HOPS} | {hop[2] for hop in HOPS if hop[2]}
    rows = {service: await _rows(dsns[service]) for service in services}
    by_case: dict[tuple[str, str], list[asyncpg.Record]] = {}
    for service, (outbox, _) in rows.items():
        for row in outbox:
            kind = row["event_type"].removeprefix("referrals.").removesuffix(".v1")
            by_case.setdefault((service, kind), []).append(row)
    if cases is None:
        submitted = sorted(
            by_case.get(("intake", "case.submitted"), []), key=lambda r: r["created_at"]
        )
        chosen = {row["aggregate_id"] for row in submitted[skip : skip + count]}
    else:
        chosen = set(cases)
    events: dict[tuple[str, str, str], list[asyncpg.Record]] = {}
    for (service, kind), found in by_case.items():
        for row in found:
            if row["aggregate_id"] in chosen:
                events.setdefault((service, kind, row["aggregate_id"]), []).append(row)
    out: dict[str, dict[str, float]] = {}
    for case in chosen:
        began: datetime | None = None
        measured: dict[str, float] = {}
        for n, (service, kind, consumer) in enumerate(HOPS, start=1):
            written = events.get((service, kind, case))
            if not written or (began is None and n > 1):
                break
            start = began or min(row["created_at"] for row in written)
            claimed = max(row["sent_at"] or start for row in written)
            measured[f"h{n}_relay"] = _ms(start, claimed)
            if consumer is None:
                break
            applied = [rows[consumer][1].get(row["id"]) for row in written]
            if None in applied:
                break
            # The next transaction begins with the last of the events it needed.
            began = max(at for at in applied if at is not None)
            measured[f"h{n}_kafka"] = _ms(claimed, min(at for at in applied if at is not None))
        if "h4_relay" in measured:
            out[case] = measured
    return out


async def split(stack: Path, skip: int, cases: int) -> dict[str, list[float]]:
    """Per part (`hN_relay`, `hN_kafka`), its milliseconds for each case that went all the
    way."""
    dsns = json.loads((stack / "stack.json").read_text())["database_dsns"]
    parts: dict[str, list[float]] = {}
    for measured in (await split_cases(dsns, skip=skip, count=cases)).values():
        for part, value in measured.items():
            parts.setdefault(part, []).append(value)
    return parts


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    cli.add_argument("stack", type=Path)
    cli.add_argument("--skip", type=int, default=0, help="cases submitted first, left out")
    cli.add_argument("--cases", type=int, default=10**9)
    args = cli.parse_args()
    parts = asyncio.run(split(args.stack, args.skip, args.cases))
    if not parts:
        print("no case went all the way")
        return
    print(f"{len(next(iter(parts.values())))} cases, milliseconds")
    for part in sorted(parts, key=lambda p: (p[1], p.endswith("kafka"))):
        values = parts[part]
        print(
            f"{part:10s} p50 {_quantile(values, 0.5):8.1f}  p90 {_quantile(values, 0.9):8.1f}"
            f"  p99 {_quantile(values, 0.99):8.1f}"
        )


if __name__ == "__main__":
    main()
