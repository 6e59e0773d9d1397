"""Consumer and relay metrics over real Kafka and PostgreSQL, scraped over HTTP from the metrics
server and parsed as Prometheus parses them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from referrals_common.contracts import CaseWithdrawn, new_event
from referrals_common.messaging.consumer import PoisonEvent
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.metrics import serve_metrics
from tests.running import relaying

from .conftest import (
    effects,
    record_effect,
    running_consumer,
    wait_for,
    write_withdrawals,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    """The metrics server a consumer or relay process runs, on a free loopback port."""
    server = serve_metrics("127.0.0.1", 0)
    yield server.url
    server.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def select(samples: Samples, name: str, **labels: str) -> dict[frozenset, float]:
    """The samples of `name` whose labels include `labels`, keyed by all their labels."""
    wanted = set(labels.items())
    return {ls: v for (n, ls), v in samples.items() if n == name and wanted <= ls}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    found = select(samples, name, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


def lag_by_partition(samples: Samples, service: str, consumer: str, topic: str) -> dict[int, float]:
    found = select(samples, "referrals_consumer_lag", service=service, consumer=consumer)
    return {
        int(dict(labels)["partition"]): v
        for labels, v in found.items()
        if dict(labels)["topic"] == topic
    }


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> Counter[int]:
    """Send (key, value) records; return how many went to each partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    per_partition: Counter[int] = Counter()
    try:
        for key, body in values:
            metadata = await producer.send_and_wait(topic, body, key=key)
            per_partition[metadata.partition] += 1
    finally:
        await producer.stop()
    return per_partition


def withdrawal(case_id: uuid.UUID | None = None) -> tuple[bytes, bytes]:
    event = new_event(CaseWithdrawn(case_id=case_id or uuid.uuid4()))
    return str(event.case_id).encode(), event.to_json()


async def test_the_lag_gauge_counts_what_waits_per_partition_then_falls_to_zero(
    db, messaging_dsn, kafka_bootstrap, new_topic, metrics_url
):
    topic = await new_topic("cases", partitions=3)
    total = 30
    waiting = await produce(kafka_bootstrap, topic, [withdrawal() for _ in range(total)])
    assert sum(waiting.values()) == total
    service, name = f"metrics-{uuid.uuid4().hex[:8]}", f"lag-{uuid.uuid4().hex[:8]}"

    entered, gate = asyncio.Event(), asyncio.Event()

    async def held(event, uow):
        entered.set()
        await gate.wait()  # the first batch stays in progress until the lag has been seen
        await record_effect(event, uow)

    async with running_consumer(
        db, kafka_bootstrap, topic, name=name, handler=held, service=service, lag_interval=0.2
    ):
        expected = {p: float(waiting[p]) for p in range(3)}

        async def lag_is_what_was_published():
            lag = lag_by_partition(await scrape(metrics_url), service, name, topic)
            return lag if lag == expected else None

        await asyncio.wait_for(entered.wait(), timeout=30)
        seen = await wait_for(lag_is_what_was_published)
        assert sum(seen.values()) == total
        # Delivered but not applied nor committed: still lag, however often it is refreshed.
        await asyncio.sleep(1.0)
        assert lag_by_partition(await scrape(metrics_url), service, name, topic) == expected
        gate.set()

        async def caught_up():
            lag = lag_by_partition(await scrape(metrics_url), service, name, topic)
            return lag if set(lag) == set(expected) and not any(lag.values()) else None

        await wait_for(caught_up)
        assert len(await effects(messaging_dsn)) == total
        samples = await scrape(metrics_url)

    labels = {"service": service, "consumer": name}
    assert value(samples, "referrals_consumer_events_total", **labels, outcome="ok") == total
    handler_calls = value(
        samples,
        "referrals_consumer_handler_duration_seconds_count",
        **labels,
        event_type=CaseWithdrawn.event_type,
    )
    assert handler_calls is not None and handler_calls >= total
    slow = value(
        samples,
        "referrals_consumer_handler_duration_seconds_sum",
        **labels,
        event_type=CaseWithdrawn.event_type,
    )
    assert slow is not None and slow > 0, "the held handlers' time is in the histogram"

    # A stopped consumer's partitions leave the gauge (another replica reports them now).
    async def gone():
        lag = lag_by_partition(await scrape(metrics_url), service, name, topic)
        return not lag or None

    await wait_for(gone, timeout=10)


