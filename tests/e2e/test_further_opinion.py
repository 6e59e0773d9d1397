"""A further opinion on the real platform through the public APIs only (issue 21 §6, seed 003:
opinions that conflict may need a further consultation): after the first center's opinion the
patient asks for one more, agreeing that the earlier opinion goes with the case; the case goes
to a center never offered it, which reads the shared opinion through records; when every other
center declines, the case keeps the opinion it has. And when the other center gives its opinion,
the patient is told by e-mail at each step and the FHIR export holds both opinions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from devstack.demo import Journey, status_is
from devstack.information_demo import actors, collect_emails, open_and_submit, wait_case

from .test_information_loop import TIMEOUT, of_type, wait_triggers

pytestmark = pytest.mark.e2e


async def test_a_further_opinion_goes_elsewhere_with_the_shared_opinion(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await open_and_submit(front, TIMEOUT)
        watcher.follow(case_id)
        first, offer = await desk.offer(case_id, TIMEOUT)
        referral_id = str(offer["id"])
        path = f"/v1/cases/{case_id}/further-opinion"
        body = {"reason": "conflicting_opinions", "share_earlier_opinions": True}
        early = await front.intake.post(path, json=body, headers=front.auth)
        assert early.status_code == 409 and early.json()["reason"] == "no-opinion"
        await desk.accept(first, referral_id)
        await desk.deliver_opinion(first, referral_id)
        await watcher.wait_for(status_is("opinion_delivered"), TIMEOUT, "the opinion")
        view = await front.read_case()
        assert view["further_opinions_left"] == 2 and view["opinion_round"] == 1
        opinion_id = next(
            str(d["document_id"]) for d in view["documents"] if d["kind"] == "opinion"
        )

        # The consent step is explicit: a request without it is refused and changes nothing.
        unanswered = await front.intake.post(
            path, json={"reason": "conflicting_opinions"}, headers=front.auth
        )
        assert unanswered.status_code == 422
        assert (await front.read_case())["status"] == "opinion_delivered"
        asked = await front.intake.post(
            path, json=body, headers={**front.auth, "Idempotency-Key": f"further-{case_id}"}
        )
        assert asked.status_code == 200, asked.text
        assert asked.json()["status"] == "ready" and asked.json()["opinion_round"] == 2
        again = await front.intake.post(path, json=body, headers=front.auth)
        assert again.status_code == 409  # one further opinion at a time

        # Another center, never the first; it reads the first opinion the patient shared.
        second, offer2 = await desk.offer(case_id, TIMEOUT, not_from=first)
        assert second != first
        second_id = str(offer2["id"])
        assert opinion_id in {str(d["document_id"]) for d in offer2["offer"]["documents"]}
        deadline = time.monotonic() + 60
        while True:
            listed = await desk.records.get(
                f"/v1/referrals/{second_id}/documents", headers={"X-Api-Key": desk.keys[second]}
            )
            if listed.status_code == 200:
                break
            assert time.monotonic() < deadline, listed.text
            await asyncio.sleep(0.3)
        assert opinion_id in {d["id"] for d in listed.json()}
        assert await desk.read_document(second, second_id, opinion_id) > 0

        # Every other center declines: the case keeps the opinion it has.
        declined = {first}
        center, referral = second, offer2
        while True:
            await desk.call(
                center,
                desk.partners,
                "POST",
                f"/v1/partner/referrals/{referral['id']}/decline",
                json={"reason": "no_capacity"},
            )
            declined.add(center)
            try:
                center, referral = await desk.offer(case_id, 15, not_from=center)
            except TimeoutError:
                break
            assert center not in declined
        await watcher.wait_for(
            lambda e: (
                e.type == "referrals.case.status_changed.v1"
                and e.data.get("reason_code") == "further_opinion_unavailable"
            ),
            TIMEOUT,
            "the case back to its opinion",
        )
        view = await front.read_case()
        assert view["status"] == "opinion_delivered"
        assert view["opinion_round"] == 2 and view["further_opinions_left"] == 1
    further = of_type(journey, "case.further_opinion_requested")
    assert len(further) == 1
    assert further[0].data["shared_document_ids"] == [opinion_id]
    assert of_type(journey, "case.unroutable")


def _opinion_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, f"Further opinion {time.time_ns()}: we agree with the first center.")
    return bytes(pdf.output())


async def test_a_further_opinion_is_given_told_by_e_mail_and_exported(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    began = time.time()
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await open_and_submit(front, TIMEOUT)
        watcher.follow(case_id)
        first, offer = await desk.offer(case_id, TIMEOUT)
        await desk.accept(first, str(offer["id"]))
        await desk.deliver_opinion(first, str(offer["id"]))
        await watcher.wait_for(status_is("opinion_delivered"), TIMEOUT, "the first opinion")
        asked = await front.intake.post(
            f"/v1/cases/{case_id}/further-opinion",
            json={"reason": "conflicting_opinions", "share_earlier_opinions": True},
            headers={**front.auth, "Idempotency-Key": f"further-{case_id}"},
        )
        assert asked.status_code == 200, asked.text
        second, offer2 = await desk.offer(case_id, TIMEOUT, not_from=first)
        assert second != first
        await desk.accept(second, str(offer2["id"]))
        # The second center's own opinion (another file than the first center's).
        stored = await desk.call(
            second,
            desk.records,
            "POST",
            f"/v1/referrals/{offer2['id']}/opinion",
            files={"file": ("further-opinion.pdf", _opinion_pdf(), "application/pdf")},
        )
        await desk.call(
            second,
            desk.partners,
            "POST",
            f"/v1/partner/referrals/{offer2['id']}/opinion",
            json={"document_id": stored["id"]},
        )
        view = await wait_case(
            front,
            lambda v: (
                v["status"] == "opinion_delivered"
                and sum(d["kind"] == "opinion" for d in v["documents"]) == 2
            ),
            TIMEOUT,
            "the second opinion",
        )
        assert view["opinion_round"] == 2
        opinions = [str(d["document_id"]) for d in view["documents"] if d["kind"] == "opinion"]
        await wait_triggers(
            watcher,
            journey,
            Counter({"further_opinion_requested": 1, "opinion_delivered": 2}),
        )
        fhir = await front.fhir()
    await collect_emails(journey, stack.mail_dir, began, 6, timeout=30)

    # The patient's e-mails (Ukrainian): the further opinion asked, then each opinion ready.
    subjects = [e.subject for e in journey.emails]
    assert sum("звертаємося до іншого центру по ще одну думку" in s for s in subjects) == 1, (
        subjects
    )
    assert sum("висновок готовий" in s for s in subjects) == 2, subjects

    # Each center offered the case once: the one that gave the first opinion never again.
    offered = [e.data["center_code"] for e in of_type(journey, "referral.requested")]
    assert offered == [first, second]
    delivered = [e.data["center_code"] for e in of_type(journey, "referral.opinion_delivered")]
    assert delivered == [first, second]

    # The FHIR export: both opinions are the Task's outputs, the further opinion its input.
    resources = [e["resource"] for e in fhir["entry"]]
    (task,) = [r for r in resources if r["resourceType"] == "Task"]
    outputs = [
        o["valueReference"]["reference"]
        for o in task["output"]
        if o["type"].get("text") == "opinion"
    ]
    assert sorted(outputs) == sorted(f"urn:uuid:{d}" for d in opinions)
    assert task["status"] == "completed"
    assert task["owner"]["identifier"]["value"] == second
    assert any("conflicting_opinions" in json.dumps(i) for i in task.get("input", []))
