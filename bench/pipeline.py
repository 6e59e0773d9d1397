"""Benchmark: the whole platform, submit → `referral.offered` in the center's inbox, beside a raw
aiokafka chain of as many hops.

Not a test: it prints figures and writes bench/results/pipeline.json and pipeline.png. It starts
its own stack and platform in a temporary directory (each service one process, as `make up` runs
them, or every role its own process with `--processes role`; the trace viewer only with
`--trace-viewer`), or measures a
running `make up` platform with `--attach`. Partner front ends
(concurrent httpx clients with the demo front end's key) open cases for Germany, give the consents,
upload three text-layer PDFs of 100 KB - 1 MB each (an English pathology report, the German
discharge summary, and an English imaging report or a German lab report: all acceptable for
Germany, so each case goes straight to ready and is referred), wait until intake lists the three
documents, and submit. After a few warm-up cases and an idle spell (what the processes burn with
nothing to do), three phases:

1. fixed arrival rate (`--rate`): the phase's cases are staged first (opened and filled by
   `--clients` front ends, then every document read by translation, as when a patient uploads
   days before submitting; the staging's upload and reading rates are reported too), then case i
   is submitted at `i / rate` exactly, not when the previous one finished. With `--phase1 lead`
   case i is instead opened `--lead` s before its submit, so uploads and reading run alongside
   (a submit whose case is not ready in time goes late, and is counted);
2. staged cases at maximum rate: as many cases again are staged (opened, filled, every document
   read), then `--clients` front ends submit them back to back: the rate the event pipeline
   carries from submit to offer when the documents came before the submit, as they do;
3. whole cases at maximum rate: `--clients` front ends each open, fill and submit whole cases
   back to back, documents and all: the platform's sustained rate for complete cases, uploads
   and document readings included.

Per case it measures submit (the HTTP answer) → `referral.offered` seen on the center's inbox topic
(an aiokafka reader assigned to every inbox from its end, in a process of its own), and per phase
the sustained rate (offered cases per second between the 10th and 90th percentile of offers),
p50/p95/p99 latency, each process's CPU seconds and peak RSS (psutil, the process and its
children, every 0.5 s), CPU seconds per case above idle (for the max-rate phases, from the first
submit until every consumer group has caught up, between the resource samples enclosing that
span: all the work the phase's cases cause, e-mails and projections off the path to the offer
included, and none left over from the phase before;
and the rate all cores would carry if CPU were the only limit), every consumer group's lag per
topic over time (committed offsets against log end offsets, every second), and each consumer's
handler time by event type (from its Prometheus metrics). The machine's busy CPU is sampled
too: what the platform and the benchmark did not use was other load on the machine.

Its own platform loads the sample cancer centers with their weekly capacity raised above the
cases of the run (the sample's German centers take 50 a week, so a run would otherwise end in
`case.unroutable`); attached to `make up`, the sample capacities apply.

The floor, measured in the same run: the pipeline has four Kafka hops from submit to offer, each an
outbox row written in a transaction, published by that service's relay and consumed by the next
service (counted from the code, and shown for the first warm-up case: `chain_of_one_warm_up_case`
in the JSON):

    intake API   → case.submitted                 (referrals.cases.v1)           → translation
    translation  → document.language_accepted x3  (referrals.language-checks.v1) → intake
    intake       → case.ready_for_referral        (referrals.cases.v1)           → partners
    partners     → referral.offered               (referrals.partner-inbox.<center>.v1) → center

The floor is the same chain in raw aiokafka with no work (one process, a consumer group and an
idempotent acks=all producer per hop, offsets committed after each batch): the driver produces one
record; hop 1 consumes it and produces three; hop 2 consumes those and produces one after the
third of a case; hop 3 consumes that and produces one, which the reader sees. It runs at the
same arrival rate, and as fast as one producer can send. Pipeline latencies are printed as ratios
to the floor's.

    uv run python bench/pipeline.py [--cases 300] [--rate 10] [--clients 32] [--attach] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness.platform_metrics import LagSampler, handler_window, scrape_handlers
from _harness.processes import Helper, ResourceSampler
from _harness.results import RESULTS, loadavg, machine_info, parser
from _harness.stack import own_platform
from _harness.stats import summary, sustained_rate
from _pipeline import database_work
from _pipeline.documents import DOC_KINDS, DocumentSet
from _pipeline.front_ends import CaseRun, FrontEnds
from _pipeline.hops import split_cases
from _pipeline.report import build_results, plot, show, write_json
from _pipeline.roles import FLOOR_PAYLOADS, floor_hops, watch
from aiokafka import AIOKafkaProducer
from rich.console import Console

console = Console()

OFFERED = "referrals.referral.offered.v1"
# Outcomes that mean a case will never be offered: the watcher reports them too.
DEAD_ENDS = {
    "referrals.case.unroutable.v1": "unroutable",
    "referrals.document.translation_required.v1": "translation required",
    "referrals.document.unreadable.v1": "unreadable",
}


async def sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


class Bench:
    def __init__(self, stack: Any, plat: Any, args: argparse.Namespace, docs: DocumentSet):
        from referrals_common.contracts import topics

        self.stack = stack
        self.platform = plat
        self.args = args
        keys = plat.keys()
        self.centers = sorted(keys["centers"])
        self.inboxes = [topics.partner_inbox(c) for c in self.centers]
        self.watched = [*self.inboxes, topics.ROUTING, topics.LANGUAGE_CHECKS]
        self.front = FrontEnds(plat.apis, str(keys["front_end"]), docs, args.clients, args.seed)
        roots = {name: pid for name, pid in plat.pids.items() if plat.owns(pid)}
        roots |= {name: pid for name, pid in stack.pids.items() if stack.owns(pid)}
        self.sampler = ResourceSampler(roots)
        self.lag = LagSampler(stack.kafka_bootstrap, interval=args.lag_interval)
        self.offered: dict[str, float] = {}
        self.dead_ends: dict[str, str] = {}
        self.floor_seen: dict[str, float] = {}
        self.watcher = Helper(
            "inbox reader",
            __file__,
            [
                "--role",
                "watch",
                "--bootstrap",
                stack.kafka_bootstrap,
                "--topics",
                ",".join(self.watched),
                "--types",
                ",".join([OFFERED, *DEAD_ENDS]),
            ],
            on_line=self._on_pipeline_event,
        )
        self.windows: dict[str, tuple[float, float]] = {}
        self.drained: dict[str, float] = {}
        """phase → when every consumer group had caught up after its last case was offered: the
        end of the window its CPU per case is measured over (the work a case causes off the
        path to its offer, e-mails and projections, included)."""
        self.runs: dict[str, list[CaseRun]] = {}
        self.chain: list[dict[str, Any]] = []
        self.handlers: dict[str, Any] = {}
        self.case_hops: dict[str, dict[str, dict[str, float]]] = {}
        """phase → case → milliseconds in each part of its four hops (`_pipeline.hops`), read
        from the services' outbox and inbox rows once the phase's cases were offered."""
        self.staging: dict[str, Any] = {}
        self.staging_staged: dict[str, Any] = {}
        self.database_work: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        """phase → PostgreSQL's counters before its first case and after its last work
        (`_pipeline.database_work`)."""

    def _on_pipeline_event(self, item: list[Any]) -> None:
        at, kind, key = item
        if kind == OFFERED:
            self.offered.setdefault(key, at)
        elif kind in DEAD_ENDS:
            self.dead_ends.setdefault(key, DEAD_ENDS[kind])

    async def start(self) -> None:
        from referrals_common.contracts import topics
        from referrals_common.messaging.kafka import ensure_topics

        await ensure_topics(self.stack.kafka_bootstrap, list(topics.PLATFORM_TOPICS))
        await self.watcher.start()
        self.sampler.roots["bench-driver"] = os.getpid()
        self.sampler.roots["bench-inbox-reader"] = self.watcher.pid
        self.sampler.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.lag.stop()
        self.sampler.stop()
        await self.front.close()

    # --------------------------------------------------------------------------- the phases

    async def settle(self, runs: list[CaseRun], timeout: float) -> float:
        """Until every submitted case was offered or reached a dead end; the time of the last."""
        deadline = time.time() + timeout
        pending = [r for r in runs if r.submitted and not r.error]
        while time.time() < deadline:
            pending = [r for r in pending if r.case_id not in self.offered]
            pending = [r for r in pending if r.case_id not in self.dead_ends]
            if not pending:
                break
            await asyncio.sleep(0.1)
        ends = [self.offered.get(r.case_id) or 0.0 for r in runs]
        return max([*ends, time.time() if pending else 0.0])

    async def warm_up(self) -> None:
        """A few cases one after another (pools, consumer groups, caches), the first of them
        followed on every platform topic to show its chain of events."""
        from devstack.demo import EventWatcher

        began = time.monotonic()
        watcher = EventWatcher(self.stack.kafka_bootstrap, self.centers, began)
        await watcher.start()
        runs = []
        try:
            for i in range(max(1, self.args.warmup)):
                run = CaseRun(900_000 + i, "warm-up")
                await self.front.prepare(run)
                if i == 0:
                    watcher.follow(run.case_id)
                await self.front.submit(run)
                submitted_mono = time.monotonic() - began
                await self.settle([run], 600)
                if i == 0:
                    await asyncio.sleep(1.0)  # the events that follow the offer, for the record
                    self.chain = [
                        {
                            "ms_after_submit": round((e.at - submitted_mono) * 1000, 1),
                            "topic": e.topic,
                            "type": e.type.removeprefix("referrals.").removesuffix(".v1"),
                        }
                        for e in sorted(watcher.seen, key=lambda e: e.at)
                    ]
                runs.append(run)
        finally:
            await watcher.stop()
        missing = [r.case_id for r in runs if r.case_id not in self.offered]
        if missing:
            raise RuntimeError(
                f"warm-up cases were not offered: {missing}; dead ends: {self.dead_ends}"
            )
        latencies = [self.offered[r.case_id] - r.submitted for r in runs]
        console.print(
            f"warm-up: {len(runs)} cases offered, submit → offered "
            + ", ".join(f"{v * 1000:.0f} ms" for v in latencies)
        )

    async def idle(self, seconds: float) -> None:
        """The platform with nothing to do: what its processes burn while waiting."""
        if seconds <= 0:
            return
        console.print(f"[bold]idle[/]: {seconds:g} s with no cases")
        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        await asyncio.sleep(seconds)
        self.windows["idle"] = (start, time.time())
        self.handlers["idle"] = handler_window(before, await scrape_handlers(self.platform.metrics))

    async def stage(self, runs: list[CaseRun], window: str = "staging") -> dict[str, Any]:
        """Before a phase of staged cases: open and fill every case (`clients` front ends at a
        time), then wait until translation has read every document and intake lists them all,
        so that the phase submits on schedule and times submit → offer alone."""
        console.print(
            f"[bold]{window}[/]: opening {len(runs)} cases and uploading their "
            "documents; waiting until translation has read them all"
        )
        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        todo = iter(runs)

        async def client() -> None:
            for run in todo:
                try:
                    await self.front.prepare(run)
                except Exception as exc:
                    run.error = f"{type(exc).__name__}: {exc}"[:300]

        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        uploaded = time.time()
        await asyncio.sleep(2 * self.args.lag_interval)
        deadline = time.time() + self.args.drain_timeout
        while time.time() < deadline:
            lag = self.lag.samples[-1][1] if self.lag.samples else {}
            behind = sum(
                lag.get(group, {}).get("referrals.documents.v1", 0)
                for group in ("translation.language-checks", "intake.case-lifecycle")
            )
            if self.lag.samples and self.lag.samples[-1][0] > uploaded and behind == 0:
                break
            await asyncio.sleep(0.5)
        read = time.time()
        handlers = handler_window(before, await scrape_handlers(self.platform.metrics))
        translation = handlers.get("translation-consumer") or handlers.get("translation", {})
        stored = translation.get("document.stored", {})
        ok = [r for r in runs if not r.error]
        staging = {
            "cases": len(runs),
            "prepared": len(ok),
            "errors": dict(Counter(r.error[:120] for r in runs if r.error)),
            "open_consent_upload_listed_s": round(uploaded - start, 1),
            "until_all_documents_read_s": round(read - start, 1),
            "uploads_per_s": round(3 * len(ok) / (uploaded - start), 2),
            "documents_read_per_s": round(stored.get("calls", 0) / (read - start), 2),
            "translation_document_handler": stored,
            "prepare_per_case": summary([r.prepare_s for r in ok]),
            "resources": self.sampler.window(start, read),
        }
        self.windows[window] = (start, read)
        refresh = [r.case_id for r in ok]
        gate = asyncio.Semaphore(self.args.clients)

        async def renew(case_id: str) -> None:
            async with gate:
                await self.front.refresh(case_id)

        await asyncio.gather(*(renew(c) for c in refresh))
        return staging

    async def fixed_rate(self, n: int, rate: float) -> None:
        """Submits at start + i / rate. Staged (default): every case was opened and filled, and
        its documents read, before; `--phase1 lead`: case i is opened `lead` s before its
        submit is due, so uploads and reading run alongside (a submit whose case is not ready
        by then goes late)."""
        lead = self.args.lead if self.args.phase1 == "lead" else 0.0
        runs = [CaseRun(i, "fixed") for i in range(n)]
        if self.args.phase1 == "ahead":
            self.staging = await self.stage(runs)
            await self.quiet()  # the staging's own work (readings, e-mails) is not this phase's
        start = time.time() + 0.5

        async def one(run: CaseRun) -> None:
            run.due = start + lead + run.index / rate
            try:
                if self.args.phase1 == "lead":
                    await sleep_until(run.due - lead)
                    await self.front.prepare(run)
                elif run.error:
                    return
                await sleep_until(run.due)
                await self.front.submit(run)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"[:300]

        how = (
            "of staged cases"
            if self.args.phase1 == "ahead"
            else f"(each case opened {lead:g} s before its submit)"
        )
        console.print(f"[bold]phase 1[/]: {n} submits at {rate:g}/s {how}")
        before = await scrape_handlers(self.platform.metrics)
        await asyncio.gather(*(one(r) for r in runs))
        end = await self.settle(runs, self.args.drain_timeout)
        after = await scrape_handlers(self.platform.metrics)
        self.handlers["fixed_rate"] = handler_window(before, after)
        self.runs["fixed_rate"] = runs
        self.windows["fixed_rate"] = (start, end)
        await self.split_hops("fixed_rate")

    async def staged_max_rate(self, n: int) -> None:
        """Staged cases (opened, filled, every document read) submitted by `clients` front
        ends back to back: how many cases per second the event pipeline carries from submit to
        offer when documents came days before, as they do."""
        runs = [CaseRun(i, "staged") for i in range(n)]
        self.staging_staged = await self.stage(runs, window="staging_2")
        await self.quiet()  # the staging's own work (readings, e-mails) is not this phase's
        console.print(
            f"[bold]phase 2[/]: {n} staged cases, {self.args.clients} front ends submitting as "
            "fast as they can"
        )
        await self.back_to_back("staged_max_rate", runs, self.front.submit)

    async def max_rate(self, n: int) -> None:
        """`clients` front ends open, fill and submit cases back to back."""
        console.print(
            f"[bold]phase 3[/]: {n} whole cases, {self.args.clients} front ends opening, "
            "filling and submitting as fast as they can"
        )

        async def whole(run: CaseRun) -> None:
            await self.front.prepare(run)
            await self.front.submit(run)

        await self.back_to_back("max_rate", [CaseRun(i, "max") for i in range(n)], whole)

    async def back_to_back(
        self, phase: str, runs: list[CaseRun], step: Callable[[CaseRun], Awaitable[None]]
    ) -> None:
        """`clients` front ends taking the phase's cases in turn, each running `step` on one
        case after another (a case whose staging failed is left out), until all are offered."""
        todo = iter(r for r in runs if not r.error)

        async def client() -> None:
            for run in todo:
                try:
                    await step(run)
                except Exception as exc:
                    run.error = f"{type(exc).__name__}: {exc}"[:300]

        # PostgreSQL's counters of what came before are in by now (`database_work.FLUSH_S`).
        await asyncio.sleep(database_work.FLUSH_S)
        work_before = await database_work.counters(self.stack.postgres_dsn)
        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        end = await self.settle(runs, self.args.drain_timeout)
        self.drained[phase] = await self.caught_up()
        after = await scrape_handlers(self.platform.metrics)
        await asyncio.sleep(database_work.FLUSH_S)
        self.database_work[phase] = (
            work_before,
            await database_work.counters(self.stack.postgres_dsn),
        )
        self.handlers[phase] = handler_window(before, after)
        self.runs[phase] = runs
        self.windows[phase] = (start, end)
        if phase == "staged_max_rate":  # a whole case's documents may be read after its submit
            await self.split_hops(phase)

    async def split_hops(self, phase: str) -> None:
        """Where each offered case of `phase` spent its submit → offer, hop by hop."""
        offered = [r.case_id for r in self.runs[phase] if r.case_id in self.offered]
        try:
            self.case_hops[phase] = await split_cases(self.stack.database_dsns, offered)
        except Exception as exc:  # a look inside, not a figure: the phase's figures stand
            console.print(f"[yellow]hops of {phase} not read: {exc!r}[/]")

    async def caught_up(self, timeout: float = 120.0) -> float:
        """The first moment (of the lag sampler's) at which no consumer group lags, waiting
        for it at most `timeout`; that moment, or now when it never came."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            await asyncio.sleep(0.5)
            if self.lag.samples and not any(
                sum(t.values()) for t in self.lag.samples[-1][1].values()
            ):
                return float(self.lag.samples[-1][0])
        return time.time()

    async def quiet(self, timeout: float = 60.0) -> None:
        """Between phases: until every consumer group has caught up (or `timeout`)."""
        deadline = time.time() + timeout
        await asyncio.sleep(2.0)
        while time.time() < deadline:
            if self.lag.samples and not any(
                sum(t.values()) for t in self.lag.samples[-1][1].values()
            ):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)

    def phase_result(self, name: str) -> dict[str, Any]:
        runs = self.runs[name]
        start, end = self.windows[name]
        ok = [r for r in runs if r.submitted and not r.error]
        offered = [r for r in ok if r.case_id in self.offered]
        latencies = [self.offered[r.case_id] - r.submitted for r in offered]
        offer_times = [self.offered[r.case_id] for r in offered]
        submits = [r.submitted for r in ok]
        errors = Counter(r.error[:120] for r in runs if r.error)
        dead = Counter(self.dead_ends[r.case_id] for r in ok if r.case_id in self.dead_ends)
        late = [r.submitted - r.submit_ms / 1000 - r.due for r in ok if r.due is not None]
        result: dict[str, Any] = {
            "cases": len(runs),
            "submitted": len(ok),
            "offered": len(offered),
            "dead_ends": dict(dead),
            "not_offered_in_time": len(ok) - len(offered) - sum(dead.values()),
            "errors": dict(errors),
            "submit_rate_per_s": round(sustained_rate(submits), 2),
            "sustained_offered_per_s": round(sustained_rate(offer_times), 2),
            "overall_offered_per_s": round(len(offered) / (max(offer_times) - min(submits)), 2)
            if offered
            else 0.0,
            "latency_submit_to_offered": summary(latencies),
            **self.hops_result(name, offered),
            "submit_http": summary([r.submit_ms / 1000 for r in ok]),
            "prepare_open_consent_upload_listed": summary([r.prepare_s for r in ok]),
            "seconds": round(end - start, 1),
            "resources": self.sampler.window(start, end),
            "peak_consumer_lag": self.lag.window(start, end),
            "consumer_handlers": self.handlers.get(name, {}),
        }
        if name in self.database_work:  # what the phase asked PostgreSQL, per offered case
            result["database_work_per_case"] = database_work.per_case(
                *self.database_work[name], len(offered)
            )
        if name in self.drained:  # CPU over the phase until every consumer caught up
            drained = self.sampler.window(start, self.drained[name], enclosing=True)
            result["cpu_window_seconds"] = drained.get("seconds")
            result["cpu_per_case"] = self.cpu_per_case(drained, len(offered))
        else:
            result["cpu_per_case"] = self.cpu_per_case(result["resources"], len(offered))
        if late:
            result["submits_late_over_100ms"] = sum(v > 0.1 for v in late)
            result["submit_lateness_max_s"] = round(max(late), 2)
        return result

    def hops_result(self, name: str, offered: list[CaseRun]) -> dict[str, Any]:
        """The phase's hops (`_pipeline.hops`: each part's p50/p95/p99 in ms) and its slowest
        cases, each with its submit → offer and the parts of it: where a tail came from."""
        hops = self.case_hops.get(name)
        if not hops:
            return {}
        parts: dict[str, list[float]] = {}
        for measured in hops.values():
            for part, ms in measured.items():
                parts.setdefault(part, []).append(ms / 1000)
        slowest = sorted(offered, key=lambda r: r.submitted - self.offered[r.case_id])[:3]
        order = sorted(parts, key=lambda part: (part[1], part.endswith("kafka")))
        return {
            "hops": {part: summary(parts[part], with_max=False) for part in order},
            "slowest_cases": [
                {
                    "submitted_s_into_phase": round(r.submitted - self.windows[name][0], 2),
                    "submit_to_offered_ms": round(
                        (self.offered[r.case_id] - r.submitted) * 1000, 1
                    ),
                    "submit_http_ms": round(r.submit_ms, 1),
                    "hops_ms": {k: round(v, 1) for k, v in hops.get(r.case_id, {}).items()},
                }
                for r in slowest
            ],
        }

    def cpu_per_case(self, resources: dict[str, Any], cases: int) -> dict[str, Any]:
        """CPU seconds per offered case by process, above what each burns idle, and the rate
        the machine's cores could carry if CPU were the only limit and nothing else ran."""
        if not resources or not cases:
            return {}
        idle = self.sampler.window(*self.windows["idle"]) if "idle" in self.windows else {}
        idle_cores = {k: v["cores"] for k, v in idle.get("processes", {}).items()}
        platform = [k for k in resources["processes"] if not k.startswith("bench-")]
        work = {
            k: max(
                0.0,
                resources["processes"][k]["cpu_s"] - idle_cores.get(k, 0.0) * resources["seconds"],
            )
            / cases
            for k in platform
        }
        total = sum(work.values())
        spare = (os.cpu_count() or 1) - sum(idle_cores.get(k, 0.0) for k in platform)
        return {
            "platform_cpu_s_per_case_gross": round(
                sum(resources["processes"][k]["cpu_s"] for k in platform) / cases, 3
            ),
            "platform_cpu_s_per_case_above_idle": round(total, 3),
            "by_process_above_idle": {
                k: round(v, 4) for k, v in sorted(work.items(), key=lambda kv: -kv[1]) if v
            },
            "idle_cores": round(sum(idle_cores.get(k, 0.0) for k in platform), 3),
            "cases_per_s_if_cpu_bound_on_all_cores": round(spare / total, 2) if total else None,
        }

    # ------------------------------------------------------------------------------ the floor

    async def floor(self, n: int, rate: float) -> dict[str, Any]:
        """The same four hops in raw aiokafka (see the module doc): at `rate`, then flat out."""
        from referrals_common.messaging.kafka import ensure_topics

        bootstrap = self.stack.kafka_bootstrap
        tag = uuid.uuid4().hex[:6]
        names = [f"bench.floor-{tag}.hop{i}" for i in range(4)]
        await ensure_topics(bootstrap, names, partitions=6, with_dead_letters=False)

        def seen(item: list[Any]) -> None:
            self.floor_seen.setdefault(item[2], item[0])

        hops = Helper(
            "floor hops",
            __file__,
            [
                "--role",
                "floor-hops",
                "--bootstrap",
                bootstrap,
                "--topics",
                ",".join(names),
                "--group",
                f"bench-floor-{tag}",
            ],
        )
        reader = Helper(
            "floor reader",
            __file__,
            ["--role", "watch", "--bootstrap", bootstrap, "--topics", names[3]],
            on_line=seen,
        )
        await hops.start()
        await reader.start()
        self.sampler.roots["bench-floor-hops"] = hops.pid
        self.sampler.roots["bench-floor-reader"] = reader.pid
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await producer.start()
        payload = b"x" * FLOOR_PAYLOADS[0]
        results: dict[str, Any] = {"topics": names}
        try:
            for label, paced in (("fixed_rate", True), ("max_rate", False)):
                sent: dict[str, float] = {}
                start = time.time() + 0.2
                for i in range(n):
                    if paced:
                        await sleep_until(start + i / rate)
                    key = str(uuid.uuid4())
                    sent[key] = time.time()
                    await producer.send(names[0], payload, key=key.encode())
                await producer.flush()
                deadline = time.time() + 120
                while time.time() < deadline and any(k not in self.floor_seen for k in sent):
                    await asyncio.sleep(0.05)
                arrived = [self.floor_seen[k] for k in sent if k in self.floor_seen]
                end = max(arrived) if arrived else time.time()
                results[label] = {
                    "records": n,
                    "arrived": len(arrived),
                    "rate_per_s": rate if paced else None,
                    "send_rate_per_s": round(n / (max(sent.values()) - min(sent.values())), 1),
                    "sustained_per_s": round(sustained_rate(arrived), 1),
                    "latency": summary(
                        [self.floor_seen[k] - t for k, t in sent.items() if k in self.floor_seen]
                    ),
                    "resources": self.sampler.window(start, end),
                }
                self.windows[f"floor_{label}"] = (start, end)
                self.runs[f"floor_{label}"] = [
                    CaseRun(0, label, k, submitted=t) for k, t in sent.items()
                ]
                await asyncio.sleep(2.0)
        finally:
            await producer.stop()
            await hops.stop()
            await reader.stop()
        return results


