"""The consultation meeting on the real platform through the public APIs only (issue 21 §2):
the center offers times after accepting, the patient books one (the time as their clock shows
it), moves it, gets the confirmation with a calendar file and reminders a day and an hour before
(seconds on the test platform), the center records the meeting held; a second meeting the
patient cancels, and the center's inbox hears of each choice with times and no words. Every
refusal (a time not offered, a closed meeting, another case's meeting) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.demo import Journey
from devstack.information_demo import actors, collect_emails, open_and_submit

from .test_information_loop import TIMEOUT, of_type, wait_triggers

pytestmark = pytest.mark.e2e

VIDEO = {
    "mode": "video",
    "join_url": "https://video.example.org/room/tumour-board-7",
    "time_zone": "Europe/Berlin",
    "language": "en",
}


def slot_at(seconds: float, minutes: int = 45) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(seconds=seconds)
    return {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
    }


async def meeting_in(front: Any, predicate: Any, what: str, index: int = 0) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        meetings = (await front.read_case())["meetings"]
        if len(meetings) > index and predicate(meetings[index]):
            return meetings[index]
        assert time.monotonic() < deadline, f"the case never showed {what}: {meetings}"
        await asyncio.sleep(0.3)


async def test_the_patient_books_moves_and_attends_the_meeting_and_cancels_another(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    began = time.time()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await open_and_submit(front, TIMEOUT)
        watcher.follow(case_id)
        center, offer = await desk.offer(case_id, TIMEOUT)
        referral_id = str(offer["id"])
        meetings_path = f"/v1/partner/referrals/{referral_id}/meetings"
        refused = await desk.partners.post(
            meetings_path,
            json={"place": VIDEO, "slots": [slot_at(3600)]},
            headers={"X-Api-Key": desk.keys[center]},
        )
        assert refused.status_code == 409  # only once the center accepted
        await desk.accept(center, referral_id)

        near, far = slot_at(45), slot_at(2 * 86400)
        offered = await desk.call(
            center,
            desk.partners,
            "POST",
            meetings_path,
            json={"place": VIDEO, "slots": [far, near], "note": "Bring your questions."},
        )
        meeting_id = offered["meetings"][0]["id"]
        seen = await meeting_in(front, lambda m: m["status"] == "offered", "the offer")
        assert seen["place"]["join_url"] == VIDEO["join_url"]
        assert seen["note"] == "Bring your questions."
        near_id, far_id = (s["slot_id"] for s in seen["slots"])  # in time order
        booking = f"/v1/cases/{case_id}/meetings/{meeting_id}/booking"

        # Refusals change nothing.
        wrong = await front.intake.post(
            booking, json={"slot_id": str(uuid.uuid4())}, headers=front.auth
        )
        assert wrong.status_code == 422 and wrong.json()["type"].endswith("slot-not-offered")
        zone = await front.intake.post(
            booking, json={"slot_id": far_id, "time_zone": "Kyiv"}, headers=front.auth
        )
        assert zone.status_code == 422
        elsewhere = await front.intake.post(
            f"/v1/cases/{case_id}/meetings/{uuid.uuid4()}/booking",
            json={"slot_id": far_id},
            headers=front.auth,
        )
        assert elsewhere.status_code == 404
        assert (await front.read_case())["meetings"][0]["status"] == "offered"

        # The patient books the far time, then moves to the near one.
        key = {**front.auth, "Idempotency-Key": f"book-{case_id}"}
        first = await front.intake.post(
            booking, json={"slot_id": far_id, "time_zone": "Europe/Kyiv"}, headers=key
        )
        assert first.status_code == 200, first.text
        assert first.json()["meetings"][0]["status"] in ("booking", "booked")
        replay = await front.intake.post(
            booking, json={"slot_id": far_id, "time_zone": "Europe/Kyiv"}, headers=key
        )
        assert replay.headers.get("Idempotent-Replayed") == "true"
        await meeting_in(
            front,
            lambda m: m["status"] == "booked" and m["booked_slot"]["slot_id"] == far_id,
            "the far time booked",
        )
        moved = await front.intake.post(
            booking, json={"slot_id": near_id, "time_zone": "Europe/Kyiv"}, headers=front.auth
        )
        assert moved.status_code == 200, moved.text
        await meeting_in(
            front,
            lambda m: m["status"] == "booked" and m["booked_slot"]["slot_id"] == near_id,
            "the near time booked",
        )
        # The center sees the booked time.
        at_center = await desk.wait(
            center,
            referral_id,
            lambda v: (v["meetings"][0]["booked_slot"] or {}).get("slot_id") == near_id,
            TIMEOUT,
            "the booking at the center",
        )
        assert at_center["meetings"][0]["status"] == "booked"

        # Reminders a "day" and an "hour" before; then the center records the meeting held.
        await wait_triggers(
            watcher,
            journey,
            Counter({"meeting_offered": 1, "meeting_booked": 2, "meeting_reminder": 2}),
        )
        starts = datetime.fromisoformat(at_center["meetings"][0]["booked_slot"]["starts_at"])
        await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds()) + 0.5)
        late = await front.intake.post(
            f"/v1/cases/{case_id}/meetings/{meeting_id}/cancellation",
            json={"reason": "cannot_attend"},
            headers=front.auth,
        )
        assert late.status_code == 409 and late.json()["meeting_status"] == "started"
        outcome = f"{meetings_path}/{meeting_id}/outcome"
        held = await desk.call(center, desk.partners, "POST", outcome, json={"outcome": "held"})
        assert held["meetings"][0]["status"] == "held"
        await meeting_in(front, lambda m: m["status"] == "held", "the meeting held")
        closed = await front.intake.post(booking, json={"slot_id": far_id}, headers=front.auth)
        assert closed.status_code == 409 and closed.json()["meeting_status"] == "held"

        # A second meeting, which the patient cancels: the center hears the reason code only.
        await desk.call(
            center,
            desk.partners,
            "POST",
            meetings_path,
            json={
                "place": {
                    "mode": "in_person",
                    "center_address": "Luisenstr. 65, Berlin, room 2.14",
                    "time_zone": "Europe/Berlin",
                },
                "slots": [slot_at(86400)],
            },
        )
        second = await meeting_in(front, lambda m: m["status"] == "offered", "the second", 1)
        cancel = f"/v1/cases/{case_id}/meetings/{second['id']}/cancellation"
        bad_reason = await front.intake.post(cancel, json={"reason": "busy"}, headers=front.auth)
        assert bad_reason.status_code == 422
        gone = await front.intake.post(
            cancel, json={"reason": "none_of_the_times"}, headers=front.auth
        )
        assert gone.status_code == 200, gone.text
        assert gone.json()["meetings"][1]["status"] == "cancelled"
        again = await front.intake.post(cancel, json={"reason": "other"}, headers=front.auth)
        assert again.status_code == 409
        await desk.wait(
            center,
            referral_id,
            lambda v: v["meetings"][1]["status"] == "cancelled",
            TIMEOUT,
            "the cancellation at the center",
        )
        await wait_triggers(watcher, journey, Counter({"meeting_cancelled": 1}))
        fhir = await front.fhir()
    await collect_emails(journey, stack.mail_dir, began, 7, timeout=20)

    inbox = [e for e in journey.events if "partner-inbox" in e.topic]
    changes = [e.data for e in inbox if e.type == "referrals.referral.meeting_changed.v1"]
    assert [c["change"] for c in changes] == ["booked", "booked", "cancelled"]
    assert changes[-1]["patient_reason"] == "none_of_the_times"
    assert "Europe/Kyiv" not in json.dumps([e.data for e in inbox])
    assert len(of_type(journey, "referral.meeting_reminder")) == 2
    assert [e.data["outcome"] for e in of_type(journey, "referral.meeting_ended")] == ["held"]
    assert fhir["resourceType"] == "Bundle"