async def test_outcomes_and_dead_letters_are_counted_by_topic(
    db, messaging_dsn, kafka_bootstrap, new_topic, metrics_url
):
    topic = await new_topic("cases")
    await ensure_topics(kafka_bootstrap, [topic + ".dlq"], partitions=1, with_dead_letters=False)
    service, name = f"metrics-{uuid.uuid4().hex[:8]}", f"outcomes-{uuid.uuid4().hex[:8]}"
    flaky, doomed = uuid.uuid4(), uuid.uuid4()
    calls: dict[uuid.UUID, int] = defaultdict(int)

    async def handler(event, uow):
        calls[event.case_id] += 1
        if event.case_id == flaky and calls[flaky] < 3:
            raise RuntimeError("a transient fault of the handler")
        if event.case_id == doomed:
            raise PoisonEvent("this case can never be applied")
        await record_effect(event, uow)

    good = withdrawal()
    unknown = json.loads(withdrawal()[1])
    unknown["type"] = "referrals.case.teleported.v9"
    await produce(
        kafka_bootstrap,
        topic,
        [
            good,
            good,  # a redelivery: duplicate
            withdrawal(flaky),  # fails twice, then applied: retried
            (b"k", b"{not json"),  # invalid: dead-lettered
            (b"k", json.dumps(unknown).encode()),  # unknown type: dead-lettered
            withdrawal(doomed),  # PoisonEvent: dead-lettered
        ],
    )

    async with running_consumer(
        db,
        kafka_bootstrap,
        topic,
        name=name,
        handler=handler,
        service=service,
        attempts=5,
        backoff_initial=0.01,
        backoff_max=0.05,
    ) as consumer:

        async def all_settled():
            # The dead-letter counter and the outcome are two increments: wait for both.
            samples = await scrape(metrics_url)
            dead = value(samples, "referrals_consumer_dead_letters_total", service=service)
            settled = sum(
                v
                for ls, v in select(samples, "referrals_consumer_events_total").items()
                if dict(ls).get("service") == service and dict(ls)["outcome"] == "dead_lettered"
            )
            done = dead == 3 and settled == 3 and consumer.stats["applied"] == 2
            return samples if done else None

        samples = await wait_for(all_settled)

    labels = {"service": service, "consumer": name, "topic": topic}
    outcomes = {
        dict(ls)["outcome"]: v
        for ls, v in select(samples, "referrals_consumer_events_total", **labels).items()
    }
    assert outcomes == {"ok": 1, "duplicate": 1, "retried": 1, "dead_lettered": 3}
    assert value(samples, "referrals_consumer_dead_letters_total", **labels) == 3
    assert sorted(r["case_id"] for r in await effects(messaging_dsn)) == sorted(
        [uuid.UUID(good[0].decode()), flaky]
    )


async def test_the_backlog_gauges_show_unpublished_rows_until_the_relay_publishes_them(
    db, messaging_dsn, kafka_bootstrap, new_topic, metrics_url
):
    topic = await new_topic("cases", partitions=3)
    service = f"metrics-{uuid.uuid4().hex[:8]}"
    written = await write_withdrawals(db, [uuid.uuid4() for _ in range(7)], 2, topic)
    await asyncio.sleep(1.1)  # the oldest row is now over a second old

    # A relay connected but not running: it counts the backlog and publishes nothing.
    idle = OutboxRelay(messaging_dsn, kafka_bootstrap, service=service)
    await idle.start()
    try:
        assert await idle.refresh_metrics() >= (14, 1.0)
    finally:
        await idle.stop()
    samples = await scrape(metrics_url)
    assert len(written) == 14
    assert value(samples, "referrals_outbox_backlog", service=service) == 14
    age = value(samples, "referrals_outbox_oldest_unpublished_age_seconds", service=service)
    assert age is not None and 1.0 <= age < 60
    assert not select(samples, "referrals_outbox_published_total", service=service)

    async with relaying(messaging_dsn, kafka_bootstrap, service=service, metrics_interval=0.2):

        async def drained():
            samples = await scrape(metrics_url)
            backlog = value(samples, "referrals_outbox_backlog", service=service)
            return samples if backlog == 0 else None

        samples = await wait_for(drained)

    assert value(samples, "referrals_outbox_oldest_unpublished_age_seconds", service=service) == 0
    assert value(samples, "referrals_outbox_published_total", service=service, topic=topic) == 14
