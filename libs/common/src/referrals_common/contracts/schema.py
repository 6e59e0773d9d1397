"""Machine-readable contracts: a JSON Schema per event type and an AsyncAPI 3 document.

Both are generated from the pydantic models, never written by hand:

- `json_schemas()` gives, per event type, the JSON Schema (draft 2020-12) of the whole CloudEvents
  envelope carrying that payload, with `type`, `source` and `dataschema` pinned to the event's
  values, every attribute a producer always sends marked required (but `dataschema`, which
  events published before it existed lack), CloudEvents extension attributes allowed, and
  `$id` = `schema_uri(type)` (what the envelopes name in `dataschema`);
- `asyncapi_document()` describes every topic as a channel with one message per event type
  (payload schema, Kafka key, headers and an example envelope), a `send` operation per topic
  (the producing service) and `receive` operations for what a cancer center reads (its inbox)
  and for each platform service's consumer.

`python -m referrals_common.contracts export docs/contracts` writes both; a unit test regenerates
them in memory and fails when the committed files are stale, and another compares the schemas
with the last released ones (`compatibility`).
"""

from __future__ import annotations

import copy
import inspect
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid5

from pydantic import AwareDatetime, Field, create_model
from pydantic.json_schema import models_json_schema

from . import topics
from .envelope import (
    CONTENT_TYPE,
    CloudEvent,
    EventData,
    enveloped,
    new_event,
    registry,
    schema_uri,
)
from .examples import EXAMPLES, NOW
from .partners import PARTNER_INBOX_TOPIC_TEMPLATE

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE = "asyncapi.json"
SCHEMAS_DIR = "schemas"
SCHEMA_SUFFIX = ".schema.json"

# Channel names in the AsyncAPI document, one per topic, in the order they are listed.
_CHANNELS: dict[str, str] = {
    topics.CASES: "cases",
    topics.CONTACTS: "contacts",
    topics.CREDENTIALS: "centerCredentials",
    topics.DOCUMENTS: "documents",
    topics.LANGUAGE_CHECKS: "languageChecks",
    topics.ROUTING: "routing",
    topics.NOTIFICATIONS: "notifications",
    PARTNER_INBOX_TOPIC_TEMPLATE: "partnerInbox",
}

_TOPIC_DESCRIPTIONS = {
    topics.CASES: "Cases and their lifecycle, published by intake.",
    topics.CONTACTS: "Private: the patient's sealed contact details, published by intake and "
    "read by notifications only.",
    topics.CREDENTIALS: "Private: the API keys partners issued to cancer centers and revoked "
    "(key id and digest, never the key), read by records only.",
    topics.DOCUMENTS: "Stored and rejected documents, published by records.",
    topics.LANGUAGE_CHECKS: "The outcome of the language check of each document, published by "
    "translation.",
    topics.ROUTING: "What happened to each referral of a case, published by partners.",
    topics.NOTIFICATIONS: "What was told to the patient, published by notifications.",
    PARTNER_INBOX_TOPIC_TEMPLATE: "One topic per cancer center, the only topic a center may "
    "read: the referrals offered to it, published by partners.",
}

_EXAMPLE_IDS = UUID("2f0c8e8a-6d1b-4c4e-9a57-1d3f5b7c9e21")
"""Namespace of the example events' ids (uuid5 of the event type: stable across exports)."""

_EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def event_types_by_topic() -> dict[str, list[type[EventData]]]:
    """The registered payload models grouped by topic (the inbox template for offers)."""
    grouped: dict[str, list[type[EventData]]] = {topic: [] for topic in _CHANNELS}
    for event_type in sorted(registry()):
        model = registry()[event_type]
        grouped.setdefault(model.topic, []).append(model)
    return {topic: models for topic, models in grouped.items() if models}


@cache
def envelope_model(model: type[EventData]) -> type[CloudEvent[Any]]:
    """A schema-only envelope for one event: `type` and `source` pinned, wire attributes required.

    `parse_event` is what validates events; this model only describes them.
    """
    description = f"`{model.event_type}` in its CloudEvents envelope.\n\n"
    description += inspect.cleandoc(model.__doc__ or "")
    # Field types made at run time (literals of this event's values): pydantic reads them, a
    # static checker cannot, hence Any.
    fields: dict[str, Any] = dict(
        specversion=(Literal["1.0"], Field(description="CloudEvents specification version")),
        id=(UUID, Field(description="Unique per occurrence; consumers deduplicate on it")),
        source=(
            Literal[model.source],
            Field(description="The producing service"),
        ),
        type=(
            Literal[model.event_type],
            Field(description="The event type, with its version"),
        ),
        subject=(
            str,
            Field(
                description="The case id (equal to data.case_id); also the Kafka record key",
                json_schema_extra={"format": "uuid"},
            ),
        ),
        time=(AwareDatetime, Field(description="When the occurrence happened (RFC 3339)")),
        datacontenttype=(
            Literal["application/json"],
            Field(description="Media type of `data`"),
        ),
        # Optional in the schema, though our producers always send it: the events published
        # before it existed are still on the topics (an added required attribute is breaking).
        dataschema=(
            Literal[schema_uri(model.event_type)],
            Field(
                default=schema_uri(model.event_type),
                description="The `$id` of this event's JSON Schema (always sent since it was "
                "added; absent from events published before)",
            ),
        ),
        data=(model, Field(description="The event payload")),
    )
    return create_model(
        f"{model.__name__}Event",
        __base__=enveloped(model),
        __doc__=description.strip(),
        **fields,
    )


