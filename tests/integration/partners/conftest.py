"""Partners over real Kafka and PostgreSQL: the consumer, the outbox relay and the scheduler run
in-process against a test registry of three invented centers; intake's and records' events are
published as those services would; a plain aiokafka consumer plays the cancer center."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from referrals_common.auth.case_tokens import CaseTokenIssuer, generate_private_key_pem, public_jwks
from referrals_common.contracts import (
    CaseReadyForReferral,
    DocumentStored,
    new_event,
    topics,
)
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_common.webhooks import RetryPolicy, WebhookRetrySettings
from referrals_partners import consumers
from referrals_partners.bootstrap import Runtime, build_runtime
from referrals_partners.centers import ensure_inbox_topics, issue_key, load_seed
from referrals_partners.config import PartnersSettings
from referrals_partners.main import MIGRATIONS, create_app
from referrals_partners.scheduler import WebhookSender, run_scheduler
from tests.public_dns import with_example_dns

SEED = Path(__file__).parents[2] / "fixtures" / "partners" / "centers.test.yaml"
KEY_PEM = generate_private_key_pem()
ISSUER = CaseTokenIssuer(KEY_PEM)


@pytest.fixture
async def make_runtime(new_database, local_stack) -> AsyncIterator[Callable[..., Any]]:
    made: list[Runtime] = []

    async def make(**overrides: Any) -> Runtime:
        dsn = await new_database("partners")
        await upgrade_async(dsn, MIGRATIONS)
        settings = PartnersSettings(
            postgres=PostgresSettings(dsn=dsn),
            kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
            seed_file=str(SEED),
            case_token_jwks=json.dumps(public_jwks(KEY_PEM)),
            scheduler_interval_seconds=0.2,
            webhook_retry=WebhookRetrySettings(
                quick_backoff_seconds=0.05, round_backoff_seconds=0.2
            ),
            **overrides,
        )
        rt = build_runtime(settings)
        rt.outbound = with_example_dns(rt.outbound)
        await load_seed(rt.db, settings.seed_file)
        await ensure_topics(local_stack.kafka_bootstrap, topics.PLATFORM_TOPICS)
        await ensure_inbox_topics(rt.db, local_stack.kafka_bootstrap)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.db.dispose()


@contextlib.asynccontextmanager
async def partners_running(rt: Runtime) -> AsyncIterator[None]:
    """Consumer, relay and scheduler of one partners runtime, as the three processes would."""
    bootstrap = rt.settings.kafka.bootstrap_servers
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    broker = KafkaBroker(bootstrap, logger=None)
    consumers.build_consumer(rt.partners, rt.db, dead, meetings=rt.meetings).subscribe(
        broker, *consumers.SUBSCRIBED_TOPICS
    )
    relay = OutboxRelay(rt.settings.postgres.asyncpg_dsn(), bootstrap)
    await relay.start()
    relay_task = asyncio.create_task(relay.run())
    stop = asyncio.Event()
    sender = WebhookSender(
        rt.db,
        rt.cipher,
        rt.outbound,
        retry=RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, rounds=3, round_backoff=0.2),
    )
    scheduler = asyncio.create_task(
        run_scheduler(rt.partners, rt.db, sender, interval=0.2, stop=stop, meetings=rt.meetings)
    )
    await broker.start()
    try:
        yield
    finally:
        stop.set()
        await scheduler
        await sender.close()
        await broker.stop()
        await relay.stop()
        await relay_task
        await dead.stop()
        await rt.db.dispose()


@contextlib.asynccontextmanager
async def api_client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=rt)
    app.state.runtime = rt
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://partners"
    ) as client:
        yield client


async def key_for(rt: Runtime, role: str, center: str | None = None) -> str:
    async with rt.db.unit_of_work() as uow:
        key = await issue_key(uow, rt.pepper, role=role, name=center or "ops", center_code=center)
        await uow.commit()
    return key


def document_stored(
    case_id: uuid.UUID, kind: str = "pathology_report", referral_id: uuid.UUID | None = None
) -> Any:
    """`document.stored` as records publishes it (an opinion names its referral)."""
    doc_id = uuid.uuid4()
    return new_event(
        DocumentStored(
            case_id=case_id,
            document_id=doc_id,
            kind=kind,
            media_type="application/pdf",
            size_bytes=48_213,
            sha256=uuid.uuid4().hex * 2,
            object_key=f"cases/{case_id}/{doc_id}",
            translation_of=None,
            stored_at=datetime.now(UTC),
            referral_id=referral_id,
        )
    )


def ready(
    case_id: uuid.UUID,
    document_ids: list[uuid.UUID],
    *,
    icd10: str = "C50.9",
    countries: tuple[str, ...] = ("DE",),
    languages: tuple[str, ...] = ("de", "en"),
    preparation: dict[str, Any] | None = None,
    patient_chooses: bool = False,
    payer: dict[str, Any] | None = None,
) -> Any:
    return new_event(
        CaseReadyForReferral(
            preparation=preparation,
            patient_chooses=patient_chooses,
            payer=payer,
            case_id=case_id,
            clinical={
                "icd10": icd10,
                "age_group": "adult",
                "reasons": ["choose_treatment"],
                "questions": ["Is breast-conserving surgery possible after chemotherapy?"],
            },
            destination={"preference": "countries", "countries": list(countries)},
            cross_border_transfer_allowed=True,
            document_ids=document_ids,
            document_languages=list(languages),
        )
    )


class Inbox:
    """A cancer center's own view of Kafka: a plain consumer of its inbox topic."""

    def __init__(self, bootstrap: str, center: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topics.partner_inbox(center),
            bootstrap_servers=bootstrap,
            group_id=f"center-{center}-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
        )

    async def __aenter__(self) -> Inbox:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def offer_for(self, case_id: uuid.UUID, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                batch = await self.consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        if event["subject"] == str(case_id):
                            return event


class Topic:
    """Collects the events about some cases from one platform topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"observer-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="latest",
        )
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Topic:
        await self.consumer.start()
        async with asyncio.timeout(20):  # positions are set ("latest") once partitions assigned
            while not self.consumer.assignment():
                self.events.extend(
                    json.loads(r.value)
                    for records in (await self.consumer.getmany(timeout_ms=100)).values()
                    for r in records
                )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def wait_for(
        self, case_id: uuid.UUID, event_type: str, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = [
                    e
                    for e in self.events
                    if e["subject"] == str(case_id) and e["type"] == event_type
                ]
                if len(found) >= count:
                    return found
                batch = await self.consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    self.events.extend(json.loads(r.value) for r in records)


def case_headers(case_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(case_id, 'kyiv-clinic').token}"}
