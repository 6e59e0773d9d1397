"""Translation over real Kafka, MinIO and PostgreSQL: documents stored in MinIO and announced by
`document.stored` (as records would), the case's destination from `case.submitted` (as intake
would); each document gets exactly one verdict on the language-checks topic, whatever the order
the two arrive in and however often the announcement is redelivered."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from minio import Minio

from referrals_common.contracts import CaseSubmitted, DocumentStored, new_event, topics
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings, S3Settings
from referrals_translation import consumers
from referrals_translation.bootstrap import build_runtime
from referrals_translation.config import TranslationSettings
from referrals_translation.main import MIGRATIONS

from ..conftest import publish

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[2] / "fixtures" / "translation"
PDF = "application/pdf"


@contextlib.asynccontextmanager
async def translation_running(
    new_database, local_stack, bucket: str, s3: S3Settings
) -> AsyncIterator[Any]:
    dsn = await new_database("translation")
    await upgrade_async(dsn, MIGRATIONS)
    bootstrap = local_stack.kafka_bootstrap
    settings = TranslationSettings(
        postgres=PostgresSettings(dsn=dsn),
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        s3=s3,
        bucket=bucket,
        check_timeout_seconds=60,
    )
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)
    rt = build_runtime(settings)
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    broker = KafkaBroker(bootstrap, logger=None)
    consumers.build_consumer(rt.translation, rt.db, dead).subscribe(
        broker, *consumers.SUBSCRIBED_TOPICS, max_records=4
    )
    relay = OutboxRelay(settings.postgres.asyncpg_dsn(), bootstrap)
    await relay.start()
    relay_task = asyncio.create_task(relay.run())
    await broker.start()
    try:
        yield rt
    finally:
        await broker.stop()
        await relay.stop()
        await relay_task
        await dead.stop()
        await rt.close()


def store(client: Minio, bucket: str, case_id: uuid.UUID, name: str, kind: str, media: str):
    data = (FIXTURES / name).read_bytes()
    doc_id = uuid.uuid4()
    key = f"cases/{case_id}/{doc_id}"
    import io

    client.put_object(bucket, key, io.BytesIO(data), len(data))
    return new_event(
        DocumentStored(
            case_id=case_id,
            document_id=doc_id,
            kind=kind,
            media_type=media,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            object_key=key,
            stored_at=datetime.now(UTC),
        )
    )


def submitted(case_id: uuid.UUID, countries: list[str]):
    return new_event(
        CaseSubmitted(
            case_id=case_id,
            clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
            destination={"preference": "countries", "countries": countries},
            locale="uk",
            processing_consent_version="2026-01",
            cross_border_consent_version="2026-01",
            submitted_at=datetime.now(UTC),
        )
    )


async def verdicts(bootstrap: str, case_id: uuid.UUID, count: int, settle: float = 2.0):
    consumer = AIOKafkaConsumer(
        topics.LANGUAGE_CHECKS,
        bootstrap_servers=bootstrap,
        group_id=f"observer-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(120):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += [
                        e
                        for e in map(json.loads, (r.value for r in records))
                        if e["subject"] == str(case_id)
                    ]
        # Anything doubled would come now.
        end = asyncio.get_running_loop().time() + settle
        while asyncio.get_running_loop().time() < end:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [
                    e
                    for e in map(json.loads, (r.value for r in records))
                    if e["subject"] == str(case_id)
                ]
    finally:
        await consumer.stop()
    return found


@pytest.fixture
def bucket(s3_client, new_bucket):
    return new_bucket("documents")


@pytest.fixture
def reader_s3(bucket, service_s3) -> S3Settings:
    """Translation's own MinIO user, as on the platform: read-only on the documents' bucket
    (the documents are stored by the test with the administrator's client, as records would)."""
    return service_s3(bucket)["translation"]


async def test_each_stored_document_gets_one_verdict(
    new_database, local_stack, s3_client, bucket, reader_s3
):
    async with translation_running(new_database, local_stack, bucket, reader_s3):
        case_id = uuid.uuid4()
        docs = [
            store(s3_client, bucket, case_id, "discharge_summary_uk.pdf", "discharge_summary", PDF),
            store(s3_client, bucket, case_id, "pathology_report_en.pdf", "pathology_report", PDF),
            store(s3_client, bucket, case_id, "encrypted.pdf", "lab_results", PDF),
            store(s3_client, bucket, case_id, "ct_slice.dcm", "imaging_study", "application/dicom"),
        ]
        # Stored while a draft (no destination yet), each announced twice; then submitted.
        await publish(local_stack.kafka_bootstrap, *docs, *docs)
        await asyncio.sleep(1.0)
        await publish(local_stack.kafka_bootstrap, submitted(case_id, ["DE"]))
        found = await verdicts(local_stack.kafka_bootstrap, case_id, count=4)

    by_doc = {e["data"]["document_id"]: e for e in found}
    assert len(found) == 4 and len(by_doc) == 4  # one verdict per document, none doubled
    uk, en, locked, study = (by_doc[str(d.data.document_id)] for d in docs)
    assert uk["type"] == "referrals.document.translation_required.v1"
    assert uk["data"]["detected_language"] == "uk"
    assert uk["data"]["acceptable_languages"] == ["en", "de"]
    assert en["type"] == "referrals.document.language_accepted.v1"
    assert en["data"]["main_language"] == "en" and en["data"]["method"] == "text_layer"
    assert locked["type"] == "referrals.document.unreadable.v1"
    assert locked["data"]["reason"] == "encrypted"
    assert study["type"] == "referrals.document.language_accepted.v1"
    assert study["data"]["method"] == "dicom" and study["data"]["main_language"] is None


async def test_a_document_after_submission_is_judged_at_once(
    new_database, local_stack, s3_client, bucket, reader_s3
):
    async with translation_running(new_database, local_stack, bucket, reader_s3):
        case_id = uuid.uuid4()
        await publish(local_stack.kafka_bootstrap, submitted(case_id, ["UA"]))
        doc = store(
            s3_client, bucket, case_id, "discharge_summary_uk.pdf", "discharge_summary", PDF
        )
        await publish(local_stack.kafka_bootstrap, doc)
        [verdict] = await verdicts(local_stack.kafka_bootstrap, case_id, count=1)
    assert verdict["type"] == "referrals.document.language_accepted.v1"
    assert verdict["data"]["main_language"] == "uk"  # Ukrainian is acceptable for Ukraine


class CountingReader:
    """The real reader, counting how many documents it reads and how many at the same moment."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []
        self.now = self.most = 0

    async def read(self, object_key: str, media_type: str) -> Any:
        self.calls.append(object_key)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.real.read(object_key, media_type)
        finally:
            self.now -= 1


async def test_a_cases_documents_are_read_side_by_side_and_each_once(
    new_database, local_stack, s3_client, bucket, reader_s3
):
    """The documents of one case share a partition, and their events are applied in order; the
    readings still run side by side (two workers), each document is read once, and each gets
    its one verdict."""
    async with translation_running(new_database, local_stack, bucket, reader_s3) as rt:
        reader = CountingReader(rt.translation.reader)
        rt.translation.reader = reader
        case_id = uuid.uuid4()
        docs = [
            store(s3_client, bucket, case_id, name, "other", PDF)
            for name in (
                "pathology_report_en.pdf",
                "arztbrief_de.pdf",
                "discharge_summary_uk.pdf",
                "pathology_report_ru.pdf",
            )
        ]
        # All in one produce request, so the consumer's next fetch holds them together.
        producer = AIOKafkaProducer(
            bootstrap_servers=local_stack.kafka_bootstrap, acks="all", linger_ms=200
        )
        await producer.start()
        try:
            sent = [
                await producer.send(e.data.publish_topic(), e.to_json(), key=str(case_id).encode())
                for e in (submitted(case_id, ["DE"]), *docs)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        found = await verdicts(local_stack.kafka_bootstrap, case_id, count=4)

    assert len({e["data"]["document_id"] for e in found}) == 4
    assert sorted(reader.calls) == sorted(d.data.object_key for d in docs)
    assert reader.most >= 2, "documents of one partition were read one at a time"
