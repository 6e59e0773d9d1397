"""Notifications' SMS channel on the real stack: a case whose contact is a phone number (or who
prefers texts) hears of its events by SMS, through the shared Twilio-compatible provider and the
outbound guard, into the dev stack's SMS sink (started in-process on loopback)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.smssink import SmsSink, list_messages, start_smssink
from referrals_common.contracts import CaseContactShared, CaseSubmitted, new_event
from referrals_common.crypto import SealedBox
from referrals_common.sms import TwilioSettings
from referrals_notifications.messages import case_reference

from ..conftest import publish
from .test_notifications_over_kafka import (
    PUBLIC,
    Mailbox,
    deliveries,
    notifications_running,
    wait_until,
)

pytestmark = pytest.mark.integration

SID = "ACkafkatest"
TOKEN = "kafka-sink-token"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[SmsSink]:
    running = await start_smssink(
        "127.0.0.1", 0, tmp_path / "sms", account_sid=SID, auth_token=TOKEN
    )
    try:
        yield running
    finally:
        await running.close()


def case_with(contact: dict[str, object], locale: str) -> tuple[uuid.UUID, list[object]]:
    case_id = uuid.uuid4()
    sealed = SealedBox(public_key_b64=PUBLIC).seal_json(contact, bound_to=str(case_id))
    return case_id, [
        new_event(
            CaseContactShared(
                case_id=case_id, sealed_contact=sealed, locale=locale, front_end="kyiv-clinic"
            )
        ),
        new_event(
            CaseSubmitted(
                case_id=case_id,
                clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
                destination={"preference": "countries", "countries": ["DE"]},
                locale=locale,
                processing_consent_version="2026-01",
                cross_border_consent_version="2026-01",
                submitted_at=datetime.now(UTC),
            )
        ),
    ]


async def test_a_phone_only_case_and_one_that_prefers_texts_hear_by_sms(
    new_database, local_stack, sink: SmsSink
) -> None:
    mailbox = Mailbox()
    account = TwilioSettings(
        base_url=sink.url,
        account_sid=SID,
        auth_token=TOKEN,
        from_number="+15005550006",
        timeout=5,
    )
    phone_only, phone_only_events = case_with(
        {"email": None, "phone": "+380501112233", "preferred_channel": "sms"}, "uk"
    )
    prefers, prefers_events = case_with(
        {"email": "texts@example.org", "phone": "+380504445566", "preferred_channel": "sms"}, "en"
    )
    async with notifications_running(
        new_database,
        local_stack,
        mailbox,
        sms=account,
        outbound_allowed_targets=[f"127.0.0.1:{sink.port}"],
    ) as rt:
        await publish(local_stack.kafka_bootstrap, *phone_only_events, *prefers_events)
        await wait_until(lambda: len(list_messages(sink.directory)) >= 2)

        texts = {m.to: m for m in list_messages(sink.directory)}
        assert set(texts) == {"+380501112233", "+380504445566"}
        assert case_reference(phone_only) in texts["+380501112233"].body
        assert case_reference(prefers) in texts["+380504445566"].body
        assert texts["+380501112233"].body != texts["+380504445566"].body  # uk, en
        assert "C50" not in texts["+380501112233"].body  # no medical detail in a text
        assert mailbox.messages == []  # texts, not e-mails

        for case_id in (phone_only, prefers):  # recorded as sent, by SMS
            for _ in range(100):
                rows = await deliveries(rt, case_id)
                if any(d.status == "sent" for d in rows):
                    break
                await asyncio.sleep(0.1)
            assert [(d.status, d.channel) for d in rows if d.channel] == [("sent", "sms")]
