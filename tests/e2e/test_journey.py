"""The whole journey on the real platform: every service role a separate process, real Kafka,
MinIO, PostgreSQL, the mail sink and the Zipkin trace viewer, started by the harness.

The journey is the demo's (`devstack.demo.run_journey`, what `make demo` runs): a case for a
patient in Kyiv wanting an opinion in Germany, a Ukrainian discharge summary that must be
translated, an English pathology report, the German translation, the patient choosing among the
proposed centers, a sample center process that declines over its inbox topic, the next center
accepting and delivering an opinion, then offering times for the consultation meeting, one of
which the patient books. The test then checks every status change, every event, every e-mail
(the booking's with its calendar file), the traces in the viewer and the FHIR export.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from devstack import platform as platform_mod
from devstack.demo import PATIENT_EMAIL, Journey, run_journey
from devstack.mailsink import list_messages
from referrals_common.statement_digest import QUICK_STATEMENTS
from referrals_notifications.messages import case_reference

pytestmark = pytest.mark.e2e

STATUSES = [
    "submitted",
    "action_required",  # the Ukrainian discharge summary must be translated for Germany
    "submitted",  # the translation was uploaded
    "ready",
    "choosing_center",  # the patient asked to choose among the best centers
    "referred",
    "accepted",  # by the second center, after the first declined
    "opinion_delivered",
]
EVENTS = Counter(
    {
        "referrals.case.submitted.v1": 1,
        "referrals.case.contact_shared.v1": 1,
        "referrals.case.status_changed.v1": len(STATUSES),
        "referrals.document.stored.v1": 4,  # three from the patient, the center's opinion
        "referrals.document.translation_required.v1": 1,
        "referrals.document.language_accepted.v1": 2,  # English report, German translation
        "referrals.case.ready_for_referral.v1": 1,
        "referrals.referral.requested.v1": 2,
        "referrals.referral.offered.v1": 2,
        "referrals.referral.declined.v1": 1,
        "referrals.referral.accepted.v1": 1,
        "referrals.referral.opinion_delivered.v1": 1,
        "referrals.case.centers_proposed.v1": 1,
        "referrals.case.center_chosen.v1": 1,
        "referrals.referral.meeting_offered.v1": 1,
        "referrals.case.meeting_slot_chosen.v1": 1,
        "referrals.referral.meeting_booked.v1": 1,
        "referrals.referral.meeting_changed.v1": 1,  # the center's inbox: the booked time
        "referrals.notification.sent.v1": 10,
    }
)
PATIENT_TRIGGERS = Counter(
    {
        "case_submitted": 1,
        "translation_required": 1,
        "referral_requested": 2,
        "referral_declined": 1,
        "referral_accepted": 1,
        "opinion_delivered": 1,
        "centers_proposed": 1,
        "meeting_offered": 1,
        "meeting_booked": 1,
    }
)


@pytest.fixture(scope="module")
async def journey(running_platform: tuple[Any, Any]) -> Journey:
    stack, platform = running_platform
    result = await run_journey(stack, platform, timeout=240)
    # Anything late or doubled would arrive now: give the relays and the sender a moment more.
    await asyncio.sleep(3)
    return result


async def test_every_status_change_in_order(journey: Journey) -> None:
    assert journey.statuses() == STATUSES


async def test_every_event_exactly_once(journey: Journey, running_platform: Any) -> None:
    assert Counter(journey.types()) == EVENTS
    ids = [e.id for e in journey.events]
    assert len(ids) == len(set(ids)), "an event was published twice"


async def test_translation_requirement_names_the_languages(journey: Journey) -> None:
    (required,) = journey.translation_required
    assert required["detected_language"] == "uk"
    assert sorted(required["acceptable_languages"]) == ["de", "en"]
    assert journey.next_step  # the patient is told what to do


async def test_declined_then_rerouted_to_another_center(journey: Journey) -> None:
    offered = [e for e in journey.events if e.type == "referrals.referral.offered.v1"]
    first, second = (e.data["center_code"] for e in offered)
    assert first != second
    assert offered[0].topic.endswith(f"{first.lower()}.v1")
    assert offered[1].topic.endswith(f"{second.lower()}.v1")
    declined = next(e for e in journey.events if e.type == "referrals.referral.declined.v1")
    accepted = next(e for e in journey.events if e.type == "referrals.referral.accepted.v1")
    assert declined.data["center_code"] == first
    assert accepted.data["center_code"] == second
    requested = [e for e in journey.events if e.type == "referrals.referral.requested.v1"]
    assert [e.data["center_country"] for e in requested] == ["DE", "DE"]
    # A center may be asked to retry (the opinion not yet known to partners): not an action.
    not_actions = ("offer received", "retry")
    actions = [a["action"] for a in journey.center_actions if a["action"] not in not_actions]
    assert actions == ["declined", "accepted", "opinion delivered"]
    assert journey.opinion_bytes > 1000


async def test_every_notification_once_in_the_patients_language(
    journey: Journey, running_platform: Any
) -> None:
    sent = [e for e in journey.events if e.type == "referrals.notification.sent.v1"]
    assert Counter(e.data["trigger"] for e in sent) == PATIENT_TRIGGERS
    assert {e.data["channel"] for e in sent} == {"email"}
    assert len({e.data["trigger_event_id"] for e in sent}) == len(sent)
    # The mail sink holds exactly those messages, once each, in Ukrainian (the case's locale).
    stack, _ = running_platform
    reference = case_reference(UUID(journey.case_id))
    ours = [
        m
        for m in list_messages(Path(stack.mail_dir))
        if PATIENT_EMAIL in m.recipients and reference in m.subject
    ]
    assert len(ours) == len(sent) == len(journey.emails)
    message_ids = set()
    for stored in ours:
        message = BytesParser(policy=policy.default).parsebytes(stored.path.read_bytes())
        message_ids.add(message["Message-ID"])
        assert "Запит" in stored.subject or "запит" in stored.subject
        body = message.get_body(preferencelist=("plain",)).get_content()
        assert "C50" not in body and "карцином" not in body.lower()  # no diagnosis by e-mail
    assert len(message_ids) == len(ours)


async def test_each_step_is_one_trace_across_the_services(journey: Journey) -> None:
    """Every event carries the trace of the step that caused it, and the viewer holds each
    step's spans from the front end's HTTP call through consumers, relays, the database, MinIO
    and SMTP."""
    steps = {step.trace_id: step.name for step in journey.steps}
    assert len(steps) == len(journey.steps), "two steps share a trace"
    orphans = [(e.type, e.trace_id) for e in journey.events if e.trace_id not in steps]
    assert not orphans, f"events outside every step's trace: {orphans}"

    translation_step = next(s for s in journey.steps if s.name == "upload the German translation")
    spans = await _trace(journey.trace_viewer, translation_step.trace_id, must_have="smtp send")
    assert {span["traceId"] for span in spans} == {translation_step.trace_id}
    services = {span["localEndpoint"]["serviceName"] for span in spans}
    assert services >= {
        "partner-front-end",
        "records",
        "translation",
        "intake",
        "partners",
        "notifications",
    }
    names = [span["name"] for span in spans]
    kinds = Counter(span.get("kind") for span in spans)
    assert any(n.startswith("post /v1/cases/{case_id}/documents") for n in names)  # records API
    assert any(n.startswith("process ") for n in names)  # consumers
    assert any(n.startswith("send ") for n in names)  # outbox relays
    assert "smtp send" in names  # the patient's e-mail
    # The database's work shows: slow statements as spans, quick ones counted on the span that
    # made them (referrals_common.statement_digest).
    statements = sum(span.get("tags", {}).get("db.system") == "postgresql" for span in spans)
    quick = sum(int(span.get("tags", {}).get(QUICK_STATEMENTS, 0)) for span in spans)
    assert statements + quick >= 5, (statements, quick)
    assert any(_is_minio(span) for span in spans), "no MinIO call in the trace"
    assert kinds["CONSUMER"] >= 5 and kinds["PRODUCER"] >= 5

    # The patient's choice of center is the step whose trace carries the offer to that center.
    choice = next(s for s in journey.steps if s.name == "choose the center")
    spans = await _trace(journey.trace_viewer, choice.trace_id, must_have="smtp send")
    names = [span["name"] for span in spans]
    assert any(n.startswith("send referrals.partner-inbox.") for n in names)  # the center's offer

    # The center's steps are traces of their own that reach the services too.
    opinion = next(s for s in journey.steps if s.name.endswith("opinion delivered"))
    spans = await _trace(journey.trace_viewer, opinion.trace_id, must_have="smtp send")
    assert {"sample-center", "records", "partners", "intake", "notifications"} <= {
        span["localEndpoint"]["serviceName"] for span in spans
    }


async def test_fhir_export_of_the_finished_case_validates(journey: Journey) -> None:
    bundle = Bundle.model_validate(journey.fhir)
    types = Counter(entry.resource.get_resource_type() for entry in bundle.entry)
    assert types["Patient"] == 1 and types["Condition"] == 1 and types["ServiceRequest"] == 1
    assert types["Consent"] == 2
    assert types["DocumentReference"] == 4  # the three documents and the opinion
    task = next(e.resource for e in bundle.entry if e.resource.get_resource_type() == "Task")
    assert task.status == "completed"


def _is_minio(span: dict[str, Any]) -> bool:
    tags = span.get("tags", {})
    return (
        span.get("kind") == "CLIENT"
        and any(key in tags for key in ("http.url", "url.full", "server.address"))
        and span["localEndpoint"]["serviceName"] in {"records", "translation"}
    )


async def _trace(viewer: str, trace_id: str, *, must_have: str) -> list[dict[str, Any]]:
    """A trace from Zipkin's API, once it holds `must_have` (spans arrive in batches)."""
    deadline = time.monotonic() + 30
    spans: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=viewer, timeout=10) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"/api/v2/trace/{trace_id}")
            if response.status_code == 200:
                spans = response.json()
                if any(span["name"] == must_have for span in spans):
                    # the other processes' batches (each sent every TRACE_EXPORT_DELAY_MS)
                    await asyncio.sleep(platform_mod.TRACE_EXPORT_DELAY_MS / 1000 + 0.5)
                    return (await client.get(f"/api/v2/trace/{trace_id}")).json()
            await asyncio.sleep(0.5)
    raise AssertionError(f"trace {trace_id} has no {must_have!r} after 30 s: {len(spans)} spans")


