"""A further opinion on the real platform through the public APIs only (issue 21 §6, seed 003:
opinions that conflict may need a further consultation): after the first center's opinion the
patient asks for one more, agreeing that the earlier opinion goes with the case; the case goes
to a center never offered it, which reads the shared opinion through records; when every other
center declines, the case keeps the opinion it has.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from devstack.demo import Journey, status_is
from devstack.information_demo import actors, open_and_submit

from .test_information_loop import TIMEOUT, of_type

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
