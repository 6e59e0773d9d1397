"""What the platform's consumers do while a benchmark measures them: every consumer group's lag
per topic over time, and each consumer's handler time by event type (its Prometheus metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import defaultdict

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient


class LagSampler:
    """Every `interval` s, each platform consumer group's lag per topic: the log end offsets
    minus the group's committed offsets (what a restarted consumer would read again)."""

    def __init__(self, bootstrap: str, interval: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.interval = interval
        self.samples: list[tuple[float, dict[str, dict[str, int]]]] = []
        self.groups: list[str] = []

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="bench-lag"
        )
        await self.consumer.start()
        listed = await self.admin.list_consumer_groups()
        self.groups = sorted(
            g[0] for g in listed if not g[0].startswith(("bench-", "demo-", "sample-"))
        )
        self.coordinators = {g: await self.admin.find_coordinator(g) for g in self.groups}
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.time()
            with contextlib.suppress(Exception):
                self.samples.append((started, await self.sample()))
            await asyncio.sleep(max(0.0, self.interval - (time.time() - started)))

    async def sample(self) -> dict[str, dict[str, int]]:
        committed = await asyncio.gather(
            *(self.admin.list_consumer_group_offsets(g, self.coordinators[g]) for g in self.groups)
        )
        partitions = {tp for offsets in committed for tp in offsets}
        ends = await self.consumer.end_offsets(list(partitions)) if partitions else {}
        lag: dict[str, dict[str, int]] = {}
        for group, offsets in zip(self.groups, committed, strict=True):
            per_topic: dict[str, int] = defaultdict(int)
            for tp, meta in offsets.items():
                if meta.offset >= 0 and tp in ends:
                    per_topic[tp.topic] += max(0, ends[tp] - meta.offset)
            lag[group] = dict(per_topic)
        return lag

    def window(self, start: float, end: float) -> dict[str, int]:
        """The largest total lag of each group between two wall times."""
        peak: dict[str, int] = {}
        for t, lag in self.samples:
            if start <= t <= end:
                for group, topics in lag.items():
                    peak[group] = max(peak.get(group, 0), sum(topics.values()))
        return peak

    async def stop(self) -> None:
        if hasattr(self, "task"):
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()


HANDLER_METRIC = re.compile(
    r"^referrals_consumer_handler_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$", re.M
)


async def scrape_handlers(urls: dict[str, str]) -> dict[tuple[str, str, str], float]:
    """Each consumer's handler time and calls by event type, from its Prometheus metrics
    (`referrals_consumer_handler_duration_seconds`), keyed by the process that serves them
    (`<service>-consumer`, or `<service>` when a service is one process); empty where a
    process serves none."""
    found: dict[tuple[str, str, str], float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name, url in urls.items():
            if name.endswith(("-api", "-relay", "-scheduler", "-sender")):
                continue  # a role of its own that consumes nothing
            try:
                text = (await client.get(url)).text
            except httpx.HTTPError:
                continue
            for part, labels, value in HANDLER_METRIC.findall(text):
                event = dict(re.findall(r'(\w+)="([^"]*)"', labels)).get("event_type", "")
                found[(name, event, part)] = float(value)
    return found


def handler_window(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per consumer and event type: calls, mean and total handler seconds between two scrapes."""
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (name, event, part), value in after.items():
        if part != "count":
            continue
        calls = value - before.get((name, event, "count"), 0.0)
        total = after.get((name, event, "sum"), 0.0) - before.get((name, event, "sum"), 0.0)
        if calls > 0:
            short = event.removeprefix("referrals.").removesuffix(".v1")
            out[name][short] = {
                "calls": int(calls),
                "mean_ms": round(total / calls * 1000, 1),
                "total_s": round(total, 2),
            }
    return dict(out)


def lag_columns(samples: list[tuple[float, dict[str, dict[str, int]]]], t0: float) -> dict:
    """The lag samples as columns: `t`, then one list per `<group> ← <topic>` that ever lagged."""
    pairs = sorted({(g, topic) for _, lag in samples for g in lag for topic in lag[g]})
    columns: dict[str, list[float]] = {"t": [round(t - t0, 2) for t, _ in samples]}
    for group, topic in pairs:
        values = [lag.get(group, {}).get(topic, 0) for _, lag in samples]
        if any(values):
            columns[f"{group} ← {topic}"] = values
    return columns
