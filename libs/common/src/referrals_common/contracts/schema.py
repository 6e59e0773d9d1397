"""Machine-readable contracts: a JSON Schema per event type and an AsyncAPI 3 document.

Both are generated from the pydantic models, never written by hand:

- `json_schemas()` gives, per event type, the JSON Schema (draft 2020-12) of the whole CloudEvents
  envelope carrying that payload, with `type` and `source` pinned to the event's values and every
  attribute a producer always sends marked required;
- `asyncapi_document()` declares one FastStream publisher per topic on a `KafkaBroker` that is
  never started (so nothing connects anywhere), each with the discriminated union (on `type`) of
  the envelopes published there, and lets FastStream's AsyncAPI generator build the document; it
  then adds what FastStream does not model (the Kafka key, the CloudEvents content type, the
  trace-context headers, the `{center}` parameter of the partner inbox address).

`python -m referrals_common.contracts export docs/contracts` writes both; a unit test regenerates
them in memory and fails when the committed files are stale.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Iterable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import AwareDatetime, Field, create_model

from . import topics
from .envelope import CONTENT_TYPE, CloudEvent, EventData, registry
from .partners import PARTNER_INBOX_TOPIC_TEMPLATE

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE = "asyncapi.json"
SCHEMAS_DIR = "schemas"
SCHEMA_SUFFIX = ".schema.json"

# Channel names in the AsyncAPI document, one per topic, in the order they are listed.
_CHANNELS: dict[str, str] = {
    topics.CASES: "cases",
    topics.DOCUMENTS: "documents",
    topics.LANGUAGE_CHECKS: "language-checks",
    topics.ROUTING: "routing",
    topics.NOTIFICATIONS: "notifications",
    PARTNER_INBOX_TOPIC_TEMPLATE: "partner-inbox",
}

_TOPIC_DESCRIPTIONS = {
    topics.CASES: "Cases and their lifecycle, published by intake.",
    topics.DOCUMENTS: "Stored and rejected documents, published by records.",
    topics.LANGUAGE_CHECKS: "The outcome of the language check of each document, published by "
    "translation.",
    topics.ROUTING: "What happened to each referral of a case, published by partners.",
    topics.NOTIFICATIONS: "What was told to the patient, published by notifications.",
    PARTNER_INBOX_TOPIC_TEMPLATE: "One topic per cancer center, the only topic a center may "
    "read: the referrals offered to it, published by partners.",
}


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
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{model.__name__}Event",
        __base__=CloudEvent[model],  # type: ignore[valid-type]
        __doc__=description.strip(),
        specversion=(Literal["1.0"], Field(description="CloudEvents specification version")),
        id=(UUID, Field(description="Unique per occurrence; consumers deduplicate on it")),
        source=(
            Literal[model.source],  # type: ignore[valid-type]
            Field(description="The producing service"),
        ),
        type=(
            Literal[model.event_type],  # type: ignore[valid-type]
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
        data=(model, Field(description="The event payload")),
    )


def json_schemas() -> dict[str, dict[str, Any]]:
    """Event type -> JSON Schema of the full CloudEvents envelope with that payload."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(registry().items()):
        schema = envelope_model(model).model_json_schema()
        schemas[event_type] = {"$schema": JSON_SCHEMA_DIALECT, **schema}
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


def _publisher_schema(models: Iterable[type[EventData]]) -> Any:
    envelopes = tuple(envelope_model(model) for model in models)
    if len(envelopes) == 1:
        return envelopes[0]
    return Annotated[Union[envelopes], Field(discriminator="type")]  # noqa: UP007


def _build_broker() -> Any:
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(
        "localhost:19092",
        description="The local development stack (deploy/local); deployments configure their "
        "own bootstrap servers. The broker object is only described here, never connected.",
    )
    for topic, models in event_types_by_topic().items():
        channel = _CHANNELS.get(topic, topic)
        listed = "\n".join(f"- `{model.event_type}`" for model in models)
        broker.publisher(
            topic,
            title=channel,
            description=f"{_TOPIC_DESCRIPTIONS.get(topic, '')}\n\nEvents:\n{listed}",
            schema=_publisher_schema(models),
        )
    return broker


_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Kafka record headers. The W3C trace context travels here, never in the "
    "payload.",
    "properties": {
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
        "content-type": {
            "const": CONTENT_TYPE,
            "description": "CloudEvents structured mode: the record value is the whole envelope",
        },
        "ce_type": {
            "type": "string",
            "description": "Copy of the envelope's `type`, to filter without parsing the value; "
            "the value is authoritative",
        },
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "Copy of the envelope's `id`; the value is authoritative",
        },
    },
    "required": ["content-type", "ce_type", "ce_id"],
}

_KEY_BINDING: dict[str, Any] = {
    "kafka": {
        "key": {
            "type": "string",
            "format": "uuid",
            "description": "The case id (the envelope's subject): all events of a case share a "
            "partition and stay in order",
        },
        "bindingVersion": "0.4.0",
    }
}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every platform topic, generated by FastStream."""
    from faststream.specification import AsyncAPI

    broker = _build_broker()
    spec = AsyncAPI(
        broker,
        title="Cross-border cancer second-opinion referrals: integration events",
        version=_package_version(),
        description="Every event is a CloudEvents 1.0 envelope in structured JSON mode, keyed by "
        "case id. An incompatible change is a new `.v2` event type published beside the old "
        "one. Events that fail validation or exhaust retries go to `<topic>.dlq`. Events carry "
        "identifiers and clinical facts only, never contact data. See docs/event-catalogue.md.",
        schema_version="3.0.0",
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return _finish(document)


def _finish(document: dict[str, Any]) -> dict[str, Any]:
    """Add what FastStream does not model, and put every map in a stable order."""
    order = list(_CHANNELS.values())

    def ordered(mapping: dict[str, Any], key_of: Any = lambda key: key) -> dict[str, Any]:
        def rank(key: str) -> tuple[int, str]:
            name = key_of(key)
            return (order.index(name) if name in order else len(order), key)

        return {key: mapping[key] for key in sorted(mapping, key=rank)}

    channels = ordered(document.get("channels", {}))
    inbox = channels.get(_CHANNELS[PARTNER_INBOX_TOPIC_TEMPLATE])
    if inbox is not None:
        inbox["parameters"] = {
            "center": {
                "description": "The center's code in the partner registry (lower case)",
                "examples": ["charite-berlin"],
            }
        }
    document["channels"] = channels
    document["operations"] = ordered(document.get("operations", {}))

    components = document.setdefault("components", {})
    messages = ordered(components.get("messages", {}), key_of=lambda key: key.split(":")[0])
    for message in messages.values():
        message.pop("correlationId", None)
        message["contentType"] = CONTENT_TYPE
        message["headers"] = copy.deepcopy(_HEADERS_SCHEMA)
        message["bindings"] = copy.deepcopy(_KEY_BINDING)
    components["messages"] = messages
    components["schemas"] = dict(sorted(components.get("schemas", {}).items()))
    return document


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
