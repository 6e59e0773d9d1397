"""Which notification each event becomes, with which facts: the consumer's side, without a database.

`Notifications.on_event` only reads rows by key and writes delivery rows; a fake session serves
the reads and keeps the writes, so each test sees exactly the rows an event would add. The facts
then go the way the sender takes them (JSON, then the trigger's context model) and are rendered.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql

from referrals_common.contracts import (
    CaseInformationProvided,
    CentersProposed,
    ExpiryReason,
    OpinionOutcome,
    ProposedCenter,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralOpinionDelivered,
    ReferralShipmentReceived,
    RequestedItem,
    RequestedItemKind,
    Shipment,
    ShipmentMaterial,
    new_event,
)
from referrals_common.contracts.intake import Medication, Preparation
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.contracts.partners import Price
from referrals_notifications import consumers, repository
from referrals_notifications.messages import CONTEXT_MODELS, case_reference
from referrals_notifications.models import InformationRequestSeen, ReferralSeen
from referrals_notifications.rendering import Renderer, build_webhook_message
from referrals_notifications.service import FRONT_END, PATIENT, Notifications

pytestmark = pytest.mark.unit

CASE = uuid.UUID("3f0f6c7d-8f53-4c1e-9c1a-3f0f6c7d2e11")
REFERRAL = uuid.UUID("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
REQUEST = uuid.UUID("1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b")
CENTER_CODE = "charite-berlin"
CENTER_NAME = "Charité Comprehensive Cancer Center"
DUE = datetime(2026, 4, 29, 15, 0, tzinfo=UTC)
ANSWER = "The block is at the regional oncology centre; the slides went out today."
TRACKING = "JD014600006281234567"
CARRIER = "DHL Express"


class FakeSession:
    """Rows by key for `get`; the statements `execute` was given; the rows `add` was given."""

    def __init__(self, rows: dict[tuple[type, Any], Any]) -> None:
        self.rows = rows
        self.statements: list[Any] = []
        self.added: list[Any] = []

    async def get(self, model: type, key: Any) -> Any:
        return self.rows.get((model, key))

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        if statement is repository._ADD_DELIVERY_AND_AUDIENCE:
            # The patient's delivery, inserted by the audience's query.
            self.statements.append(repository._ADD_DELIVERY.values(**(params or {})))
        elif not getattr(statement, "is_select", False):
            # A write built once is given its row's values when run: bound here, as they go.
            self.statements.append(statement if params is None else statement.values(**params))
        # A query finds nothing: no contact, no subscription.
        return SimpleNamespace(first=lambda: None, one=lambda: (None, False))

    def add(self, row: Any) -> None:
        self.added.append(row)


def seen_referral() -> dict[tuple[type, Any], Any]:
    """Notifications saw the referral requested (the center's display name comes from it)."""
    row = ReferralSeen(
        referral_id=REFERRAL,
        case_id=CASE,
        center_code=CENTER_CODE,
        center_name=CENTER_NAME,
        center_country="DE",
    )
    return {(ReferralSeen, REFERRAL): row}


async def deliveries(
    data: Any,
    rows: dict[tuple[type, Any], Any] | None = None,
    front_ends: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The delivery rows `data`'s event writes: {trigger, audience, facts, ...}."""
    session = FakeSession(seen_referral() if rows is None else rows)
    uow = SimpleNamespace(session=session, native=None)
    await Notifications(front_ends).on_event(uow, new_event(data))  # type: ignore[arg-type]
    written = []
    for statement in session.statements:
        params = statement.compile(dialect=postgresql.dialect()).params
        if "trigger" in params:
            written.append(params)
    return written


async def patient_delivery(data: Any, **options: Any) -> dict[str, Any]:
    [row] = [d for d in await deliveries(data, **options) if d["audience"] == PATIENT]
    return row


def info_requested(**overrides: Any) -> ReferralInfoRequested:
    fields: dict[str, Any] = {
        "case_id": CASE,
        "referral_id": REFERRAL,
        "center_code": CENTER_CODE,
        "message": "The tumour board wants to re-review the biopsy before it gives its opinion.",
        "request_id": REQUEST,
        "items": [
            RequestedItem(
                kind=RequestedItemKind.PATHOLOGY_REVIEW,
                detail="The stained slides and\none paraffin block of the core biopsy",
            ),
            RequestedItem(kind=RequestedItemKind.LAB_TEST, detail="Ki-67 index"),
        ],
        "due_at": DUE,
        "resumes_as": "accepted",
        **overrides,
    }
    return ReferralInfoRequested(**fields)


def information_provided(**overrides: Any) -> CaseInformationProvided:
    doc_a, doc_b, doc_c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    fields: dict[str, Any] = {
        "case_id": CASE,
        "request_id": REQUEST,
        "referral_id": REFERRAL,
        "answer": ANSWER,
        "new_document_ids": [doc_b, doc_c],
        "document_ids": [doc_a, doc_b, doc_c],
        "shipments": [
            Shipment(
                shipment_id=uuid.uuid4(),
                material=ShipmentMaterial.SLIDES_AND_BLOCKS,
                carrier=CARRIER,
                tracking_number=TRACKING,
                sent_on=date(2026, 4, 20),
            )
        ],
        **overrides,
    }
    return CaseInformationProvided(**fields)


def as_the_sender_reads_it(row: dict[str, Any], locale: str = "en") -> Any:
    """The row's facts through JSON (the column) into the trigger's context model, as the
    sender builds it (`Sender._context`)."""
    facts = json.loads(json.dumps(row["facts"]))
    model = CONTEXT_MODELS[T(row["trigger"])]
    return model.model_validate(
        {
            **{k: v for k, v in facts.items() if v is not None},
            "case_ref": case_reference(CASE),
            "locale": locale,
        }
    )


def test_the_consumer_handles_the_information_loop_events() -> None:
    for event_type in (
        ReferralInfoRequested,
        ReferralInfoReminder,
        ReferralExpired,
        CaseInformationProvided,
        ReferralShipmentReceived,
    ):
        assert event_type in consumers.HANDLED
        assert event_type.topic in consumers.SUBSCRIBED_TOPICS


async def test_an_information_request_carries_what_why_and_by_when() -> None:
    row = await patient_delivery(info_requested())
    assert row["trigger"] == T.INFO_REQUESTED
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "message": "The tumour board wants to re-review the biopsy before it gives its opinion.",
        "items": [
            {
                "kind": "pathology_review",
                "detail": "The stained slides and one paraffin block of the core biopsy",
            },
            {"kind": "lab_test", "detail": "Ki-67 index"},
        ],
        "due_at": "2026-04-29T15:00:00+00:00",
    }
    context = as_the_sender_reads_it(row)
    assert context.due_at == DUE
    text = Renderer().render(T.INFO_REQUESTED, context, C.EMAIL).text
    assert "one paraffin block of the core biopsy" in text
    assert "April 29, 2026, 6:00" in text


async def test_an_information_request_from_before_the_loop_still_reads() -> None:
    old = ReferralInfoRequested(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        message="Please send the HER2 report.",
    )
    row = await patient_delivery(old, rows={})
    assert row["trigger"] == T.INFO_REQUESTED
    assert row["facts"]["center_name"] == CENTER_CODE  # the referral was not seen: its code
    assert row["facts"]["items"] == [] and row["facts"]["due_at"] is None
    context = as_the_sender_reads_it(row, "uk")
    assert context.items == [] and context.due_at is None
    Renderer().render(T.INFO_REQUESTED, context, C.EMAIL)


@pytest.mark.parametrize("reminder", ["days_before", "due_soon"])
async def test_a_reminder_is_info_reminder(reminder: str) -> None:
    event = ReferralInfoReminder(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        request_id=REQUEST,
        reminder=reminder,
        due_at=DUE,
    )
    row = await patient_delivery(event)
    assert row["trigger"] == T.INFO_REMINDER
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "reminder": reminder,
        "due_at": "2026-04-29T15:00:00+00:00",
    }
    as_the_sender_reads_it(row)


