"""Kafka topics the platform declares (auto-creation is off on our brokers)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from referrals_common.contracts.topics import dead_letter


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str] | tuple[str, ...],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    with_dead_letters: bool = True,
) -> list[str]:
    """Create every topic (and its `.dlq`) that does not exist yet; return the ones created."""
    wanted = list(topics) + ([dead_letter(t) for t in topics] if with_dead_letters else [])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica made it first
                await admin.create_topics(
                    [NewTopic(t, partitions, replication_factor) for t in missing]
                )
        return missing
    finally:
        await admin.close()
