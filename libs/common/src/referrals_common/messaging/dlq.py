"""Dead letters: records a consumer cannot apply go to `<topic>.dlq`, with why, in headers.

Headers on a dead letter (all UTF-8): `dlq.error`, `dlq.error_type`, `dlq.consumer`,
`dlq.original_topic`, `dlq.original_partition`, `dlq.original_offset`, `dlq.failed_at`, and the
original record's headers (its trace context among them). Key and value are the original's, so a
replay republishes exactly what was consumed.

Reading and replaying (`read_dead_letters`, `dead_letter_counts`, `replay`) serve both the
`referrals-dlq` command and partners' ops API (`/v1/ops/dead-letters`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from referrals_common.contracts.topics import DLQ_SUFFIX, dead_letter
from referrals_common.messaging.kafka import Kafka, client_options

DLQ_HEADER_PREFIX = "dlq."
MAX_ERROR_CHARS = 2000


class DeadLetterPublisher:
    """Publishes dead letters with an idempotent, acks=all producer of its own."""

    def __init__(self, kafka: Kafka, *, client_id: str = "referrals-dlq") -> None:
        self._producer = AIOKafkaProducer(
            **client_options(kafka),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(
        self, record: Any, body: bytes, *, consumer: str, error: BaseException
    ) -> None:
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            (f"{DLQ_HEADER_PREFIX}{name}", str(value).encode())
            for name, value in {
                "error": str(error)[:MAX_ERROR_CHARS] or repr(error),
                "error_type": type(error).__name__,
                "consumer": consumer,
                "original_topic": record.topic,
                "original_partition": record.partition,
                "original_offset": record.offset,
                "failed_at": datetime.now(UTC).isoformat(),
            }.items()
        ]
        await self._producer.send_and_wait(
            dead_letter(record.topic), value=body, key=record.key, headers=headers
        )


def original_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A dead letter's headers without the `dlq.*` ones: what the original record carried."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]


@dataclass
class DeadLetter:
    """One record of a dead-letter topic, where it is (`topic`, `partition`, `offset`)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    topic: str = ""
    """The dead-letter topic (`<topic>.dlq`) it was read from."""

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    def _event(self) -> dict[str, Any]:
        try:
            found = json.loads(self.value)
        except (ValueError, UnicodeDecodeError):
            return {}
        return found if isinstance(found, dict) else {}

    @property
    def event_id(self) -> str:
        return str(self._event().get("id", ""))

    @property
    def event_type(self) -> str:
        return str(self._event().get("type", ""))

    @property
    def case_id(self) -> str:
        """The record's key: every platform event is keyed by its case id."""
        return self.key.decode(errors="replace") if self.key else ""


def _dlq(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else dead_letter(topic)


async def read_dead_letters(
    kafka: Kafka,
    topic: str | Iterable[str],
    *,
    key: str | None = None,
    wait_ms: int = 2000,
) -> list[DeadLetter]:
    """Every record now in the dead-letter topic of `topic` (or of each of several topics), oldest
    first per partition; with `key`, only the records with that key (a case's). A topic without
    a dead-letter topic has none."""
    wanted = [_dlq(topic)] if isinstance(topic, str) else sorted({_dlq(t) for t in topic})
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = []
        for dlq in wanted:
            partitions = consumer.partitions_for_topic(dlq)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(dlq) or set()
            tps += [TopicPartition(dlq, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[DeadLetter] = []
        remaining = set()
        for tp in tps:
            if await consumer.position(tp) < ends[tp]:
                remaining.add(tp)
        wanted_key = key.encode() if key is not None else None
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=wait_ms)
            for tp, records in batch.items():
                for r in records:
                    if wanted_key is None or r.key == wanted_key:
                        found.append(
                            DeadLetter(
                                r.partition, r.offset, r.key, r.value, list(r.headers), tp.topic
                            )
                        )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not batch:
                break
        return found
    finally:
        await consumer.stop()


async def dead_letter_counts(kafka: Kafka, topics: Iterable[str]) -> dict[str, int]:
    """How many records each topic's dead-letter topic holds now (0 when it has none), by the
    original topic: its partitions' end offsets less their first (records are never deleted
    but by retention)."""
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        counts: dict[str, int] = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(_dlq(topic)) or set()
            tps = [TopicPartition(_dlq(topic), p) for p in sorted(partitions)]
            if not tps:
                counts[topic] = 0
                continue
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            counts[topic] = sum(ends[tp] - starts[tp] for tp in tps)
        return counts
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