async def test_an_unanswered_request_that_expired_is_info_expired() -> None:
    event = ReferralExpired(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        reason=ExpiryReason.INFORMATION_NOT_PROVIDED,
        request_id=REQUEST,
    )
    row = await patient_delivery(event)
    assert row["trigger"] == T.INFO_EXPIRED
    assert row["facts"] == {"center_name": CENTER_NAME}
    as_the_sender_reads_it(row)


@pytest.mark.parametrize(
    "event",
    [
        ReferralExpired(case_id=CASE, referral_id=REFERRAL, center_code=CENTER_CODE),
        ReferralExpired(
            case_id=CASE,
            referral_id=REFERRAL,
            center_code=CENTER_CODE,
            reason=ExpiryReason.NO_ANSWER,
        ),
    ],
    ids=["older-event", "no_answer"],
)
async def test_a_center_that_did_not_answer_is_still_referral_declined(event: Any) -> None:
    row = await patient_delivery(event)
    assert row["trigger"] == T.REFERRAL_DECLINED != T.INFO_EXPIRED
    assert row["facts"] == {"center_name": CENTER_NAME, "outcome": "expired"}


async def test_a_decline_is_unchanged() -> None:
    event = ReferralDeclined(
        case_id=CASE, referral_id=REFERRAL, center_code=CENTER_CODE, reason="no_capacity"
    )
    row = await patient_delivery(event)
    assert row["trigger"] == T.REFERRAL_DECLINED
    assert row["facts"]["outcome"] == "declined"


