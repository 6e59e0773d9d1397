"""The pipeline benchmark's helper processes (`bench/pipeline.py --role ...`): the reader of the
centers' inboxes (and of the floor's last topic), and the floor's hops. They run in processes of
their own, so the front ends' work in the driver never delays when an offer is seen. Times are
wall-clock times (time.time()) on this one machine.

The floor is the pipeline's chain of four Kafka hops in raw aiokafka with no work (see
bench/pipeline.py's docstring)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def _assign_from_end(consumer: AIOKafkaConsumer, names: list[str]) -> list[TopicPartition]:
    partitions: list[TopicPartition] = []
    for name in names:
        found: set[int] | None = None
        for _ in range(100):  # a topic made a moment ago may not be in the metadata yet
            # aiokafka exposes partition counts only through its client's metadata.
            cluster = await consumer._client.fetch_all_metadata()
            found = cluster.partitions_for_topic(name)
            if found:
                break
            await asyncio.sleep(0.1)
        if not found:
            raise RuntimeError(f"topic {name} does not exist")
        partitions += [TopicPartition(name, p) for p in sorted(found)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return partitions


def _event_type(value: bytes | None) -> str:
    """The `type` of a structured-mode CloudEvent record ("" for anything else)."""
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return ""
    kind = envelope.get("type") if isinstance(envelope, dict) else None
    return kind if isinstance(kind, str) else ""


async def watch(bootstrap: str, names: list[str], wanted: set[str]) -> None:
    """Print `[wall time, type, key]` for every record of `names` whose CloudEvents `type` is in
    `wanted` (every record if `wanted` is empty), after a `ready` line. Events are in structured
    mode: the type is read from the value (the envelope), not from a header."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-watcher"
    )
    await consumer.start()
    try:
        await _assign_from_end(consumer, names)
        print(json.dumps("ready"), flush=True)
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            lines = []
            for records in batch.values():
                for r in records:
                    kind = _event_type(r.value)
                    if not wanted or kind in wanted:
                        lines.append(json.dumps([now, kind, (r.key or b"").decode()]))
            if lines:
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
    finally:
        await consumer.stop()


FLOOR_PAYLOADS = (1300, 700, 1100, 1500)
"""Bytes per record on each floor topic, about the size of the pipeline's events there."""


async def floor_hops(bootstrap: str, names: list[str], group: str) -> None:
    """The floor's three hops, each a consumer group member with its own producer; `names` are
    the four topics of the chain. Prints `ready` once every hop has its partitions."""
    hops = []
    for i in range(3):
        consumer = AIOKafkaConsumer(
            names[i],
            bootstrap_servers=bootstrap,
            group_id=f"{group}-hop{i + 1}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await consumer.start()
        await producer.start()
        hops.append((consumer, producer))
    try:
        for consumer, _ in hops:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            for tp in consumer.assignment():
                await consumer.position(tp)
        print(json.dumps("ready"), flush=True)
        seen: Counter[bytes] = Counter()

        async def run(i: int) -> None:
            consumer, producer = hops[i]
            out, payload = names[i + 1], b"x" * FLOOR_PAYLOADS[i + 1]
            while True:
                batch = await consumer.getmany(timeout_ms=100, max_records=200)
                sends = []
                for records in batch.values():
                    for r in records:
                        if i == 0:  # translation: three verdicts per case
                            copies = 3
                        elif i == 1:  # intake: ready after the third verdict
                            seen[r.key] += 1
                            copies = 1 if seen[r.key] == 3 else 0
                        else:  # partners: the offer
                            copies = 1
                        for _ in range(copies):
                            sends.append(await producer.send(out, payload, key=r.key))
                if sends:
                    await asyncio.gather(*sends)
                if batch:
                    await consumer.commit()

        await asyncio.gather(*(run(i) for i in range(3)))
    finally:
        for consumer, producer in hops:
            await consumer.stop()
            await producer.stop()
