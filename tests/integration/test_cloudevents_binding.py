"""Every event type, as the platform's outbox relay publishes it to real Kafka, is read by the
official CloudEvents SDK (`cloudevents`, Kafka protocol binding) the way an integrator would:
the record's mode detected from its headers, every attribute and the payload as published, and
the payload valid against the JSON Schema that `dataschema` names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as binding
from jsonschema import Draft202012Validator
from opentelemetry import trace

from referrals_common.contracts import new_event, parse_event, registry
from referrals_common.contracts.envelope import CONTENT_TYPE, SCHEMA_URI_PREFIX
from referrals_common.contracts.examples import EXAMPLES
from tests.running import relaying

from .conftest import wait_for
from .test_messaging import read_topic

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "contracts" / "schemas"


def published_schema(uri: str) -> dict:
    """The schema a `dataschema` URI names: its file among the published schemas."""
    assert uri.startswith(SCHEMA_URI_PREFIX), uri
    schema = json.loads(
        (SCHEMAS / f"{uri.removeprefix(SCHEMA_URI_PREFIX)}.schema.json").read_text()
    )
    assert schema["$id"] == uri
    return schema


async def test_the_cloudevents_sdk_reads_every_event_the_relay_publishes(
    db, messaging_dsn, kafka_bootstrap, new_topic, spans
):
    # Fresh topics stand for the platform's (the same events, keys and headers), so that no
    # other test's consumer meets these sample events.
    topic_of = {}
    for model in registry().values():
        if model.topic not in topic_of:
            topic_of[model.topic] = await new_topic("cloudevents", partitions=2)
    events = [new_event(EXAMPLES[model]()) for model in registry().values()]
    with trace.get_tracer("tests").start_as_current_span("a request that caused the events"):
        async with db.unit_of_work() as uow:
            for event in events:
                await uow.outbox.add(event, topic=topic_of[type(event.data).topic])
            await uow.commit()
    async with relaying(messaging_dsn, kafka_bootstrap) as relay:
        await wait_for(lambda: _published(relay, len(events)))

    records = []
    for topic in topic_of.values():
        expected = sum(1 for e in events if topic_of[type(e.data).topic] == topic)
        records += await read_topic(kafka_bootstrap, topic, expected)
    assert len(records) == len(events) == len(registry()) == 45

    by_id = {str(event.id): event for event in events}
    seen_types = set()
    for record in records:
        headers = {name: value for name, value in record.headers}
        assert not [name for name in headers if name.lower().startswith("ce_")], headers
        assert headers["content-type"] == CONTENT_TYPE.encode()
        assert "traceparent" in headers
        message = binding.KafkaMessage(headers=headers, key=record.key, value=record.value)

        detected = binding.from_kafka_event(message)  # what an integrator's consumer calls
        structured = binding.from_structured_event(message)
        assert detected.get_attributes() == structured.get_attributes()

        sent = by_id[detected.get_id()]
        assert detected.get_specversion() == "1.0"
        assert detected.get_type() == sent.type
        assert detected.get_source() == sent.source
        assert detected.get_subject() == str(sent.case_id)
        assert detected.get_time() == sent.time
        assert detected.get_datacontenttype() == "application/json"
        assert detected.get_extension("partitionkey") == str(sent.case_id) == record.key.decode()
        assert detected.get_data() == sent.data.model_dump(mode="json")

        schema = published_schema(detected.get_dataschema())
        assert schema["properties"]["type"]["const"] == sent.type
        Draft202012Validator(schema).validate(json.loads(record.value))
        assert parse_event(record.value) == sent
        seen_types.add(detected.get_type())

    assert seen_types == set(registry())


async def _published(relay, count: int):
    return relay.published >= count or None