async def test_an_answer_sent_is_information_sent_told_by_counts_only() -> None:
    row = await patient_delivery(information_provided())
    assert row["trigger"] == T.INFORMATION_SENT
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "new_documents": 2,
        "shipments": 1,
        "written_answer": True,
        "preparation": False,
    }
    dumped = json.dumps(row["facts"])
    for secret in (ANSWER, "regional oncology", TRACKING, CARRIER):
        assert secret not in dumped
    context = as_the_sender_reads_it(row, "uk")
    message = Renderer().render(T.INFORMATION_SENT, context, C.EMAIL)
    for part in (message.subject, message.text, message.html or ""):
        for secret in (ANSWER, TRACKING, CARRIER):
            assert secret not in part


# The preparation checklist: the answer carries it as it is now whatever the request asked, so
# the message says it went only when the request asked for parts of it and the answer completes
# them.

CHECKLIST = Preparation(
    family_history="mother: breast cancer at 52",
    medications=[Medication(medicine="Letrozole", dose="2.5 mg once a day")],
    allergies=["penicillin"],
)


def asked_checklist(*parts: str) -> dict[tuple[type, Any], Any]:
    """Notifications saw the referral and a request that asked for `parts` of the checklist."""
    row = InformationRequestSeen(request_id=REQUEST, case_id=CASE, checklist_items=list(parts))
    return {**seen_referral(), (InformationRequestSeen, REQUEST): row}


async def test_a_request_for_parts_of_the_checklist_is_kept() -> None:
    items = [
        RequestedItem(kind=RequestedItemKind.ALLERGIES, detail="Any allergy to contrast agents"),
        RequestedItem(kind=RequestedItemKind.LAB_TEST, detail="Ki-67 index"),
        RequestedItem(kind=RequestedItemKind.MEDICATIONS, detail="Every medicine you take"),
    ]
    session = FakeSession(seen_referral())
    await Notifications().on_event(
        SimpleNamespace(session=session, native=None),  # type: ignore[arg-type]
        new_event(info_requested(items=items)),
    )
    [kept] = [
        statement.compile(dialect=postgresql.dialect()).params
        for statement in session.statements
        if statement.table.name == "information_requests_seen"
    ]
    assert kept["request_id"] == REQUEST and kept["case_id"] == CASE
    assert kept["checklist_items"] == ["allergies", "medications"]


