"""The event catalogue: every contract round-trips, bad events are refused, docs stay current."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.bindings.kafka import KafkaMessage
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from referrals_common.contracts import (
    PARTNER_INBOX_TOPIC_TEMPLATE,
    CaseReadyForReferral,
    CaseStatusChanged,
    CaseSubmitted,
    Destination,
    DocumentKind,
    DocumentLanguageAccepted,
    DocumentStored,
    DocumentTranslationRequired,
    EventData,
    InvalidEvent,
    ReferralOffered,
    Stage,
    UnknownEventType,
    new_event,
    parse_event,
    registry,
    topics,
)
from referrals_common.contracts.compatibility import SNAPSHOT_DIR
from referrals_common.contracts.envelope import CONTENT_TYPE, schema_uri
from referrals_common.contracts.examples import (
    CASE,
    CLINICAL,
    DOC_A,
    EXAMPLES,
    NOW,
    REFERRAL,
)
from referrals_common.contracts.partners import document_fetch_path
from referrals_common.contracts.schema import asyncapi_document, json_schemas, rendered_files
from referrals_common.messaging.consumer import parse_record
from referrals_common.messaging.relay import record_headers

pytestmark = pytest.mark.unit

EXAMPLE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

DOCS_CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts"

SAMPLES = EXAMPLES
"""One payload per event type (`referrals_common.contracts.examples`, also in AsyncAPI)."""

EVENT_TYPES = sorted(registry())


def sample(event_type: str) -> EventData:
    return SAMPLES[registry()[event_type]]()


def sample_json(event_type: str = "referrals.case.submitted.v1") -> dict[str, Any]:
    return json.loads(new_event(sample(event_type)).to_json())


# --- round trips ---------------------------------------------------------------------------------


def test_every_event_has_a_sample_and_the_catalogue_is_complete():
    assert set(SAMPLES) == set(registry().values())
    assert len(registry()) == 45


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_event_round_trips_through_json(event_type):
    data = sample(event_type)
    event = new_event(data, time=NOW)

    parsed = parse_event(event.to_json())

    assert parsed == event
    assert type(parsed.data) is type(data)
    assert parsed.data == data
    assert parsed.type == event_type
    assert parsed.subject == str(data.case_id)  # a case, or a front end's stream key
    assert parsed.source == type(data).source


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_event_parses_from_str_and_dict_too(event_type):
    event = new_event(sample(event_type))
    assert parse_event(event.to_json().decode()) == event
    assert parse_event(json.loads(event.to_json())) == event


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_envelope_schema_requires_what_the_producer_writes(event_type):
    envelope = sample_json(event_type)
    schema = json_schemas()[event_type]
    # `dataschema` is always sent but optional: events published before it existed lack it.
    assert set(schema["required"]) == set(envelope) - {"dataschema"}
    assert set(schema["properties"]) == set(envelope)
    assert schema["properties"]["type"]["const"] == event_type


@pytest.mark.parametrize("model", list(registry().values()), ids=lambda model: model.__name__)
def test_payloads_are_frozen_and_strict(model):
    assert model.model_config["frozen"] is True
    assert model.model_config["extra"] == "forbid"
    data = SAMPLES[model]()
    with pytest.raises(ValidationError):
        data.case_id = REFERRAL  # type: ignore[misc]
    assert model.__doc__
    assert "Emitted" in model.__doc__


# --- rejections ----------------------------------------------------------------------------------


def test_an_unknown_type_is_rejected():
    doc = sample_json()
    doc["type"] = "referrals.case.submitted.v9"
    with pytest.raises(UnknownEventType, match=r"referrals\.case\.submitted\.v9"):
        parse_event(doc)


def test_an_envelope_without_a_type_is_rejected():
    doc = sample_json()
    del doc["type"]
    with pytest.raises(UnknownEventType):
        parse_event(doc)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", "[1, 2]", b'"a string"'])
def test_malformed_json_is_rejected(raw):
    with pytest.raises(InvalidEvent):
        parse_event(raw)


def test_a_payload_with_a_missing_field_is_rejected_naming_the_field():
    doc = sample_json()
    del doc["data"]["submitted_at"]
    with pytest.raises(InvalidEvent, match=r"data\.submitted_at: Field required"):
        parse_event(doc)


def test_a_missing_nested_field_is_named_with_its_path():
    doc = sample_json()
    del doc["data"]["clinical"]["icd10"]
    with pytest.raises(InvalidEvent, match=r"data\.clinical\.icd10: Field required"):
        parse_event(doc)


def test_an_extra_payload_field_is_rejected_naming_the_field():
    doc = sample_json()
    doc["data"]["patient_email"] = "olena@example.com"
    with pytest.raises(InvalidEvent, match=r"data\.patient_email: Extra inputs are not permitted"):
        parse_event(doc)


def test_a_cloudevents_extension_attribute_is_accepted_and_kept():
    doc = sample_json()
    doc["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    doc["partitionkey"] = doc["subject"]
    doc["sequence"] = 7
    event = parse_event(doc)
    assert event.extensions() == {
        "traceparent": doc["traceparent"],
        "partitionkey": doc["subject"],
        "sequence": 7,
    }
    assert json.loads(event.to_json()) == doc, "extensions travel on when re-published"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("trace_parent", "x", "not a CloudEvents attribute name"),
        ("Partitionkey", "x", "not a CloudEvents attribute name"),
        ("averyveryverylongextension", "x", "not a CloudEvents attribute name"),
        ("weight", 1.5, "string, integer or boolean"),
        ("labels", {"a": "b"}, "string, integer or boolean"),
    ],
)
def test_an_extension_attribute_the_specification_does_not_allow_is_rejected(name, value, reason):
    doc = sample_json()
    doc[name] = value
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(doc)


def test_the_payload_stays_strict_when_the_envelope_has_extensions():
    doc = sample_json()
    doc["partitionkey"] = doc["subject"]
    doc["data"]["partitionkey"] = doc["subject"]
    with pytest.raises(InvalidEvent, match=r"data\.partitionkey: Extra inputs are not permitted"):
        parse_event(doc)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_names_its_published_schema_in_dataschema(event_type):
    envelope = sample_json(event_type)
    schema = json_schemas()[event_type]
    assert envelope["dataschema"] == schema_uri(event_type) == schema["$id"]
    assert schema["properties"]["dataschema"]["const"] == schema["$id"]
    published = DOCS_CONTRACTS / "schemas" / f"{event_type}.schema.json"
    assert json.loads(published.read_text(encoding="utf-8"))["$id"] == envelope["dataschema"]


def test_an_event_naming_another_schema_is_rejected():
    doc = sample_json("referrals.case.submitted.v1")
    doc["dataschema"] = schema_uri("referrals.case.withdrawn.v1")
    with pytest.raises(InvalidEvent, match="dataschema"):
        parse_event(doc)


def test_an_event_published_before_dataschema_existed_still_parses():
    doc = sample_json()
    del doc["dataschema"]
    assert parse_event(doc).dataschema is None


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_published_schema_accepts_the_event_and_its_extensions(event_type):
    schema = json_schemas()[event_type]
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    envelope = sample_json(event_type)
    validator.validate(envelope)
    validator.validate({**envelope, "partitionkey": envelope["subject"], "sequence": 1})
    assert not validator.is_valid({**envelope, "trace_parent": "x"})
    assert not validator.is_valid({**envelope, "data": {**envelope["data"], "extra": 1}})


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_official_sdk_reads_an_event_as_the_relay_publishes_it(event_type):
    """The CloudEvents SDK's Kafka binding, mode detected from the headers as an integrator's
    consumer would: structured, with every attribute and the payload as published."""
    event = new_event(sample(event_type), time=NOW)
    message = KafkaMessage(
        headers=dict(record_headers({"traceparent": EXAMPLE_TRACEPARENT})),
        key=str(event.case_id).encode(),
        value=event.to_json(),
    )
    received = kafka_binding.from_kafka_event(message)
    assert received.get_attributes() == {
        "specversion": "1.0",
        "id": str(event.id),
        "source": event.source,
        "type": event_type,
        "subject": str(event.case_id),
        "time": NOW,
        "datacontenttype": "application/json",
        "dataschema": schema_uri(event_type),
        "partitionkey": str(event.case_id),
    }
    assert received.get_data() == event.data.model_dump(mode="json")


def test_a_wrong_subject_is_rejected():
    doc = sample_json()
    doc["subject"] = str(REFERRAL)
    with pytest.raises(InvalidEvent, match=r"subject"):
        parse_event(doc)


def test_a_wrong_source_is_rejected():
    doc = sample_json()
    doc["source"] = "/referrals/partners"
    with pytest.raises(InvalidEvent, match=r"source"):
        parse_event(doc)


def test_a_naive_datetime_in_the_payload_is_rejected_naming_the_field():
    doc = sample_json()
    doc["data"]["submitted_at"] = "2026-03-14T09:26:53"
    with pytest.raises(InvalidEvent, match=r"data\.submitted_at: .*timezone"):
        parse_event(doc)


def test_a_naive_envelope_time_is_rejected_naming_the_field():
    doc = sample_json()
    doc["time"] = "2026-03-14T09:26:53"
    with pytest.raises(InvalidEvent, match=r"(^|; |: )time: .*timezone"):
        parse_event(doc)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("clinical", "icd10"), "c50.9", "data.clinical.icd10"),
        (("clinical", "icd10"), "I21.0", "data.clinical.icd10"),
        (("clinical", "stage", "group"), "3A", "data.clinical.stage.group"),
        (("clinical", "age_group"), "senior", "data.clinical.age_group"),
        (("clinical", "reasons"), [], "data.clinical.reasons"),
        (("clinical", "reasons"), ["drug_options", "drug_options"], "data.clinical.reasons"),
        (("destination", "countries"), ["de"], "data.destination.countries.0"),
        (("locale",), "de", "data.locale"),
        (("case_id",), "not-a-uuid", "data.case_id"),
    ],
)
def test_imprecise_values_are_rejected(path, value, field):
    doc = sample_json()
    target = doc["data"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidEvent, match=re.escape(field) + ":"):
        parse_event(doc)


# --- invariants the docstrings promise -----------------------------------------------------------


def test_a_destination_abroad_needs_cross_border_consent():
    submitted = SAMPLES[CaseSubmitted]().model_dump()
    with pytest.raises(ValidationError, match="cross_border_consent_version"):
        CaseSubmitted.model_validate({**submitted, "cross_border_consent_version": None})
    in_ukraine = {"preference": "ukraine", "countries": []}
    CaseSubmitted.model_validate(
        {**submitted, "destination": in_ukraine, "cross_border_consent_version": None}
    )
    ready = SAMPLES[CaseReadyForReferral]().model_dump()
    with pytest.raises(ValidationError, match="cross_border_transfer_allowed"):
        CaseReadyForReferral.model_validate({**ready, "cross_border_transfer_allowed": False})
    CaseReadyForReferral.model_validate(
        {**ready, "destination": in_ukraine, "cross_border_transfer_allowed": False}
    )


@pytest.mark.parametrize(
    ("preference", "countries"),
    [("countries", []), ("abroad", ["DE"]), ("ukraine", ["UA"])],
)
def test_countries_go_with_the_countries_preference_only(preference, countries):
    with pytest.raises(ValidationError, match="preference"):
        Destination(preference=preference, countries=countries)


def test_a_stage_knows_something():
    with pytest.raises(ValidationError, match="TNM classification, a stage group or both"):
        Stage()
    assert Stage(tnm="ypT1c N0 M0").group is None
    assert Stage(group="IIIC1").tnm is None


def test_a_status_change_changes_the_status():
    with pytest.raises(ValidationError, match="the same"):
        CaseStatusChanged(
            case_id=CASE,
            from_status="ready",
            to_status="ready",
            reason_code="other",
            reason="No change.",
        )


def test_translation_of_goes_with_the_translation_kind():
    stored = SAMPLES[DocumentStored]().model_dump()
    with pytest.raises(ValidationError, match="translation_of"):
        DocumentStored.model_validate({**stored, "translation_of": None})
    with pytest.raises(ValidationError, match="translation_of"):
        DocumentStored.model_validate({**stored, "kind": "pathology_report"})


def test_an_offer_to_a_center_carries_no_questions_in_the_patients_words():
    sample = SAMPLES[ReferralOffered]()
    with pytest.raises(ValidationError, match="no questions"):
        ReferralOffered.model_validate(sample.model_dump() | {"clinical": CLINICAL.model_dump()})


def test_an_opinion_and_only_an_opinion_names_the_referral_that_uploaded_it():
    base = SAMPLES[DocumentStored]().model_dump() | {"translation_of": None}
    opinion = base | {"kind": DocumentKind.OPINION}
    assert DocumentStored.model_validate(opinion | {"referral_id": REFERRAL}).referral_id
    with pytest.raises(ValidationError, match="names the referral"):
        DocumentStored.model_validate(opinion)
    with pytest.raises(ValidationError, match="names the referral"):
        DocumentStored.model_validate(
            base | {"kind": DocumentKind.PATHOLOGY_REPORT, "referral_id": REFERRAL}
        )


def test_an_object_key_has_no_file_name():
    stored = SAMPLES[DocumentStored]().model_dump()
    with pytest.raises(ValidationError, match="object_key"):
        DocumentStored.model_validate({**stored, "object_key": "cases/Olena_Kovalenko_biopsy.pdf"})


def test_language_shares_are_consistent():
    accepted = SAMPLES[DocumentLanguageAccepted]().model_dump()
    with pytest.raises(ValidationError, match="main_language"):
        DocumentLanguageAccepted.model_validate({**accepted, "main_language": "en"})
    with pytest.raises(ValidationError, match="more than 1"):
        DocumentLanguageAccepted.model_validate(
            {
                **accepted,
                "languages": [{"language": "de", "share": 0.8}, {"language": "la", "share": 0.3}],
            }
        )
    required = SAMPLES[DocumentTranslationRequired]().model_dump()
    with pytest.raises(ValidationError, match="no translation is required"):
        DocumentTranslationRequired.model_validate({**required, "detected_language": "en"})


def test_a_dicom_study_is_accepted_without_languages_and_only_it():
    accepted = SAMPLES[DocumentLanguageAccepted]().model_dump()
    study = {**accepted, "languages": [], "main_language": None, "method": "dicom", "pages": 1}
    assert DocumentLanguageAccepted.model_validate(study).main_language is None
    with pytest.raises(ValidationError, match="without languages"):
        DocumentLanguageAccepted.model_validate({**accepted, "method": "dicom"})
    with pytest.raises(ValidationError, match="languages is empty"):
        DocumentLanguageAccepted.model_validate({**study, "method": "text_layer"})


def test_an_offer_points_at_its_own_documents():
    offer = SAMPLES[ReferralOffered]().model_dump()
    offer["documents"][0]["fetch_via"] = document_fetch_path(CASE, DOC_A)
    with pytest.raises(ValidationError, match="fetch_via"):
        ReferralOffered.model_validate(offer)


def test_an_offer_goes_to_the_centers_inbox():
    offer = SAMPLES[ReferralOffered]()
    assert offer.inbox_topic == "referrals.partner-inbox.charite-berlin.v1"
    assert ReferralOffered.topic_for("NIO-Warszawa") == topics.partner_inbox("nio-warszawa")
    assert PARTNER_INBOX_TOPIC_TEMPLATE.format(center="charite-berlin") == offer.inbox_topic
    with pytest.raises(ValueError, match="center code"):
        ReferralOffered.topic_for("../other")


# --- catalogue-wide rules ------------------------------------------------------------------------

CONTACT_WORDS = ("name", "email", "e_mail", "mail", "phone", "address", "birth", "dob", "contact")
# Names that are not a person's: a cancer center's public display name and its street address.
NOT_PERSONAL = {"center_name", "center_address"}
# The one event made to carry contact details: sealed to notifications, on its private topic.
SEALED_CONTACT_EVENTS = {"referrals.case.contact_shared.v1"}


def _property_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.get("properties", {}).items():
            yield key
            yield from _property_names(value)
        for key, value in schema.items():
            if key != "properties":
                yield from _property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _property_names(item)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_no_event_has_a_field_for_contact_data(event_type):
    names = set(_property_names(json_schemas()[event_type]))
    assert names  # the walk found the fields
    if event_type in SEALED_CONTACT_EVENTS:
        assert {"sealed_contact", "locale", "front_end"} <= names
        assert not {n for n in names for w in ("email", "phone", "address") if w in n}
        return
    suspicious = {
        name for name in names - NOT_PERSONAL for word in CONTACT_WORDS if word in name.lower()
    }
    assert not suspicious, f"{event_type} has fields that look like contact data: {suspicious}"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_field_has_a_description(event_type):
    schema = json_schemas()[event_type]
    for obj in (schema, *schema.get("$defs", {}).values()):
        for name, prop in obj.get("properties", {}).items():
            assert prop.get("description"), f"{obj['title']}.{name} has no description"


@pytest.mark.parametrize("model", list(registry().values()), ids=lambda model: model.__name__)
def test_every_event_names_its_topic_source_and_versioned_type(model):
    assert model.topic in (*topics.PLATFORM_TOPICS, PARTNER_INBOX_TOPIC_TEMPLATE)
    assert re.fullmatch(r"referrals\.[a-z]+\.[a-z_]+\.v[1-9][0-9]*", model.event_type)
    assert model.source in {
        "/referrals/intake",
        "/referrals/records",
        "/referrals/translation",
        "/referrals/partners",
        "/referrals/notifications",
    }


def test_every_platform_topic_carries_events():
    used = {model.topic for model in registry().values()}
    assert set(topics.PLATFORM_TOPICS) <= used


def _nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for field in model.model_fields.values():
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            inner = (arg, *getattr(arg, "__args__", ()))
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    yield candidate
                    yield from _nested_models(candidate)


@pytest.mark.parametrize("model", list(registry().values()), ids=lambda model: model.__name__)
def test_nested_parts_are_frozen_and_strict_too(model):
    for part in _nested_models(model):
        assert part.model_config.get("frozen") is True, part
        assert part.model_config.get("extra") == "forbid", part


# --- generated documents -------------------------------------------------------------------------


def test_a_record_in_binary_content_mode_is_refused_naming_the_mode():
    event = new_event(sample("referrals.case.withdrawn.v1"))
    record = SimpleNamespace(
        headers=[("ce_specversion", b"1.0"), ("ce_type", event.type.encode())],
        value=event.data.model_dump_json().encode(),
    )
    with pytest.raises(InvalidEvent, match="binary content mode"):
        parse_record(record)


def test_a_record_published_with_the_former_ce_header_copies_still_parses():
    event = new_event(sample("referrals.case.withdrawn.v1"))
    record = SimpleNamespace(
        headers=[
            ("content-type", CONTENT_TYPE.encode()),
            ("ce_type", event.type.encode()),
            ("ce_id", str(event.id).encode()),
        ],
        value=event.to_json(),
    )
    assert parse_record(record) == event


def test_the_asyncapi_document_names_every_topic():
    document = asyncapi_document()
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {*topics.PLATFORM_TOPICS, PARTNER_INBOX_TOPIC_TEMPLATE}
    schemas = document["components"]["schemas"]
    for model in registry().values():
        assert f"{model.__name__}Event" in schemas
    inbox = next(
        channel
        for channel in document["channels"].values()
        if channel["address"] == PARTNER_INBOX_TOPIC_TEMPLATE
    )
    assert "center" in inbox["parameters"]
    for message in document["components"]["messages"].values():
        assert message["contentType"].startswith("application/cloudevents+json")
        assert "traceparent" in message["headers"]["properties"]
        assert not any(name.startswith("ce_") for name in message["headers"]["properties"])


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def test_the_asyncapi_document_has_one_message_per_event_type_with_an_example():
    document = asyncapi_document()
    messages = document["components"]["messages"]
    assert {message["name"] for message in messages.values()} == set(EVENT_TYPES)
    assert len(messages) == len(EVENT_TYPES)
    for key, message in messages.items():
        model = registry()[message["name"]]
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}Event"}
        channel = next(c for c in document["channels"].values() if c["address"] == model.topic)
        assert channel["messages"][key] == {"$ref": f"#/components/messages/{key}"}
        [example] = message["examples"]
        event = parse_event(example["payload"])
        assert event.type == message["name"]
        assert example["headers"]["content-type"] == CONTENT_TYPE
    for section in ("schemas", "messages"):
        for key in document["components"][section]:
            assert re.fullmatch(r"[A-Za-z0-9_\-]+", key), f"{section} key {key!r}"
    assert not [key for key in _keys(document["channels"]) if ":" in key]
    assert not [key for key in document["operations"] if ":" in key]


def test_a_center_receives_its_inbox_and_each_service_what_it_subscribes_to():
    document = asyncapi_document()
    operations = document["operations"]
    channels = document["channels"]

    def address(operation: dict[str, Any]) -> str:
        return channels[operation["channel"]["$ref"].split("/")[-1]]["address"]

    received = {(name, address(op)) for name, op in operations.items() if op["action"] == "receive"}
    assert ("receiveReferralOffers", PARTNER_INBOX_TOPIC_TEMPLATE) in received
    offers = operations["receiveReferralOffers"]["messages"]
    assert sorted(m["$ref"] for m in offers) == [
        "#/channels/partnerInbox/messages/ReferralFollowUpAsked",
        "#/channels/partnerInbox/messages/ReferralInformationReceived",
        "#/channels/partnerInbox/messages/ReferralMeetingChanged",
        "#/channels/partnerInbox/messages/ReferralOffered",
    ]
    for service, subscribed in topics.CONSUMERS.items():
        assert {a for n, a in received if n.startswith(f"{service}Receives")} == set(subscribed)
    sent = {address(op) for op in operations.values() if op["action"] == "send"}
    assert sent == {*topics.PLATFORM_TOPICS, PARTNER_INBOX_TOPIC_TEMPLATE}


def test_the_consumers_listed_in_the_contracts_are_the_services_subscriptions():
    from referrals_intake.consumers import SUBSCRIBED_TOPICS as intake
    from referrals_notifications.consumers import SUBSCRIBED_TOPICS as notifications
    from referrals_partners.consumers import SUBSCRIBED_TOPICS as partners
    from referrals_records.consumers import SUBSCRIBED_TOPICS as records
    from referrals_translation.consumers import SUBSCRIBED_TOPICS as translation

    actual = {
        "intake": intake,
        "records": records,
        "translation": translation,
        "partners": partners,
        "notifications": notifications,
    }
    assert {k: set(v) for k, v in topics.CONSUMERS.items()} == {
        k: set(v) for k, v in actual.items()
    }


def test_the_exported_contracts_are_up_to_date():
    hint = "run: uv run python -m referrals_common.contracts export docs/contracts"
    expected = rendered_files()
    for relative, text in expected.items():
        path = DOCS_CONTRACTS / relative
        assert path.is_file(), f"{path} is missing; {hint}"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale; {hint}"
    exported = {
        str(path.relative_to(DOCS_CONTRACTS))
        for path in DOCS_CONTRACTS.rglob("*.json")
        if path.parent.name != SNAPSHOT_DIR  # the released schemas, kept apart on purpose
    }
    assert exported == set(expected), f"stale files in {DOCS_CONTRACTS}; {hint}"


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        ({"diagnosis": "changed", "stage": "confirmed", "treatment": "agreed"}, "new ICD-10"),
        (
            {
                "diagnosis": "confirmed",
                "icd10": "C50.4",
                "stage": "confirmed",
                "treatment": "agreed",
            },
            "takes no new ICD-10",
        ),
        ({"diagnosis": "confirmed", "stage": "changed", "treatment": "agreed"}, "new_stage"),
        (
            {
                "diagnosis": "confirmed",
                "stage": "confirmed",
                "new_stage": {"group": "IIB"},
                "treatment": "agreed",
            },
            "new_stage",
        ),
        (
            {
                "diagnosis": "confirmed",
                "stage": "confirmed",
                "treatment": "agreed",
                "clinical_trials_detail": "a trial",
            },
            "clinical_trials: true",
        ),
    ],
)
def test_an_opinion_outcome_that_contradicts_itself_is_refused(outcome, error):
    from referrals_common.contracts import OpinionOutcome

    with pytest.raises(ValidationError, match=error):
        OpinionOutcome.model_validate(outcome)


def test_an_opinion_outcome_says_whether_it_changed_the_diagnosis_or_the_plan():
    from referrals_common.contracts import OpinionOutcome

    changed = OpinionOutcome.model_validate(
        {
            "diagnosis": "changed",
            "icd10": "C34.1",
            "stage": "changed",
            "new_stage": {"group": "IIIA"},
            "treatment": "alternative_proposed",
        }
    )
    assert changed.changes_diagnosis and changed.changes_plan
    agreed = OpinionOutcome(diagnosis="refined", stage="not_assessed", treatment="agreed")
    assert not agreed.changes_diagnosis and not agreed.changes_plan
