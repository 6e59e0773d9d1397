"""The CloudEvents 1.0 envelope every integration event travels in, and the event registry.

An event's *payload* is a pydantic model derived from `EventData`; it declares, as class
variables, its CloudEvents `type` (which carries the version: `referrals.case.submitted.v1`), the
topic it is published to, and the producing service (`source`). The envelope adds the identity,
time and subject (the case id, which is also the Kafka key) of one occurrence.

On Kafka the envelope is the record's value in CloudEvents *structured* JSON mode (the record's
only CloudEvents header is `content-type: application/cloudevents+json`, never `ce_*` headers,
which the Kafka protocol binding reserves for binary mode); the W3C trace context travels in the
record headers, never in the payload.

Each envelope names the JSON Schema of its event in `dataschema` (`schema_uri(event_type)`, the
`$id` of `docs/contracts/schemas/<type>.schema.json`). Extension attributes (CloudEvents
extensions: lower-case letters and digits, a string, integer or boolean value) are accepted and
kept; the payload (`data`) stays strict.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"

SCHEMA_URI_PREFIX = "urn:referrals:contracts:schema:"
"""Base of every event schema's `$id` and every envelope's `dataschema`: a URN, not a URL, so it
names the contract without promising a host. `urn:referrals:contracts:schema:<type>` is the
file `docs/contracts/schemas/<type>.schema.json` of this repository (and the same schema
is in the AsyncAPI document under the event's message)."""

EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
"""CloudEvents 1.0: attribute names are lower-case letters and digits (20 characters at most)."""

ENVELOPE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)


def schema_uri(event_type: str) -> str:
    """The `$id` of the JSON Schema of `event_type`, which its envelopes name in `dataschema`."""
    return SCHEMA_URI_PREFIX + event_type


class EventData(BaseModel):
    """Base of every event payload: immutable, strict about unknown fields, keyed by case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    source: ClassVar[str]

    case_id: UUID = Field(description="The case this event is about; also the Kafka key.")

    def publish_topic(self) -> str:
        """The topic this occurrence is published to (per-center events override it)."""
        return self.topic

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            register(cls)


D = TypeVar("D", bound=EventData)


def _extension_attributes_schema(schema: dict[str, Any]) -> None:
    """In the JSON Schema of an envelope: any further attribute is a CloudEvents extension."""
    schema["propertyNames"] = {"pattern": EXTENSION_NAME.pattern}
    schema["additionalProperties"] = {
        "description": "A CloudEvents extension attribute (e.g. `partitionkey`, `traceparent`)",
        "type": ["string", "integer", "boolean"],
    }


class CloudEvent(BaseModel, Generic[D]):
    """A CloudEvents 1.0 envelope around one event payload.

    Attributes this model does not name are CloudEvents extension attributes: kept (in
    `extensions()` and on the wire) when their name and value are what the specification allows,
    refused otherwise."""

    model_config = ConfigDict(
        extra="allow", frozen=True, json_schema_extra=_extension_attributes_schema
    )

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=uuid4, description="Unique per occurrence; the inbox key.")
    source: str = Field(
        description="URI-reference of the producing service, e.g. /referrals/intake"
    )
    type: str = Field(description="Event type with its version, e.g. referrals.case.submitted.v1")
    subject: str = Field(description="The case id")
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = Field(
        default=None,
        description="URI of the JSON Schema of this event (its `$id`); producers always set it",
    )
    data: D

    @model_validator(mode="after")
    def _extensions_are_cloudevents_extensions(self) -> CloudEvent[D]:
        for name, value in (self.__pydantic_extra__ or {}).items():
            if not EXTENSION_NAME.match(name):
                raise ValueError(
                    f"{name}: not a CloudEvents attribute name (lower-case letters and digits)"
                )
            if not isinstance(value, str | int):  # bool is an int
                raise ValueError(f"{name}: an extension attribute is a string, integer or boolean")
        return self

    @property
    def case_id(self) -> UUID:
        return self.data.case_id

    def extensions(self) -> dict[str, Any]:
        """The extension attributes this envelope carries (none from our producers)."""
        return dict(self.__pydantic_extra__ or {})

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


_REGISTRY: dict[str, type[EventData]] = {}


class UnknownEventType(ValueError):
    """The envelope names a `type` no contract defines (or the envelope has no type at all)."""


class InvalidEvent(ValueError):
    """The bytes are not a valid envelope, or the payload does not match its contract."""


def register(cls: type[EventData]) -> type[EventData]:
    existing = _REGISTRY.get(cls.event_type)
    if existing is not None and existing is not cls:
        raise TypeError(f"event type {cls.event_type} is defined twice: {existing} and {cls}")
    _REGISTRY[cls.event_type] = cls
    return cls


def registry() -> dict[str, type[EventData]]:
    """Every known event type and its payload model."""
    return dict(_REGISTRY)


_ENVELOPES: dict[type[EventData], type[CloudEvent[Any]]] = {}


def enveloped(model: type[D]) -> type[CloudEvent[D]]:
    """`CloudEvent[model]`, made once per process. Pydantic keeps its parametrised classes only
    weakly: once collected, the next `CloudEvent[model]` builds and validates a new model class
    (milliseconds) in the middle of a consumer's batch."""
    cls = _ENVELOPES.get(model)
    if cls is None:
        cls = _ENVELOPES[model] = CloudEvent[model]  # type: ignore[valid-type]  # run-time type arg
    return cls


def new_event(data: D, *, id: UUID | None = None, time: datetime | None = None) -> CloudEvent[D]:
    """Wrap a payload in a fresh envelope whose type, source and subject come from the payload."""
    fields: dict[str, Any] = {
        "source": data.source,
        "type": data.event_type,
        "subject": str(data.case_id),
        "dataschema": schema_uri(data.event_type),
        "data": data,
    }
    if id is not None:
        fields["id"] = id
    if time is not None:
        fields["time"] = time
    return enveloped(type(data))(**fields)


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent[EventData]:
    """Validate raw JSON against the envelope and the contract its `type` names.

    Raises UnknownEventType or InvalidEvent with a message that says what is wrong.
    """
    if isinstance(raw, bytes | str):
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"not JSON: {exc}") from exc
    else:
        doc = raw
    if not isinstance(doc, dict):
        raise InvalidEvent(f"an event is a JSON object, got {type(doc).__name__}")
    event_type = doc.get("type")
    if not isinstance(event_type, str):
        raise UnknownEventType("the envelope has no string `type`")
    model = _REGISTRY.get(event_type)
    if model is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    # The envelope's defaults are for producers; a received event must carry its own identity
    # (the inbox key) and time, or every redelivery would look like a new event.
    missing = [
        name for name in ("id", "time", "source", "subject", "specversion") if name not in doc
    ]
    if missing:
        raise InvalidEvent(f"{event_type}: missing envelope attribute(s) {', '.join(missing)}")
    try:
        event = enveloped(model).model_validate(doc)
    except ValidationError as exc:
        raise InvalidEvent(f"{event_type}: {_summarise(exc)}") from exc
    if event.subject != str(event.data.case_id):
        raise InvalidEvent(f"{event_type}: subject {event.subject} is not data.case_id")
    if event.source != model.source:
        raise InvalidEvent(f"{event_type}: source {event.source!r} is not {model.source!r}")
    # Events published before `dataschema` existed have none; one that names another schema is
    # not the contract its type says.
    if event.dataschema is not None and event.dataschema != schema_uri(event_type):
        raise InvalidEvent(
            f"{event_type}: dataschema {event.dataschema!r} is not {schema_uri(event_type)!r}"
        )
    return event


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