def json_schemas() -> dict[str, dict[str, Any]]:
    """Event type -> JSON Schema of the full CloudEvents envelope with that payload."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(registry().items()):
        schema = envelope_model(model).model_json_schema()
        schemas[event_type] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": schema_uri(event_type),
            **schema,
        }
    return schemas


def _dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _write_all(directory: Path, files: dict[str, str], stale_glob: str | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if stale_glob is not None:
        for path in directory.glob(stale_glob):
            if path.name not in files:
                path.unlink()
    return written


def _schema_files() -> dict[str, str]:
    return {
        f"{event_type}{SCHEMA_SUFFIX}": _dumps(schema)
        for event_type, schema in json_schemas().items()
    }


def write_json_schemas(directory: str | Path) -> list[Path]:
    """Write one `<type>.schema.json` per event type; remove schemas of types that are gone."""
    return _write_all(Path(directory), _schema_files(), stale_glob=f"*{SCHEMA_SUFFIX}")


def _package_version() -> str:
    try:
        return version("referrals-common")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0.0.0"


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _message_name(model: type[EventData]) -> str:
    """The component key of an event's message: its model's name (no `:`, no `.`)."""
    return model.__name__


_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Kafka record headers. CloudEvents structured mode: the record value is the "
    "whole envelope, `content-type` says so, and there is no `ce_*` header (the Kafka binding "
    "reserves those for binary mode). The W3C trace context travels here, never in the payload.",
    "properties": {
        "content-type": {
            "type": "string",
            "const": CONTENT_TYPE,
            "description": "CloudEvents structured mode, JSON event format",
        },
        "traceparent": {
            "type": "string",
            "description": "W3C Trace Context traceparent of the span that published the event "
            "(present whenever tracing is on)",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        },
        "tracestate": {
            "type": "string",
            "description": "W3C Trace Context tracestate, when the producer had one",
        },
    },
    "required": ["content-type"],
}

_KEY_BINDING: dict[str, Any] = {
    "kafka": {
        "key": {
            "type": "string",
            "format": "uuid",
            "description": "The case id (the envelope's subject; the CloudEvents Kafka binding "
            "maps it to the `partitionkey` extension): all events of a case share a partition "
            "and stay in order",
        },
        "bindingVersion": "0.5.0",
    }
}


def _example(model: type[EventData]) -> dict[str, Any]:
    """The example envelope of an event type, as it is on the wire."""
    event = new_event(EXAMPLES[model](), id=uuid5(_EXAMPLE_IDS, model.event_type), time=NOW)
    return {
        "name": f"{_message_name(model)}Example",
        "summary": f"A `{model.event_type}` event",
        "headers": {"content-type": CONTENT_TYPE, "traceparent": _EXAMPLE_TRACEPARENT},
        "payload": event.model_dump(mode="json"),
    }


def _message(model: type[EventData]) -> dict[str, Any]:
    doc = inspect.cleandoc(model.__doc__ or "")
    return {
        "name": model.event_type,
        "title": model.event_type,
        "summary": doc.split("\n\n")[0].replace("\n", " "),
        "description": doc,
        "contentType": CONTENT_TYPE,
        "headers": copy.deepcopy(_HEADERS_SCHEMA),
        "payload": {"$ref": f"#/components/schemas/{model.__name__}Event"},
        "bindings": copy.deepcopy(_KEY_BINDING),
        "examples": [_example(model)],
    }


def _component_schemas(models: list[type[EventData]]) -> dict[str, Any]:
    """Every envelope schema and the schemas they share, keyed by model name."""
    _, top = models_json_schema(
        [(envelope_model(model), "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    return dict(sorted(top.get("$defs", {}).items()))


def _operation(
    action: str, channel: str, models: list[type[EventData]], title: str, description: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": title,
        "description": description,
        "messages": [
            {"$ref": f"#/channels/{channel}/messages/{_message_name(model)}"} for model in models
        ],
    }


def _operations(by_topic: dict[str, list[type[EventData]]]) -> dict[str, Any]:
    """A `send` per topic (its producer), a `receive` for a center's inbox and one per platform
    consumer and topic it reads."""
    operations: dict[str, Any] = {}
    for topic, models in by_topic.items():
        channel = _CHANNELS[topic]
        producer = models[0].source.rsplit("/", 1)[-1]
        operations[f"send{_pascal(channel)}"] = _operation(
            "send",
            channel,
            models,
            f"{producer} publishes to {topic}",
            f"{producer} publishes these events through its transactional outbox, keyed by "
            "case id.",
        )
    inbox = _CHANNELS[PARTNER_INBOX_TOPIC_TEMPLATE]
    operations["receiveReferralOffers"] = _operation(
        "receive",
        inbox,
        by_topic[PARTNER_INBOX_TOPIC_TEMPLATE],
        "A cancer center reads its inbox",
        "A cancer center consumes its own inbox topic, and no other, with a principal of its "
        "own (`center-<code>`) in consumer groups whose names start with it (Kafka ACLs: Read "
        "and Describe on the topic, Read on the group prefix; see docs/runbook.md). It reads the "
        "patient's questions and the documents through the partner API "
        "(`GET /v1/partner/referrals/{referral_id}`).",
    )
    for service, subscribed in topics.CONSUMERS.items():
        for topic in subscribed:
            channel = _CHANNELS[topic]
            operations[f"{service}Receives{_pascal(channel)}"] = _operation(
                "receive",
                channel,
                by_topic[topic],
                f"{service} consumes {topic}",
                f"{service}'s consumer reads every event of the topic, applies the types it "
                "handles once (its inbox) and skips the others; a record it cannot apply goes "
                f"to `{topics.dead_letter(topic)}`.",
            )
    return operations


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.1 document of every platform topic: channels, one message per event type,
    who sends and who receives."""
    by_topic = event_types_by_topic()
    unnamed = set(by_topic) - set(_CHANNELS)
    if unnamed:
        raise ValueError(f"topics without an AsyncAPI channel name: {sorted(unnamed)}")
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, models in by_topic.items():
        channel: dict[str, Any] = {
            "address": topic,
            "title": topic,
            "description": _TOPIC_DESCRIPTIONS.get(topic, ""),
            "servers": [{"$ref": "#/servers/development"}],
            "messages": {
                _message_name(model): {"$ref": f"#/components/messages/{_message_name(model)}"}
                for model in models
            },
        }
        if topic == PARTNER_INBOX_TOPIC_TEMPLATE:
            channel["parameters"] = {
                "center": {
                    "description": "The center's code in the partner registry (lower case)",
                    "examples": ["charite-berlin"],
                }
            }
        channels[_CHANNELS[topic]] = channel
        messages.update({_message_name(model): _message(model) for model in models})
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": "Cross-border cancer second-opinion referrals: integration events",
            "version": _package_version(),
            "description": "Every event is a CloudEvents 1.0 envelope in the Kafka protocol "
            "binding's structured mode (JSON event format), keyed by case id; its `dataschema` "
            "names its JSON Schema (`$id`). Within a version only optional fields are added; an "
            "incompatible change is a new `.v2` event type published beside the old one. Events "
            "that fail validation or exhaust retries go to `<topic>.dlq`. Events carry "
            "identifiers and clinical facts only, never contact data. Partner front ends read "
            "no topic: they call the HTTP APIs and receive notifications' webhooks. See "
            "docs/event-catalogue.md.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "development": {
                "host": "localhost:19092",
                "protocol": "kafka",
                "description": "The local development stack (deploy/local); deployments "
                "configure their own bootstrap servers.",
            }
        },
        "channels": channels,
        "operations": _operations(by_topic),
        "components": {
            "schemas": _component_schemas([m for ms in by_topic.values() for m in ms]),
            "messages": messages,
        },
    }


def rendered_files() -> dict[str, str]:
    """Every exported file, by path relative to the export directory, with its exact text."""
    files = {f"{SCHEMAS_DIR}/{name}": text for name, text in _schema_files().items()}
    files[ASYNCAPI_FILE] = _dumps(asyncapi_document())
    return files


def export(directory: str | Path) -> list[Path]:
    """Write `schemas/<type>.schema.json` for every event type and `asyncapi.json`."""
    root = Path(directory)
    written = write_json_schemas(root / SCHEMAS_DIR)
    written += _write_all(root, {ASYNCAPI_FILE: _dumps(asyncapi_document())})
    return written


__all__ = [
    "asyncapi_document",
    "envelope_model",
    "event_types_by_topic",
    "export",
    "json_schemas",
    "rendered_files",
    "write_json_schemas",
]