def bench_seed_file(tmp: Path, cases: int) -> Path:
    """The sample registry with every center's weekly capacity raised above the cases this run
    submits (the sample's German centers take 50 a week: a business limit, not the platform's)."""
    import yaml

    from referrals_partners import registry

    sample = Path(registry.__file__).with_name(registry.SAMPLE_REGISTRY_FILE)
    seed = yaml.safe_load(sample.read_text())
    for center in seed["centers"]:
        center["weekly_capacity"] = max(int(center["weekly_capacity"]), 20 * cases)
    path = tmp / "centers.bench.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False, allow_unicode=True))
    return path


def own_platform_env(cases: int) -> Callable[[Path], dict[str, str]]:
    """What this benchmark's own platform is started with, in the run's directory."""

    def env(tmp: Path) -> dict[str, str]:
        return {
            "REFERRALS_PARTNERS_SEED_FILE": str(bench_seed_file(tmp, cases)),
            # One front end's key opens every case at full speed: no per-client rate limit here.
            "REFERRALS_RATE_LIMIT__ENABLED": "false",
        }

    return env


async def run(args: argparse.Namespace, docs: DocumentSet, extra: dict[str, Any]) -> dict[str, Any]:
    platform = own_platform(
        args.attach,
        args.root,
        args.keep,
        "bench-pipeline-",
        own_platform_env(args.cases),
        processes=args.processes,
        trace_viewer=args.trace_viewer,
    )
    async with platform as (stack, plat):
        if args.attach:
            from devstack.stack import resolve_root

            console.print(
                f"[yellow]attached to {resolve_root(args.root)}[/]: the sample centers' weekly "
                "capacity applies (the German ones take 50 cases a week); cases past it end "
                "unroutable and are counted so"
            )
        extra["platform"] = {
            "own_stack": not args.attach,
            "trace_viewer": plat.trace_viewer or None,
            "processes": sorted(plat.pids),
            "process_per": None if args.attach else args.processes,
        }
        bench = Bench(stack, plat, args, docs)
        try:
            await bench.start()
            await bench.warm_up()
            await bench.lag.start()
            await bench.idle(args.idle)
            await bench.fixed_rate(args.cases, args.rate)
            await bench.quiet()
            await bench.staged_max_rate(args.cases)
            await bench.quiet()
            await bench.max_rate(args.cases)
            await bench.quiet()
            console.print(f"[bold]floor[/]: {args.cases} records at {args.rate:g}/s, then flat out")
            floor = await bench.floor(args.cases, args.rate)
        finally:
            await bench.stop()
    extra["machine"]["loadavg_end"] = loadavg()
    return build_results(bench, floor, args, extra)


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--cases", type=int, default=300, help="cases per phase")
    cli.add_argument("--rate", type=float, default=10.0, help="phase 1 arrivals per second")
    cli.add_argument("--clients", type=int, default=32, help="concurrent front ends")
    cli.add_argument(
        "--phase1",
        choices=["ahead", "lead"],
        default="ahead",
        help="phase 1's cases: staged before the phase (ahead), or opened --lead s before "
        "their submit (lead)",
    )
    cli.add_argument("--lead", type=float, default=8.0, help="with --phase1 lead")
    cli.add_argument("--warmup", type=int, default=3)
    cli.add_argument("--idle", type=float, default=15.0, help="idle seconds measured first")
    cli.add_argument("--variants", type=int, default=16, help="distinct texts per kind")
    cli.add_argument("--seed", type=int, default=1)
    cli.add_argument("--drain-timeout", type=float, default=900.0)
    cli.add_argument("--lag-interval", type=float, default=1.0)
    cli.add_argument(
        "--processes",
        choices=["service", "role"],
        default="service",
        help="own platform: one process per service (as make up) or per role (as Kubernetes)",
    )
    cli.add_argument(
        "--trace-viewer",
        action="store_true",
        help="own platform: with the trace viewer (Zipkin) as make up runs it, every process "
        "exporting its spans to it",
    )
    cli.add_argument("--attach", action="store_true", help="measure the `make up` platform")
    cli.add_argument("--keep", action="store_true", help="keep the stack's directory (logs)")
    cli.add_argument("--root", help="the running platform's directory (with --attach)")
    cli.add_argument("--role", choices=["watch", "floor-hops"], help=argparse.SUPPRESS)
    cli.add_argument("--bootstrap", help=argparse.SUPPRESS)
    cli.add_argument("--topics", help=argparse.SUPPRESS)
    cli.add_argument("--types", default="", help=argparse.SUPPRESS)
    cli.add_argument("--group", help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.role == "watch":
        wanted = set(filter(None, args.types.split(",")))
        asyncio.run(watch(args.bootstrap, args.topics.split(","), wanted))
        return
    if args.role == "floor-hops":
        asyncio.run(floor_hops(args.bootstrap, args.topics.split(","), args.group))
        return
    extra: dict[str, Any] = {"machine": {**machine_info(), "loadavg_start": loadavg()}}
    console.print(f"load average at start: {extra['machine']['loadavg_start']}")
    console.print(f"making {args.variants} variants of each of {len(DOC_KINDS)} document kinds…")
    docs = DocumentSet.generate(args.variants, args.seed)
    extra["documents"] = docs.sizes()
    results = asyncio.run(run(args, docs, extra))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(results, RESULTS / "pipeline.json")
    plot(results, RESULTS / "pipeline.png")
    show(results)
    console.print("written to bench/results/pipeline.json and bench/results/pipeline.png")


if __name__ == "__main__":
    main()
