"""The CloudEvents 1.0 envelope every integration event travels in, and the event registry.

An event's *payload* is a pydantic model derived from `EventData`; it declares, as class
variables, its CloudEvents `type` (which carries the version: `referrals.case.submitted.v1`), the
topic it is published to, and the producing service (`source`). The envelope adds the identity,
time and subject (the case id, which is also the Kafka key) of one occurrence.

On Kafka the envelope is the record's value in CloudEvents *structured* JSON mode; the W3C trace
context travels in the record headers, never in the payload.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


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


class CloudEvent(BaseModel, Generic[D]):
    """A CloudEvents 1.0 envelope around one event payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=uuid4, description="Unique per occurrence; the inbox key.")
    source: str = Field(
        description="URI-reference of the producing service, e.g. /referrals/intake"
    )
    type: str = Field(description="Event type with its version, e.g. referrals.case.submitted.v1")
    subject: str = Field(description="The case id")
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    data: D

    @property
    def case_id(self) -> UUID:
        return self.data.case_id

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
        cls = _ENVELOPES[model] = CloudEvent[model]  # type: ignore[valid-type]
    return cls  # type: ignore[return-value]


def new_event(data: D, *, id: UUID | None = None, time: datetime | None = None) -> CloudEvent[D]:
    """Wrap a payload in a fresh envelope whose type, source and subject come from the payload."""
    fields: dict[str, Any] = {
        "source": data.source,
        "type": data.event_type,
        "subject": str(data.case_id),
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
    return event  # type: ignore[return-value]


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
