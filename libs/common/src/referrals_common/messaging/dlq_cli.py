"""`referrals-dlq list|replay TOPIC`: inspect dead letters and send them back to their topic.

Replaying is safe: consumers are idempotent, so a dead letter whose event was applied meanwhile
changes nothing the second time. The connection is the services' own: `REFERRALS_KAFKA__*`
(bootstrap servers, security protocol, SASL user and password, CA), `--bootstrap` overriding
the servers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from referrals_common.contracts.topics import DLQ_SUFFIX, dead_letter
from referrals_common.messaging.dlq import original_headers
from referrals_common.messaging.kafka import Kafka, client_options, kafka_from_environment

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()

Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (default: REFERRALS_KAFKA__BOOTSTRAP_SERVERS)"),
]


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        return next((v.decode() for k, v in self.headers if k == name), "")

    @property
    def event_id(self) -> str:
        try:
            return str(json.loads(self.value).get("id", ""))
        except (ValueError, AttributeError):
            return ""


async def read_dead_letters(kafka: Kafka, topic: str) -> list[DeadLetter]:
    """Every record currently in `topic`'s dead-letter topic, oldest first per partition."""
    dlq = topic if topic.endswith(DLQ_SUFFIX) else dead_letter(topic)
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(dlq)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(dlq) or set()
        tps = [TopicPartition(dlq, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[DeadLetter] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2000)
            for tp, records in batch.items():
                for r in records:
                    found.append(DeadLetter(r.partition, r.offset, r.key, r.value, list(r.headers)))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not batch:
                break
        return found
    finally:
        await consumer.stop()


async def replay(kafka: Kafka, letters: list[DeadLetter]) -> int:
    """Republish dead letters to their original topic with their original key and headers."""
    producer = AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(
                letter.header("dlq.original_topic"),
                value=letter.value,
                key=letter.key,
                headers=original_headers(letter.headers),
            )
        return len(letters)
    finally:
        await producer.stop()


@app.command("list")
def list_(topic: str, bootstrap: Bootstrap = None) -> None:
    """List the dead letters of TOPIC (or of TOPIC.dlq named directly)."""
    letters = asyncio.run(read_dead_letters(kafka_from_environment(bootstrap), topic))
    table = Table(title=f"{len(letters)} dead letter(s) of {topic}")
    for col in ("partition", "offset", "event id", "consumer", "error type", "error", "failed at"):
        table.add_column(col)
    for d in letters:
        table.add_row(
            str(d.partition),
            str(d.offset),
            d.event_id,
            d.header("dlq.consumer"),
            d.header("dlq.error_type"),
            d.header("dlq.error")[:80],
            d.header("dlq.failed_at"),
        )
    console.print(table)


@app.command("replay")
def replay_(
    topic: str,
    bootstrap: Bootstrap = None,
    offset: Annotated[list[int] | None, typer.Option(help="only these DLQ offsets")] = None,
    partition: Annotated[int | None, typer.Option(help="only this DLQ partition")] = None,
) -> None:
    """Send TOPIC's dead letters (all, or the chosen offsets) back to their original topic."""
    kafka = kafka_from_environment(bootstrap)
    letters = asyncio.run(read_dead_letters(kafka, topic))
    if partition is not None:
        letters = [d for d in letters if d.partition == partition]
    if offset:
        letters = [d for d in letters if d.offset in set(offset)]
    count = asyncio.run(replay(kafka, letters))
    console.print(f"replayed {count} dead letter(s)")


if __name__ == "__main__":
    app()