async def test_a_request_for_no_part_of_the_checklist_is_not_kept() -> None:
    session = FakeSession(seen_referral())
    await Notifications().on_event(
        SimpleNamespace(session=session, native=None),  # type: ignore[arg-type]
        new_event(info_requested()),
    )
    assert {statement.table.name for statement in session.statements} == {"deliveries"}


@pytest.mark.parametrize(
    ("asked", "preparation"),
    [
        ((), CHECKLIST),
        (("family_history", "medications"), None),
        (("family_history", "allergies"), Preparation(family_history=CHECKLIST.family_history)),
    ],
    ids=["request-asked-for-none-of-it", "no-checklist", "checklist-incomplete"],
)
async def test_a_checklist_the_case_merely_has_is_not_said_to_be_sent(
    asked: tuple[str, ...], preparation: Preparation | None
) -> None:
    # a request that asks for no part of the checklist is not kept: notifications has no row
    rows = asked_checklist(*asked) if asked else seen_referral()
    row = await patient_delivery(information_provided(preparation=preparation), rows=rows)
    assert row["facts"]["preparation"] is False
    for locale, checklist in (("uk", "Анкета для підготовки"), ("en", "preparation checklist")):
        message = Renderer().render(
            T.INFORMATION_SENT, as_the_sender_reads_it(row, locale), C.EMAIL
        )
        assert checklist not in message.text and checklist not in (message.html or "")


@pytest.mark.parametrize("locale", ["uk", "en"])
async def test_a_checklist_the_request_asked_for_is_said_to_be_sent(locale: str) -> None:
    row = await patient_delivery(
        information_provided(answer=None, shipments=[], preparation=CHECKLIST),
        rows=asked_checklist("family_history", "medications", "allergies"),
    )
    assert row["facts"]["preparation"] is True
    message = Renderer().render(T.INFORMATION_SENT, as_the_sender_reads_it(row, locale), C.EMAIL)
    checklist = "Анкета для підготовки" if locale == "uk" else "The preparation checklist"
    assert checklist in message.text and checklist in (message.html or "")
    for part in (message.subject, message.text, message.html or ""):
        for secret in ("breast", "Letrozole", "penicillin"):
            assert secret not in part


async def test_an_answer_for_a_referral_not_seen_has_no_center_name() -> None:
    row = await patient_delivery(
        information_provided(answer=None, shipments=[]),
        rows={},
    )
    assert row["facts"]["center_name"] is None
    assert row["facts"]["written_answer"] is False and row["facts"]["shipments"] == 0
    Renderer().render(T.INFORMATION_SENT, as_the_sender_reads_it(row), C.EMAIL)


async def test_material_received_is_shipment_received() -> None:
    event = ReferralShipmentReceived(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        request_id=REQUEST,
        shipment_id=uuid.uuid4(),
        received_at=DUE - timedelta(days=3),
    )
    row = await patient_delivery(event)
    assert row["trigger"] == T.SHIPMENT_RECEIVED
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "received_at": "2026-04-26T15:00:00+00:00",
    }
    as_the_sender_reads_it(row)


async def test_the_front_end_gets_the_information_loop_too() -> None:
    rows = await deliveries(info_requested(), front_ends=frozenset({"kyiv-clinic"}))
    assert {(r["trigger"], r["audience"]) for r in rows} == {
        (T.INFO_REQUESTED, PATIENT),
        (T.INFO_REQUESTED, FRONT_END),
    }


# The opinion: its outcome becomes verdicts and counts; codes, names and details stay behind.

