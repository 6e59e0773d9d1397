"""The information loop on the real platform (every service role its own process, real Kafka,
MinIO, PostgreSQL, the mail sink), played through the public APIs only: the partner front end
with its key and the case token, a cancer center's staff with the center's key.

1. The longer journey (`make demo-information`): the center accepts, asks for a HER2 re-review,
   the slides and the family history; the patient uploads the report, records the courier
   shipment and sends the answer; the center reads it, confirms the slides, gives its opinion.
2. Nobody answers: the patient is reminded twice, the request expires, the case goes to the next
   center, and the patient is told.
3. The center asks twice before it gives its opinion.

The test platform runs partners with short request timings (`TEST_PLATFORM_ENV`: a due date may
be seconds away, reminders 12 and 6 seconds before it).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from devstack.demo import Journey, status_is
from devstack.information_demo import (
    REVIEWED_OUTCOME,
    SHIPMENT,
    InformationJourney,
    actors,
    collect_emails,
    open_and_submit,
    run_information_journey,
    send_answer,
    wait_case,
)
from referrals_common.i18n.case_texts import requested_item

pytestmark = pytest.mark.e2e
TIMEOUT = 180


def sent_triggers(journey: Journey) -> Counter[str]:
    return Counter(
        e.data["trigger"] for e in journey.events if e.type == "referrals.notification.sent.v1"
    )


def of_type(journey: Journey, suffix: str) -> list[Any]:
    return [e for e in journey.events if e.type == f"referrals.{suffix}.v1"]


async def wait_triggers(watcher: Any, journey: Journey, wanted: Counter[str]) -> None:
    """Until notifications recorded every wanted message (`notification.sent`)."""

    def done(_: Any) -> bool:
        got = Counter(
            e.data["trigger"] for e in watcher.seen if e.type == "referrals.notification.sent.v1"
        )
        return all(got[k] >= v for k, v in wanted.items())

    await watcher.wait_for(done, 60, f"notifications {dict(wanted)}")


# -------------------------------------------------------------------- 1. the longer journey


@pytest.fixture(scope="module")
async def longer(running_platform: tuple[Any, Any]) -> InformationJourney:
    stack, platform = running_platform
    result = await run_information_journey(stack, platform, timeout=TIMEOUT)
    await asyncio.sleep(2)
    return result


async def test_the_case_waits_for_the_answer_and_goes_back_to_the_same_center(
    longer: InformationJourney,
) -> None:
    assert longer.statuses() == [
        "submitted",
        "ready",
        "referred",
        "accepted",
        "information_requested",
        "accepted",  # the same center, as it was
        "opinion_delivered",
    ]
    (asked,) = of_type(longer, "referral.info_requested")
    assert asked.data["center_code"] == longer.center
    assert [i["kind"] for i in asked.data["items"]] == [
        "pathology_review",
        "pathology_report",
        "family_history",
    ]
    (resumed,) = of_type(longer, "referral.resumed")
    assert resumed.data["status"] == "accepted"
    assert resumed.data["referral_id"] == longer.referral_id
    assert len(of_type(longer, "referral.requested")) == 1  # never routed elsewhere
    (received,) = of_type(longer, "referral.shipment_received")
    assert received.data["center_code"] == longer.center


async def test_the_center_gets_the_material_but_its_inbox_carries_no_personal_words(
    longer: InformationJourney,
) -> None:
    (news,) = of_type(longer, "referral.information_received")
    assert news.topic.endswith(f"{longer.center}.v1")
    assert news.data["shipments"] == 1 and news.data["written_answer"] is True
    assert len(news.data["documents"]) == 1
    assert longer.extra_bytes > 1000  # the center read the HER2 re-review through records
    inbox = json.dumps([e.data for e in longer.events if "partner-inbox" in e.topic])
    for personal in (SHIPMENT["tracking_number"], "courier today", "Mother: breast cancer"):
        assert personal not in inbox
    # Through the API, the center that asked reads the answer and the checklist.
    assert longer.center_view["status"] == "completed"
    (request,) = longer.center_view["information_requests"]
    assert request["answer"] == "The slides and block A2 were sent today by courier."
    assert request["shipments"][0]["received_at"]
    assert longer.center_view["preparation"]["family_history"].startswith("Mother")


async def test_the_patient_is_told_each_step_in_order(longer: InformationJourney) -> None:
    assert sent_triggers(longer) == Counter(
        {
            "case_submitted": 1,
            "referral_requested": 1,
            "referral_accepted": 1,
            "info_requested": 1,
            "information_sent": 1,
            "shipment_received": 1,
            "opinion_delivered": 1,
        }
    )
    assert len(longer.emails) == 7
    ordered = [e.data["trigger"] for e in of_type(longer, "notification.sent")]
    assert ordered.index("info_requested") < ordered.index("information_sent")
    assert ordered.index("information_sent") < ordered.index("opinion_delivered")
    asked = next(e for e in longer.emails if "HER2" in e.body)
    assert "paraffin block" in asked.body  # what, in the center's words
    assert "2026" in asked.body or str(datetime.now(UTC).year) in asked.body  # by when
    for email in longer.emails:
        assert SHIPMENT["tracking_number"] not in email.body


async def test_the_fhir_export_shows_the_request_and_the_answer(
    longer: InformationJourney,
) -> None:
    bundle = Bundle.model_validate(longer.fhir)
    resources = [entry.resource for entry in bundle.entry]
    (request,) = [r for r in resources if r.get_resource_type() == "CommunicationRequest"]
    (answer,) = [r for r in resources if r.get_resource_type() == "Communication"]
    assert request.status == "completed"
    assert len(request.payload) == 3
    assert answer.basedOn[0].reference.endswith(str(request.id))
    texts = [p.contentString for p in answer.payload if p.contentString]
    assert any("DHL Express" in t and "received" in t for t in texts)
    task = next(r for r in resources if r.get_resource_type() == "Task")
    assert task.status == "completed"
    # The opinion's conclusion: coded on the Task, structured in the patient's case view.
    codes = {o.type.text: o for o in task.output}
    assert codes["treatment"].valueCodeableConcept.coding[0].code == (
        "treatment-alternative-proposed"
    )
    assert longer.case_view["opinion_outcome"] == {**REVIEWED_OUTCOME, "new_stage": None}
    (delivered,) = of_type(longer, "referral.opinion_delivered")
    assert delivered.data["outcome"]["diagnosis"] == "refined"


# ------------------------------------------------------------------- 2. nobody answers


async def test_an_unanswered_request_reminds_expires_and_goes_to_the_next_center(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    wall_start = datetime.now(UTC).timestamp()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await open_and_submit(front, TIMEOUT)
        watcher.follow(case_id)
        first, offer = await desk.offer(case_id, TIMEOUT)
        # Asked before accepting, due in 20 s: reminders 12 and 6 s before, then the expiry.
        request = await desk.ask(first, offer["id"], datetime.now(UTC) + timedelta(seconds=20))
        await wait_case(
            front, lambda v: v["status"] == "information_requested", TIMEOUT, "the wait"
        )
        await watcher.wait_for(status_is("referred"), 90, "the case to go on after the expiry")
        second, _ = await desk.offer(case_id, TIMEOUT, not_from=first)
        assert second != first
        late = await front.intake.post(
            f"/v1/cases/{case_id}/information-requests/{request['id']}/answer",
            json={"answer": "Sorry, I was in hospital."},
            headers=front.auth,
        )
        assert late.status_code == 409 and late.json()["request_status"] == "expired"
        await wait_triggers(
            watcher, journey, Counter({"info_requested": 1, "info_reminder": 2, "info_expired": 1})
        )
        view = await front.read_case()
    await collect_emails(journey, stack.mail_dir, wall_start, 6, timeout=30)
    reminders = of_type(journey, "referral.info_reminder")
    assert [r.data["reminder"] for r in reminders] == ["days_before", "due_soon"]
    (expired,) = of_type(journey, "referral.expired")
    assert expired.data["reason"] == "information_not_provided"
    assert expired.data["center_code"] == first
    requested = of_type(journey, "referral.requested")
    assert [r.data["center_code"] for r in requested][-1] == second
    assert journey.statuses() == [
        "submitted",
        "ready",
        "referred",
        "information_requested",
        "referred",
    ]
    assert view["information_requests"][0]["status"] == "expired"
    triggers = [e.data["trigger"] for e in of_type(journey, "notification.sent")]
    assert triggers.index("info_requested") < triggers.index("info_reminder")
    assert triggers.index("info_reminder") < triggers.index("info_expired")
    subjects = [e.subject for e in journey.emails]
    assert len(subjects) >= 6, subjects  # submitted, referred, asked, 2 reminders, expired, ...


# --------------------------------------------------------------------- 3. asked twice


async def test_a_center_that_asks_twice_gets_both_answers_then_gives_its_opinion(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await open_and_submit(front, TIMEOUT)
        watcher.follow(case_id)
        center, offer = await desk.offer(case_id, TIMEOUT)
        referral_id = str(offer["id"])
        await desk.accept(center, referral_id)
        asks = [
            {
                "reason": "We need the treatment history first.",
                "items": [{"kind": "question", "detail": "Was any chemotherapy given so far?"}],
            },
            {
                "reason": "The board also wants the proliferation index and current medicines.",
                "items": [
                    {"kind": "lab_test", "detail": "Ki-67 on the core biopsy"},
                    {"kind": "medications", "detail": "All current medicines with doses"},
                ],
            },
        ]
        for round_, body in enumerate(asks, start=1):
            request = await desk.ask(
                center, referral_id, datetime.now(UTC) + timedelta(days=7), body
            )
            view = await wait_case(
                front,
                lambda v, n=round_: (
                    v["status"] == "information_requested" and len(v["information_requests"]) == n
                ),
                TIMEOUT,
                f"request {round_}",
            )
            if round_ == 1:
                assert view["still_missing"] == []
                answer = {"answer": "No chemotherapy so far."}
            else:
                # In the case's language: the item in words, then the center's own detail.
                assert view["still_missing"] == [
                    requested_item(
                        "medications", "All current medicines with doses", view["locale"]
                    )
                ]
                await front.upload("upload the Ki-67 result", "lab_results", "her2_review_en.pdf")
                prepared = await front.intake.put(
                    f"/v1/cases/{case_id}/preparation",
                    json={"medications": [{"medicine": "Letrozole", "dose": "2.5 mg daily"}]},
                    headers=front.auth,
                )
                assert prepared.status_code == 200 and prepared.json()["still_missing"] == []
                answer = {"answer": "Ki-67 is in the uploaded report."}
            sent = await send_answer(front, str(request["id"]), answer, TIMEOUT)
            assert sent["status"] == "accepted"
            back = await desk.wait(
                center,
                referral_id,
                lambda v, n=round_: (
                    v["status"] == "accepted"
                    and len(v["information_requests"]) == n
                    and v["information_requests"][-1]["status"] == "answered"
                ),
                TIMEOUT,
                f"answer {round_} at the center",
            )
        assert [r["answer"] for r in back["information_requests"]] == [
            "No chemotherapy so far.",
            "Ki-67 is in the uploaded report.",
        ]
        assert len(back["information_requests"][1]["new_document_ids"]) == 1
        assert back["preparation"]["medications"][0]["medicine"] == "Letrozole"
        done = await desk.deliver_opinion(center, referral_id)
        assert done["status"] == "completed"
        await watcher.wait_for(status_is("opinion_delivered"), TIMEOUT, "the opinion")
        fhir = await front.fhir()
    assert journey.statuses() == [
        "submitted",
        "ready",
        "referred",
        "accepted",
        "information_requested",
        "accepted",
        "information_requested",
        "accepted",
        "opinion_delivered",
    ]
    assert len(of_type(journey, "referral.resumed")) == 2
    requests = [e["resource"] for e in fhir["entry"]]
    statuses = [r["status"] for r in requests if r["resourceType"] == "CommunicationRequest"]
    assert statuses == ["completed", "completed"]
