"""The patient chooses the center, on the real platform through the public APIs only (issue 21,
§3): several centers are eligible, partners proposes them, the patient picks the second, that
center is offered the case, and the patient was told the choice in Ukrainian."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from devstack.demo import Journey, status_is
from devstack.information_demo import actors, collect_emails, wait_case

from .test_information_loop import TIMEOUT, of_type, wait_triggers

pytestmark = pytest.mark.e2e


async def test_the_patient_chooses_the_second_proposed_center(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    began = time.time()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await front.create_case()
        watcher.follow(case_id)
        edited = await front.intake.patch(
            f"/v1/cases/{case_id}", json={"patient_chooses_center": True}, headers=front.auth
        )
        assert edited.status_code == 200, edited.text
        await front.upload(
            "upload the pathology report (English)", "pathology_report", "pathology_report_en.pdf"
        )
        await front.wait_documents(1, TIMEOUT)
        await front.submit()
        view = await wait_case(
            front, lambda v: v["status"] == "choosing_center", TIMEOUT, "the centers proposed"
        )
        proposals = view["center_proposal"]["proposals"]
        assert len(proposals) >= 2
        assert [p["rank"] for p in proposals] == list(range(1, len(proposals) + 1))
        second = proposals[1]
        chose = await front.intake.post(
            f"/v1/cases/{case_id}/center-choice",
            json={"center_code": second["center_code"]},
            headers={**front.auth, "Idempotency-Key": f"choice-{case_id}"},
        )
        assert chose.status_code == 200, chose.text
        center, offer = await desk.offer(case_id, TIMEOUT)
        assert center == second["center_code"]
        await watcher.wait_for(status_is("referred"), TIMEOUT, "the case to be referred")
        await wait_triggers(watcher, journey, Counter({"centers_proposed": 1}))
    await collect_emails(journey, stack.mail_dir, began, 3, timeout=20)
    assert journey.statuses()[:4] == ["submitted", "ready", "choosing_center", "referred"]
    (requested,) = of_type(journey, "referral.requested")
    assert requested.data["center_code"] == second["center_code"]
    assert requested.data["rationale"].startswith("The patient chose")
    (proposed,) = of_type(journey, "case.centers_proposed")
    assert proposed.data["proposals"][1]["center_code"] == second["center_code"]
    told = next(e for e in journey.emails if second["center_name"] in e.body)
    assert "Німеччина" in told.body  # the country's name in the patient's language, not "DE"
    assert offer["case_id"] == case_id