async def test_the_patient_chose_the_center_and_booked_the_meeting_with_a_calendar_file(
    journey: Journey, running_platform: Any
) -> None:
    from icalendar import Calendar

    proposed = [c["center_code"] for c in journey.proposal["proposals"]]
    assert len(proposed) >= 2 and journey.proposal["chosen"] == proposed[0]
    offered = [e for e in journey.events if e.type == "referrals.referral.offered.v1"]
    assert offered[0].data["center_code"] == journey.proposal["chosen"]
    assert journey.meeting["status"] == "booked"
    assert journey.meeting["patient_time_zone"] == "Europe/Kyiv"
    booked = next(e for e in journey.events if e.type == "referrals.referral.meeting_booked.v1")
    calendars = [
        content
        for email in journey.emails
        for _name, media_type, content in email.attachments
        if media_type == "text/calendar"
    ]
    assert len(calendars) == 1, [e.subject for e in journey.emails]
    calendar = Calendar.from_ical(calendars[0])
    assert str(calendar["METHOD"]) == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]).startswith(booked.data["meeting_id"])
    assert int(event["SEQUENCE"]) == booked.data["sequence"] == 0
    starts = event.decoded("DTSTART")
    assert (
        starts.isoformat()[:16]
        == (datetime_utc(journey.meeting["booked_slot"]["starts_at"]).isoformat()[:16])
    )
    assert journey.case_id not in calendars[0].decode()  # no identifiers beyond the reference


def datetime_utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