NEW_ICD10 = "C50.4"
NEW_STAGE = {"tnm": "cT2N1M0", "group": "IIB"}
TESTS = ("PET-CT of the chest and abdomen", "BRCA1/2 germline testing")
TRIALS = "NCT01234567 (neoadjuvant immunotherapy), recruiting in Berlin"


def opinion_delivered(outcome: OpinionOutcome | None = None) -> ReferralOpinionDelivered:
    return ReferralOpinionDelivered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        opinion_document_id=uuid.uuid4(),
        outcome=outcome,
    )


FULL_OUTCOME = OpinionOutcome(
    diagnosis="changed",
    icd10=NEW_ICD10,
    stage="changed",
    new_stage=NEW_STAGE,
    treatment="alternative_proposed",
    additional_tests=list(TESTS),
    clinical_trials=True,
    clinical_trials_detail=TRIALS,
)


async def test_an_opinion_without_an_outcome_has_its_facts_of_before() -> None:
    [patient, front_end] = await deliveries(
        opinion_delivered(), front_ends=frozenset({"kyiv-clinic"})
    )
    assert {patient["audience"], front_end["audience"]} == {PATIENT, FRONT_END}
    for row in (patient, front_end):
        assert row["trigger"] == T.OPINION_DELIVERED
        assert row["facts"] == {"center_name": CENTER_NAME}
        context = as_the_sender_reads_it(row, "uk")
        assert context.diagnosis is None
        message = Renderer().render(T.OPINION_DELIVERED, context, C.EMAIL)
        assert "Коротко про висновок" not in message.text


async def test_an_opinions_outcome_is_told_by_verdicts_and_counts() -> None:
    outcome = OpinionOutcome(
        diagnosis="refined", icd10="C50.9", stage="not_assessed", treatment="agreed"
    )
    row = await patient_delivery(opinion_delivered(outcome))
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "diagnosis": "refined",
        "treatment": "agreed",
        "further_tests": 0,
        "clinical_trials": False,
    }
    text = Renderer().render(T.OPINION_DELIVERED, as_the_sender_reads_it(row), C.EMAIL).text
    assert "The center describes the diagnosis more precisely." in text
    assert "It agrees with the treatment plan you were given." in text
    assert "further test" not in text and "clinical trials" not in text


@pytest.mark.parametrize("locale", ["uk", "en"])
async def test_an_opinions_codes_names_and_details_reach_no_message(locale: str) -> None:
    rows = await deliveries(opinion_delivered(FULL_OUTCOME), front_ends=frozenset({"kyiv-clinic"}))
    assert {row["audience"] for row in rows} == {PATIENT, FRONT_END}
    secrets = [NEW_ICD10, "C50", *NEW_STAGE.values(), *TESTS, TRIALS, "PET", "BRCA", "NCT0"]
    renderer = Renderer()
    for row in rows:
        assert row["facts"] == {
            "center_name": CENTER_NAME,
            "diagnosis": "changed",
            "treatment": "alternative_proposed",
            "further_tests": 2,
            "clinical_trials": True,
        }
        context = as_the_sender_reads_it(row, locale)
        email = renderer.render(T.OPINION_DELIVERED, context, C.EMAIL)
        sms = renderer.render(T.OPINION_DELIVERED, context, C.SMS)
        webhook = build_webhook_message(
            T.OPINION_DELIVERED,
            context,
            case_id=CASE,
            notification_id=uuid.uuid4(),
            occurred_at=DUE,
        )
        parts = [email.subject, email.text, email.html or "", sms.subject, sms.text]
        parts += [webhook.subject, webhook.text, json.dumps(row["facts"])]
        for part in parts:
            for secret in secrets:
                assert secret not in part, (secret, part)
        assert ("інший діагноз" if locale == "uk" else "a different diagnosis") in email.text
        assert json.loads(webhook.text)["facts"]["further_tests"] == 2


# A follow-up question answered: the patient hears that it was, never what (the center's words
# are read with the case).

