"""The partners scheduler's polls are steps of the case's journey (issue 24): a reminder of an
unanswered information request, the first-ranked center offered when the patient did not choose
by the deadline, and a reminder of a booked meeting each start a span of their own that carries
the case id and links to the case's root trace (found by one query by case id in the viewer).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from referrals_common.contracts import ReferralOffered, topics
from referrals_common.telemetry import CASE_ID, case_root

from .conftest import Inbox, Topic, api_client, key_for, partners_running
from .test_meetings import MEETINGS, VIDEO, accepted_referral, at, choose
from .test_routing_over_kafka import ASK, BERLIN, open_case, soon

pytestmark = pytest.mark.integration


def steps(spans: InMemorySpanExporter, name: str, case_id: uuid.UUID) -> list[Any]:
    return [
        s
        for s in spans.get_finished_spans()
        if s.name == name and s.attributes.get(CASE_ID) == str(case_id)
    ]


def assert_a_step_of_the_case(span: Any, case_id: uuid.UUID) -> None:
    assert span.parent is None, "a scheduled step starts a trace of its own"
    assert [link.context.trace_id for link in span.links] == [case_root(case_id).trace_id]
    assert span.attributes["referrals.center_code"] == BERLIN


async def test_reminders_and_the_choice_deadline_are_traced_steps_of_the_case(
    make_runtime, spans: InMemorySpanExporter
):
    rt = await make_runtime(
        info_min_due_seconds=1,
        info_reminders_before_seconds=[4],
        choice_window_seconds=1.5,
        meeting_min_notice_seconds=1,
        meeting_reminders_before_seconds=[5],
    )
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        # An information request due in 6 s: reminded 4 s before.
        asking, _ = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(asking))["data"])
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        asked = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/information-requests",
            json={**ASK, "due_at": soon(seconds=6)},
            headers=key,
        )
        assert asked.status_code == 200, asked.text
        (reminder,) = await routing.wait_for(
            asking, "referrals.referral.info_reminder.v1", timeout=15
        )
        (remind,) = steps(spans, "information request remind", asking)
        assert reminder["data"]["referral_id"] == str(offer.referral_id)
        assert_a_step_of_the_case(remind, asking)

        # A patient who asked to choose and did not: the first-ranked is offered at the deadline.
        silent, _ = await open_case(rt, patient_chooses=True)
        (requested,) = await routing.wait_for(silent, "referrals.referral.requested.v1")
        (offered,) = steps(spans, "choice deadline offer", silent)
        assert "did not choose" in requested["data"]["rationale"]
        assert_a_step_of_the_case(offered, silent)

        # A booked meeting starting in 12 s: reminded 5 s before.
        meeting_case, referral_id, key = await accepted_referral(rt, api, berlin)
        made = await api.post(
            MEETINGS.format(referral_id), json={"place": VIDEO, "slots": [at(12)]}, headers=key
        )
        assert made.status_code == 200, made.text
        (meeting,) = made.json()["meetings"]
        slot = meeting["slots"][0]
        await choose(
            rt, meeting_case, referral_id, uuid.UUID(meeting["id"]), uuid.UUID(slot["slot_id"])
        )
        (told,) = await routing.wait_for(
            meeting_case, "referrals.referral.meeting_reminder.v1", timeout=20
        )
        (reminded,) = steps(spans, "meeting remind", meeting_case)
        assert told["data"]["meeting_id"] == meeting["id"]
        assert_a_step_of_the_case(reminded, meeting_case)
