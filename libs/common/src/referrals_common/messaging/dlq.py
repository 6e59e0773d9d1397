"""Dead letters: records a consumer cannot apply go to `<topic>.dlq`, with why, in headers.

Headers on a dead letter (all UTF-8): `dlq.error`, `dlq.error_type`, `dlq.consumer`,
`dlq.original_topic`, `dlq.original_partition`, `dlq.original_offset`, `dlq.failed_at`, and the
original record's headers (its trace context among them). Key and value are the original's, so a
replay republishes exactly what was consumed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from referrals_common.contracts.topics import dead_letter
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