QUESTION = uuid.UUID("5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f")
FOLLOW_UP_ANSWER = (
    "Given the HER2-low result, we would still favour neoadjuvant chemotherapy before surgery; "
    "ask your oncologist about the Ki-67 index."
)
ANSWERED_AT = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)


def follow_up_answered() -> ReferralFollowUpAnswered:
    return ReferralFollowUpAnswered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code=CENTER_CODE,
        question_id=QUESTION,
        answer=FOLLOW_UP_ANSWER,
        answered_at=ANSWERED_AT,
    )


def test_the_consumer_handles_a_follow_up_answer() -> None:
    assert ReferralFollowUpAnswered in consumers.HANDLED
    assert ReferralFollowUpAnswered.topic in consumers.SUBSCRIBED_TOPICS


async def test_a_follow_up_answer_is_follow_up_answered() -> None:
    row = await patient_delivery(follow_up_answered())
    assert row["trigger"] == T.FOLLOW_UP_ANSWERED == "follow_up_answered"
    assert row["facts"] == {
        "center_name": CENTER_NAME,
        "answered_at": "2026-05-12T09:30:00+00:00",
        "documents": 0,
    }
    attached = follow_up_answered().model_copy(update={"document_ids": [uuid.uuid4()] * 1})
    with_documents = await patient_delivery(attached)
    assert with_documents["facts"]["documents"] == 1  # how many, never which
    unseen = await patient_delivery(follow_up_answered(), rows={})
    assert unseen["facts"]["center_name"] == CENTER_CODE  # the referral was not seen: its code


@pytest.mark.parametrize("locale", ["uk", "en"])
async def test_a_follow_up_answers_words_reach_no_message(locale: str) -> None:
    rows = await deliveries(follow_up_answered(), front_ends=frozenset({"kyiv-clinic"}))
    assert {row["audience"] for row in rows} == {PATIENT, FRONT_END}
    secrets = [FOLLOW_UP_ANSWER, "HER2", "neoadjuvant", "chemotherapy", "Ki-67", str(QUESTION)]
    renderer = Renderer()
    for row in rows:
        assert row["trigger"] == T.FOLLOW_UP_ANSWERED
        context = as_the_sender_reads_it(row, locale)
        email = renderer.render(T.FOLLOW_UP_ANSWERED, context, C.EMAIL)
        sms = renderer.render(T.FOLLOW_UP_ANSWERED, context, C.SMS)
        webhook = build_webhook_message(
            T.FOLLOW_UP_ANSWERED,
            context,
            case_id=CASE,
            notification_id=uuid.uuid4(),
            occurred_at=ANSWERED_AT,
        )
        assert json.loads(webhook.text)["facts"]["center_name"] == CENTER_NAME
        parts = [email.subject, email.text, email.html or "", sms.subject, sms.text]
        parts += [webhook.subject, webhook.text, json.dumps(row["facts"])]
        for part in parts:
            for secret in secrets:
                assert secret not in part, (secret, part)
        assert CENTER_NAME in email.text
        assert ("відповів на додаткове запитання" if locale == "uk" else "has answered") in (
            email.text
        )


# Centers proposed for the patient's choice: names, countries, usual times and prices, by when;
# never the centers' codes or routing's reasons (those may name the disease).

CHOOSE_BY = datetime(2026, 4, 17, 21, 30, tzinfo=UTC)
WHY_FIRST = "HER2-positive breast cancer board (C50.4); reads English and German; 7 days."
WHY_SECOND = "Ranked 2 of 2: sarcoma and breast tumour board, opinion in 10 days."


