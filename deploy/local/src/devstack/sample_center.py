"""A sample cancer center's system: reads its inbox topics over Kafka and answers through the APIs.

    python -m devstack.sample_center [--root .devstack] [--decline-first]

It plays every sample center of the local platform (each with its own key, as issued by
`devstack up`): it reads each center's inbox topic (`referrals.partner-inbox.<center>.v1`) from
the end, and for every offer it

* declines it (`no_capacity`) if `--decline-first` and this is the first offer of that case it
  sees, so the case is routed to the next center;
* otherwise accepts it, fetches every offered document through records (short-lived links, each
  download audited), uploads its written opinion to records and delivers it through partners.

Each answer is its own trace (a case step of the center's), exported like the services' spans.
It prints one JSON line per action on stdout, and `ready` once it reads every inbox.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any

import httpx
import typer
from opentelemetry import context as otel_context
from opentelemetry import trace

from devstack.platform import PlatformInfo
from devstack.stack import StackInfo, resolve_root

tracer = trace.get_tracer("devstack.sample_center")
OPINION = "opinion_en.pdf"


def sample(name: str) -> bytes:
    return resources.files("devstack").joinpath(f"samples/{name}").read_bytes()


def emit(action: str, **fields: Any) -> None:
    line = {"at": datetime.now(UTC).isoformat(), "action": action, **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def assign_at_end(consumer: Any, names: list[str], *, timeout: float = 10.0) -> None:
    """Assign every partition of the topics `names` to a started aiokafka consumer (no group)
    and place it at their current end, so it reads only what is published from now on."""
    from aiokafka import TopicPartition

    # aiokafka exposes partition counts only through its client's metadata; a topic just
    # created may take a moment to show its partitions there.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        missing = [name for name in names if not cluster.partitions_for_topic(name)]
        if not missing:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the broker shows no partitions for {missing}")
        await asyncio.sleep(0.1)
    partitions = [
        TopicPartition(name, p)
        for name in names
        for p in sorted(cluster.partitions_for_topic(name))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)


class SampleCenters:
    def __init__(self, stack: StackInfo, platform: PlatformInfo, *, decline_first: bool) -> None:
        self.bootstrap = stack.kafka_bootstrap
        self.keys: dict[str, str] = platform.keys()["centers"]  # type: ignore[assignment]
        self.partners = httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30)
        self.records = httpx.AsyncClient(base_url=platform.apis["records"], timeout=60)
        self.downloads = httpx.AsyncClient(timeout=60)
        self.decline_first = decline_first
        self.cases_seen: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        from referrals_common.contracts import topics

        inboxes = {topics.partner_inbox(code): code for code in self.keys}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="sample-centers"
        )
        await consumer.start()
        try:
            await assign_at_end(consumer, list(inboxes))
            emit("ready", inboxes=len(inboxes))
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        await self.on_offer(inboxes[tp.topic], json.loads(record.value))
        finally:
            await consumer.stop()
            for client in (self.partners, self.records, self.downloads):
                await client.aclose()

    async def on_offer(self, center: str, event: dict[str, Any]) -> None:
        if not str(event.get("type", "")).startswith("referrals.referral.offered"):
            return
        data = event["data"]
        case_id, referral_id = str(data["case_id"]), str(data["referral_id"])
        headers = {"X-Api-Key": self.keys[center]}
        first = case_id not in self.cases_seen
        self.cases_seen.add(case_id)
        emit("offer received", center=center, case_id=case_id, referral_id=referral_id)
        if self.decline_first and first:
            with self._step(f"center {center}: decline", case_id) as trace_id:
                response = await self.partners.post(
                    f"/v1/partner/referrals/{referral_id}/decline",
                    json={"reason": "no_capacity", "detail": "No tumour board slot this month."},
                    headers=headers,
                )
            emit(
                "declined",
                center=center,
                case_id=case_id,
                status=response.status_code,
                trace_id=trace_id,
            )
            return
        with self._step(f"center {center}: accept", case_id) as trace_id:
            due = datetime.now(UTC) + timedelta(days=10)
            response = await self.partners.post(
                f"/v1/partner/referrals/{referral_id}/accept",
                json={"expected_opinion_at": due.isoformat()},
                headers=headers,
            )
            response.raise_for_status()
        emit("accepted", center=center, case_id=case_id, trace_id=trace_id)
        with self._step(f"center {center}: review and deliver the opinion", case_id) as trace_id:
            fetched = 0
            for document in data["documents"]:
                link = await self.records.get(document["fetch_via"], headers=headers)
                link.raise_for_status()
                content = await self.downloads.get(link.json()["url"])
                content.raise_for_status()
                fetched += len(content.content)
            stored = await self.records.post(
                f"/v1/referrals/{referral_id}/opinion",
                files={"file": ("second-opinion.pdf", sample(OPINION), "application/pdf")},
                headers=headers,
            )
            stored.raise_for_status()
            # Partners learns of the stored opinion from records' event: until then it answers
            # 409 opinion-not-stored, and a center retries, as the problem's detail says.
            for _ in range(100):
                delivered = await self.partners.post(
                    f"/v1/partner/referrals/{referral_id}/opinion",
                    json={"document_id": stored.json()["id"]},
                    headers=headers,
                )
                if delivered.status_code != 409 or "opinion-not-stored" not in delivered.text:
                    break
                await asyncio.sleep(0.2)
            delivered.raise_for_status()
        emit(
            "opinion delivered",
            center=center,
            case_id=case_id,
            documents=len(data["documents"]),
            bytes_read=fetched,
            trace_id=trace_id,
        )

    def _step(self, name: str, case_id: str) -> Any:
        """A root span for one answer of the center: each is a case step with its own trace."""
        return _Step(name, case_id)


class _Step:
    def __init__(self, name: str, case_id: str) -> None:
        self.span = tracer.start_span(name, context=otel_context.Context())
        self.span.set_attribute("referrals.case_id", case_id)
        self.token: object | None = None

    def __enter__(self) -> str:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return format(self.span.get_span_context().trace_id, "032x")

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self.token)  # type: ignore[arg-type]
        self.span.end()


def main(
    root: Annotated[str | None, typer.Option(help="the stack's directory")] = None,
    decline_first: Annotated[
        bool, typer.Option(help="decline the first offer of each case (so it is re-routed)")
    ] = False,
) -> None:
    from referrals_common.telemetry import configure_telemetry

    where = resolve_root(root)
    stack, platform = StackInfo.load(where), PlatformInfo.load(where)
    if stack is None or platform is None:
        raise typer.BadParameter(f"no running platform in {where} (make up)")
    provider = configure_telemetry("sample-center")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await SampleCenters(stack, platform, decline_first=decline_first).run(stop)

    try:
        asyncio.run(serve())
    finally:
        provider.shutdown()


if __name__ == "__main__":
    typer.run(main)
