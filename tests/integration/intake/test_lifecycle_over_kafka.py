"""The lifecycle over real Kafka: documents and language checks arrive as events (published here
as records and translation would), intake moves the case, and `case.ready_for_referral` goes out
through the outbox exactly once, even when every event is delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker

from referrals_common.contracts import (
    DocumentLanguageAccepted,
    DocumentStored,
    DocumentTranslationRequired,
    new_event,
    topics,
)
from referrals_common.contracts.translation import LanguageShare
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.messaging.relay import OutboxRelay
from referrals_intake import consumers

from ..conftest import wait_for
from .conftest import open_case

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def intake_running(runtime):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    broker = KafkaBroker(bootstrap, logger=None)
    consumer = consumers.build_consumer(runtime.intake, runtime.db, dead)
    consumer.subscribe(broker, *consumers.SUBSCRIBED_TOPICS)
    relay = OutboxRelay(runtime.settings.postgres.asyncpg_dsn(), bootstrap)
    await relay.start()
    relay_task = asyncio.create_task(relay.run())
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()
        await relay.stop()
        await relay_task
        await dead.stop()


async def publish_twice(bootstrap: str, *events) -> None:
    """Each event twice, as a redelivery after a consumer crash would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            for _ in range(2):
                await producer.send_and_wait(
                    event.data.topic, event.to_json(), key=str(event.case_id).encode()
                )
    finally:
        await producer.stop()


def stored(case_id, kind, translation_of=None):
    doc_id = uuid.uuid4()
    return doc_id, new_event(
        DocumentStored(
            case_id=case_id,
            document_id=doc_id,
            kind=kind,
            media_type="application/pdf",
            size_bytes=48_213,
            sha256="ab" * 32,
            object_key=f"cases/{case_id}/{doc_id}",
            translation_of=translation_of,
            stored_at=datetime.now(UTC),
        )
    )


def accepted(case_id, doc_id, language):
    return new_event(
        DocumentLanguageAccepted(
            case_id=case_id,
            document_id=doc_id,
            languages=[LanguageShare(language=language, share=0.97)],
            main_language=language,
            confidence=0.97,
            pages=2,
            method="text_layer",
        )
    )


async def case_events(bootstrap: str, case_id: uuid.UUID) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topics.CASES,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=700)
            if not batch:
                return found
            for records in batch.values():
                found += [json.loads(r.value) for r in records if r.key == str(case_id).encode()]
    finally:
        await consumer.stop()


async def test_a_submitted_case_becomes_ready_once_its_documents_are_accepted(
    api, api_key, runtime
):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    pathology, pathology_stored = stored(case_id, "pathology_report")
    summary, summary_stored = stored(case_id, "discharge_summary")

    async with intake_running(runtime) as consumer:
        await publish_twice(bootstrap, pathology_stored, summary_stored)

        async def documents_known():
            r = await api.get(f"/v1/cases/{case_id}", headers=headers)
            return len(r.json()["documents"]) == 2 or None

        await wait_for(documents_known)
        for kind in ("processing", "cross_border"):
            await api.put(
                f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
            )
        r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
        assert r.status_code == 200, r.text

        # The Ukrainian discharge summary needs a translation for a German center.
        await publish_twice(
            bootstrap,
            accepted(case_id, pathology, "en"),
            new_event(
                DocumentTranslationRequired(
                    case_id=case_id,
                    document_id=summary,
                    detected_language="uk",
                    acceptable_languages=["en", "de"],
                    confidence=0.99,
                )
            ),
        )

        async def status_is(wanted):
            r = await api.get(f"/v1/cases/{case_id}", headers=headers)
            return r.json()["status"] == wanted or None

        await wait_for(lambda: status_is("action_required"))
        timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
        # The case is in Ukrainian: the languages by their Ukrainian names.
        assert "Мова перекладу: англійська або німецька." in timeline[-1]["reason"]
        assert "Завантажте переклад" in timeline[-1]["next_step"]

        translation, translation_stored = stored(case_id, "translation", translation_of=summary)
        await publish_twice(bootstrap, translation_stored, accepted(case_id, translation, "de"))
        await wait_for(lambda: status_is("ready"))
        # Every event was delivered twice: all six second copies must be recognised as such.
        await wait_for(lambda: asyncio.sleep(0, consumer.stats["duplicates"] >= 6 or None))

        async def all_published():
            events = await case_events(bootstrap, case_id)
            return (
                events if sum(e["type"].endswith("ready_for_referral.v1") for e in events) else None
            )

        events = await wait_for(all_published)

    ready = [e for e in events if e["type"] == "referrals.case.ready_for_referral.v1"]
    assert len(ready) == 1, "exactly once, whatever was redelivered"
    assert set(ready[0]["data"]["document_ids"]) == {str(pathology), str(translation)}
    assert sorted(ready[0]["data"]["document_languages"]) == ["de", "en"]
    assert ready[0]["data"]["clinical"]["icd10"] == "C50.9"
    assert ready[0]["data"]["cross_border_transfer_allowed"] is True
    transitions = [
        (e["data"]["from_status"], e["data"]["to_status"])
        for e in events
        if e["type"] == "referrals.case.status_changed.v1"
    ]
    assert transitions == [
        ("draft", "submitted"),
        ("submitted", "action_required"),
        ("action_required", "submitted"),
        ("submitted", "ready"),
    ]
    assert [e["type"] for e in events].count("referrals.case.submitted.v1") == 1
    for e in events:  # minimum personal data: nothing of the contact, no date of birth
        text = json.dumps(e)
        assert "olena" not in text
        # The birth year as a number of its own (a timestamp's microseconds may hold "1979"),
        # and the date of birth in any usual form.
        assert not re.search(r"(?<!\d)1979(?!\d)", text)
        for form in ("1979-04-12", "19790412", "12.04.1979", "12/04/1979"):
            assert form not in text