def centers_proposed() -> CentersProposed:
    """Two centers, the second-ranked listed first: the message lists them best first."""
    return CentersProposed(
        case_id=CASE,
        proposals=[
            ProposedCenter(
                rank=2,
                center_code="nio-warszawa",
                center_name="National Institute of Oncology, Warsaw",
                center_country="PL",
                turnaround_days=10,
                why=WHY_SECOND,
            ),
            ProposedCenter(
                rank=1,
                center_code=CENTER_CODE,
                center_name=CENTER_NAME,
                center_country="DE",
                turnaround_days=7,
                price=Price(amount=900, currency="EUR"),
                why=WHY_FIRST,
            ),
        ],
        choose_by=CHOOSE_BY,
    )


def test_the_consumer_handles_centers_proposed() -> None:
    assert CentersProposed in consumers.HANDLED
    assert CentersProposed.topic in consumers.SUBSCRIBED_TOPICS


async def test_centers_proposed_is_the_choice_with_names_countries_times_and_prices() -> None:
    row = await patient_delivery(centers_proposed(), rows={})
    assert row["trigger"] == T.CENTERS_PROPOSED == "centers_proposed"
    assert row["facts"] == {
        "proposals": [
            {
                "center_name": CENTER_NAME,
                "center_country": "DE",
                "turnaround_days": 7,
                "price": {"amount": 900.0, "currency": "EUR"},
            },
            {
                "center_name": "National Institute of Oncology, Warsaw",
                "center_country": "PL",
                "turnaround_days": 10,
                "price": None,
            },
        ],
        "choose_by": "2026-04-17T21:30:00+00:00",
    }
    context = as_the_sender_reads_it(row, "uk")
    assert context.choose_by == CHOOSE_BY
    text = Renderer().render(T.CENTERS_PROPOSED, context, C.EMAIL).text
    text = text.replace("\u202f", " ").replace("\xa0", " ")  # CLDR's no-break spaces
    assert f"1. {CENTER_NAME}\n" in text
    assert "2. National Institute of Oncology, Warsaw\n" in text
    assert "Країна: Німеччина" in text and "Країна: Польща" in text
    assert "Звичайний строк підготовки висновку: 10 днів" in text
    assert "Вартість: 900,00 EUR" in text
    assert "до 18 квітня 2026 р., 00:30 за київським часом" in text


@pytest.mark.parametrize("locale", ["uk", "en"])
async def test_the_centers_codes_and_routings_reasons_reach_no_message(locale: str) -> None:
    rows = await deliveries(centers_proposed(), rows={}, front_ends=frozenset({"kyiv-clinic"}))
    assert {(row["trigger"], row["audience"]) for row in rows} == {
        (T.CENTERS_PROPOSED, PATIENT),
        (T.CENTERS_PROPOSED, FRONT_END),
    }
    secrets = [WHY_FIRST, WHY_SECOND, "HER2", "C50", "breast", "sarcoma", "tumour", "Ranked"]
    secrets += [CENTER_CODE, "nio-warszawa"]
    renderer = Renderer()
    for row in rows:
        context = as_the_sender_reads_it(row, locale)
        email = renderer.render(T.CENTERS_PROPOSED, context, C.EMAIL)
        sms = renderer.render(T.CENTERS_PROPOSED, context, C.SMS)
        webhook = build_webhook_message(
            T.CENTERS_PROPOSED,
            context,
            case_id=CASE,
            notification_id=uuid.uuid4(),
            occurred_at=CHOOSE_BY - timedelta(days=3),
        )
        body = json.loads(webhook.text)
        assert (body["case_status"], body["action_required"]) == ("choosing_center", True)
        assert [p["center_name"] for p in body["facts"]["proposals"]] == [
            CENTER_NAME,
            "National Institute of Oncology, Warsaw",
        ]
        parts = [email.subject, email.text, email.html or "", sms.subject, sms.text]
        parts += [webhook.subject, webhook.text, json.dumps(row["facts"])]
        for part in parts:
            for secret in secrets:
                assert secret.lower() not in part.lower(), (secret, part)
        assert CENTER_NAME in email.text
        assert ("Німеччина" if locale == "uk" else "Germany") in email.text
