"""The consultation meeting over real Kafka and PostgreSQL (issue 21 §2): a center that accepted
offers times, the patient's choice (intake's event) books one, the scheduler reminds a day and an
hour before (here seconds), the center records the meeting held; a re-schedule releases a booked
time, the patient moves and cancels, the center cancels; every refusal changes nothing; a retry
with the same Idempotency-Key does nothing twice; another center sees nothing of it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from referrals_common.contracts import (
    CaseMeetingCancelled,
    CaseMeetingSlotChosen,
    ReferralOffered,
    new_event,
    topics,
)

from ..conftest import publish
from .conftest import Inbox, Topic, api_client, key_for, partners_running
from .test_routing_over_kafka import BERLIN, MUNICH, open_case

pytestmark = pytest.mark.integration

VIDEO = {
    "mode": "video",
    "join_url": "https://video.example.org/room/board-7",
    "time_zone": "Europe/Berlin",
    "language": "en",
}
MEETINGS = "/v1/partner/referrals/{}/meetings"


def at(seconds: float, minutes: float = 30) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(seconds=seconds)
    return {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
    }


async def accepted_referral(rt: Any, api: Any, berlin: Inbox) -> tuple[uuid.UUID, uuid.UUID, dict]:
    case_id, _ = await open_case(rt)
    offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
    key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
    # Not before the center accepted: an offer is not yet the center's case.
    early = await api.post(
        MEETINGS.format(offer.referral_id),
        json={"place": VIDEO, "slots": [at(3600)]},
        headers=key,
    )
    assert early.status_code == 409, early.text
    accepted = await api.post(
        f"/v1/partner/referrals/{offer.referral_id}/accept",
        json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()},
        headers=key,
    )
    assert accepted.status_code == 200, accepted.text
    return case_id, offer.referral_id, key


async def choose(rt: Any, case_id, referral_id, meeting_id, slot_id, zone="Europe/Kyiv") -> None:
    await publish(
        rt.settings.kafka.bootstrap_servers,
        new_event(
            CaseMeetingSlotChosen(
                case_id=case_id,
                referral_id=referral_id,
                meeting_id=meeting_id,
                slot_id=slot_id,
                time_zone=zone,
            )
        ),
    )


async def test_offered_booked_reminded_and_held(make_runtime):
    rt = await make_runtime(meeting_min_notice_seconds=1, meeting_reminders_before_seconds=[7, 4])
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Topic(bootstrap, topics.partner_inbox(BERLIN)) as told,
    ):
        case_id, referral_id, key = await accepted_referral(rt, api, berlin)
        url = MEETINGS.format(referral_id)

        # Bad offers: each a 422 naming what is wrong, and nothing offered.
        for body, pointer in (
            ({"place": VIDEO, "slots": [at(-60)]}, "/slots/0/starts_at"),
            ({"place": VIDEO, "slots": [at(3600, minutes=5)]}, "/slots/0/ends_at"),
            ({"place": VIDEO, "slots": [at(3600), at(3600 + 600)]}, "/slots"),
            (
                {"place": {**VIDEO, "join_url": "http://video.example.org/x"}, "slots": [at(3600)]},
                None,
            ),
            ({"place": {**VIDEO, "mode": "in_person"}, "slots": [at(3600)]}, None),
            ({"place": {**VIDEO, "time_zone": "Mars/Olympus"}, "slots": [at(3600)]}, None),
        ):
            bad = await api.post(url, json=body, headers=key)
            assert bad.status_code == 422, (body, bad.text)
            if pointer:
                assert bad.json()["errors"][0]["pointer"] == pointer
        assert (await api.get(f"/v1/partner/referrals/{referral_id}", headers=key)).json()[
            "meetings"
        ] == []

        first, later = at(10), at(3 * 3600)
        idem = {**key, "Idempotency-Key": f"offer-{uuid.uuid4()}"}
        offered = await api.post(
            url,
            json={"place": VIDEO, "slots": [later, first], "note": "Bring your questions."},
            headers=idem,
        )
        assert offered.status_code == 200, offered.text
        again = await api.post(
            url,
            json={"place": VIDEO, "slots": [later, first], "note": "Bring your questions."},
            headers=idem,
        )
        assert again.status_code == 200
        assert again.json()["meetings"] == offered.json()["meetings"]
        (meeting,) = offered.json()["meetings"]
        assert meeting["status"] == "offered"
        assert [s["starts_at"][:19] for s in meeting["slots"]] == [
            first["starts_at"][:19],
            later["starts_at"][:19],
        ]  # in time order
        second = await api.post(url, json={"place": VIDEO, "slots": [at(7200)]}, headers=key)
        assert second.status_code == 409
        assert second.json()["referral_status"] == "meeting_open"
        event = (await routing.wait_for(case_id, "referrals.referral.meeting_offered.v1"))[0]
        assert event["data"]["place"]["join_url"] == VIDEO["join_url"]
        assert event["data"]["note"] == "Bring your questions."

        # Another center knows nothing of it.
        munich = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        for path, body in (
            (url, {"place": VIDEO, "slots": [at(3600)]}),
            (f"{url}/{meeting['id']}/cancellation", {"reason": "No."}),
            (f"{url}/{meeting['id']}/outcome", {"outcome": "held"}),
        ):
            assert (await api.post(path, json=body, headers=munich)).status_code == 404

        # The patient books the first time (as intake publishes it).
        slot = meeting["slots"][0]
        await choose(rt, case_id, referral_id, uuid.UUID(meeting["id"]), uuid.UUID(slot["slot_id"]))
        booked = (await routing.wait_for(case_id, "referrals.referral.meeting_booked.v1"))[0]
        assert booked["data"]["slot"]["slot_id"] == slot["slot_id"]
        assert booked["data"]["patient_time_zone"] == "Europe/Kyiv"
        assert booked["data"]["sequence"] == 0
        assert booked["data"]["rebooked"] is False
        changed = (await told.wait_for(case_id, "referrals.referral.meeting_changed.v1"))[0]
        assert changed["data"]["change"] == "booked"
        assert set(changed["data"]) == {
            "case_id",
            "referral_id",
            "center_code",
            "meeting_id",
            "change",
            "slot",
            "patient_reason",
        }

        # Reminders: a "day" (7 s) and an "hour" (4 s) before, once each.
        reminders = await routing.wait_for(
            case_id, "referrals.referral.meeting_reminder.v1", count=2, timeout=15
        )
        assert [r["data"]["before"] for r in reminders] == ["day_before", "hour_before"]

        # Not before it starts; then held, once.
        early = await api.post(
            f"{url}/{meeting['id']}/outcome", json={"outcome": "held"}, headers=key
        )
        assert early.status_code == 409, early.text
        await asyncio.sleep(
            max(
                0.0, (datetime.fromisoformat(slot["starts_at"]) - datetime.now(UTC)).total_seconds()
            )
            + 0.5
        )
        held = await api.post(
            f"{url}/{meeting['id']}/outcome", json={"outcome": "held"}, headers=key
        )
        assert held.status_code == 200, held.text
        assert held.json()["meetings"][0]["status"] == "held"
        assert (
            await api.post(f"{url}/{meeting['id']}/outcome", json={"outcome": "held"}, headers=key)
        ).status_code == 200
        missed = await api.post(
            f"{url}/{meeting['id']}/outcome", json={"outcome": "missed"}, headers=key
        )
        assert missed.status_code == 409
        ended = await routing.wait_for(case_id, "referrals.referral.meeting_ended.v1")
        assert ended[0]["data"]["outcome"] == "held"
        await asyncio.sleep(1)
        assert (
            len(await routing.wait_for(case_id, "referrals.referral.meeting_reminder.v1", 2)) == 2
        )
        assert len(await routing.wait_for(case_id, "referrals.referral.meeting_ended.v1")) == 1


async def test_rescheduled_moved_and_cancelled_by_either_side(make_runtime):
    rt = await make_runtime(meeting_min_notice_seconds=1)
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Topic(bootstrap, topics.partner_inbox(BERLIN)) as told,
    ):
        case_id, referral_id, key = await accepted_referral(rt, api, berlin)
        url = MEETINGS.format(referral_id)
        in_person = {
            "mode": "in_person",
            "center_address": "Luisenstr. 65, Berlin, room 2.14",
            "time_zone": "Europe/Berlin",
        }
        offered = await api.post(
            url, json={"place": in_person, "slots": [at(3600), at(7200)]}, headers=key
        )
        assert offered.status_code == 200, offered.text
        meeting = offered.json()["meetings"][0]
        mid = uuid.UUID(meeting["id"])
        old = meeting["slots"][0]
        await choose(rt, case_id, referral_id, mid, uuid.UUID(old["slot_id"]))
        await routing.wait_for(case_id, "referrals.referral.meeting_booked.v1")

        # The center offers new times: the booked one is released, the calendar sequence moves.
        idem = {**key, "Idempotency-Key": f"resched-{uuid.uuid4()}"}
        new_times = [at(86400), at(2 * 86400)]
        moved = await api.post(f"{url}/{mid}/slots", json={"slots": new_times}, headers=idem)
        assert moved.status_code == 200, moved.text
        again = await api.post(f"{url}/{mid}/slots", json={"slots": new_times}, headers=idem)
        assert again.json()["meetings"] == moved.json()["meetings"]
        view = moved.json()["meetings"][0]
        assert view["status"] == "offered" and view["booked_slot"] is None
        offers = await routing.wait_for(case_id, "referrals.referral.meeting_offered.v1", count=2)
        assert offers[1]["data"]["rescheduled"] is True
        assert offers[1]["data"]["released_slot"]["slot_id"] == old["slot_id"]
        assert offers[1]["data"]["sequence"] == 1

        # A choice of a time no longer offered is dropped; a new one books; moving rebooks.
        await choose(rt, case_id, referral_id, mid, uuid.UUID(old["slot_id"]))
        new_a, new_b = view["slots"]
        await choose(rt, case_id, referral_id, mid, uuid.UUID(new_a["slot_id"]))
        await choose(rt, case_id, referral_id, mid, uuid.UUID(new_b["slot_id"]), "Europe/Warsaw")
        booked = await routing.wait_for(case_id, "referrals.referral.meeting_booked.v1", count=3)
        assert [b["data"]["slot"]["slot_id"] for b in booked[1:]] == [
            new_a["slot_id"],
            new_b["slot_id"],
        ]
        assert [(b["data"]["sequence"], b["data"]["rebooked"]) for b in booked[1:]] == [
            (1, False),
            (2, True),
        ]
        assert booked[2]["data"]["patient_time_zone"] == "Europe/Warsaw"

        # The patient cancels (a reason code): the center is told, and can no longer cancel it.
        await publish(
            bootstrap,
            new_event(
                CaseMeetingCancelled(
                    case_id=case_id, referral_id=referral_id, meeting_id=mid, reason="cannot_attend"
                )
            ),
        )
        cancelled = (await routing.wait_for(case_id, "referrals.referral.meeting_cancelled.v1"))[0]
        assert cancelled["data"]["cancelled_by"] == "patient"
        assert cancelled["data"]["slot"]["slot_id"] == new_b["slot_id"]
        assert cancelled["data"]["sequence"] == 3
        inbox = await told.wait_for(case_id, "referrals.referral.meeting_changed.v1", count=4)
        assert [e["data"]["change"] for e in inbox] == ["booked", "booked", "booked", "cancelled"]
        assert inbox[-1]["data"]["patient_reason"] == "cannot_attend"
        late = await api.post(f"{url}/{mid}/cancellation", json={"reason": "Ill."}, headers=key)
        assert late.status_code == 409
        assert (
            await api.post(f"{url}/{mid}/slots", json={"slots": [at(3600)]}, headers=key)
        ).status_code == 409
        # A choice after the cancellation books nothing.
        await choose(rt, case_id, referral_id, mid, uuid.UUID(new_a["slot_id"]))

        # A new meeting may be offered; the center cancels it with its words.
        fresh = await api.post(url, json={"place": VIDEO, "slots": [at(3600)]}, headers=key)
        assert fresh.status_code == 200, fresh.text
        fid = fresh.json()["meetings"][1]["id"]
        gone = await api.post(
            f"{url}/{fid}/cancellation", json={"reason": "Our doctor is ill."}, headers=key
        )
        assert gone.status_code == 200
        assert [m["status"] for m in gone.json()["meetings"]] == ["cancelled", "cancelled"]
        by_center = await routing.wait_for(
            case_id, "referrals.referral.meeting_cancelled.v1", count=2
        )
        assert by_center[1]["data"]["cancelled_by"] == "center"
        assert by_center[1]["data"]["center_reason"] == "Our doctor is ill."
        assert by_center[1]["data"]["slot"] is None
        await asyncio.sleep(1)
        assert (
            len(await routing.wait_for(case_id, "referrals.referral.meeting_booked.v1", count=3))
            == 3
        )


# ------------------------------------------------------------------ a further opinion (§6)
async def test_a_further_opinion_goes_to_a_center_never_offered_the_case(make_runtime):
    """After Berlin's opinion the patient asks for another: Munich is offered the case (never
    Berlin again), with Berlin's opinion only because the patient shared it; after Munich's
    opinion, one more finds no center left (Warsaw is not in the destination): unroutable."""
    from referrals_common.contracts import CaseFurtherOpinionRequested

    from .conftest import document_stored

    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich_inbox,
    ):
        case_id, referral_id, key = await accepted_referral(rt, api, berlin)

        async def deliver(referral, center_key) -> uuid.UUID:
            opinion = document_stored(case_id, kind="opinion", referral_id=referral)
            await publish(bootstrap, opinion)
            async with asyncio.timeout(20):
                while True:
                    done = await api.post(
                        f"/v1/partner/referrals/{referral}/opinion",
                        json={"document_id": str(opinion.data.document_id)},
                        headers=center_key,
                    )
                    if done.status_code != 409:
                        break
                    await asyncio.sleep(0.2)
            assert done.status_code == 200, done.text
            return opinion.data.document_id

        first_opinion = await deliver(referral_id, key)
        await routing.wait_for(case_id, "referrals.referral.opinion_delivered.v1")
        await publish(
            bootstrap,
            new_event(
                CaseFurtherOpinionRequested(
                    case_id=case_id,
                    opinion_round=2,
                    reason="conflicting_opinions",
                    share_earlier_opinions=True,
                    shared_document_ids=[first_opinion],
                )
            ),
        )
        offer = ReferralOffered.model_validate((await munich_inbox.offer_for(case_id))["data"])
        assert offer.center_code == MUNICH
        offered_kinds = {str(d.document_id): d.kind for d in offer.documents}
        assert offered_kinds[str(first_opinion)] == "opinion"
        requested = await routing.wait_for(case_id, "referrals.referral.requested.v1", count=2)
        assert [r["data"]["center_code"] for r in requested] == [BERLIN, MUNICH]
        assert requested[1]["data"]["attempt"] == 1  # each opinion has its own attempts

        munich = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        accepted = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()},
            headers=munich,
        )
        assert accepted.status_code == 200, accepted.text
        await deliver(offer.referral_id, munich)
        await routing.wait_for(case_id, "referrals.referral.opinion_delivered.v1", count=2)

        # A third opinion: every eligible center was offered the case before.
        await publish(
            bootstrap,
            new_event(
                CaseFurtherOpinionRequested(
                    case_id=case_id,
                    opinion_round=3,
                    reason="another_view",
                    share_earlier_opinions=False,
                )
            ),
        )
        unroutable = await routing.wait_for(case_id, "referrals.case.unroutable.v1")
        assert unroutable[0]["data"]["reason"] == "no_eligible_center"
        assert set(unroutable[0]["data"]["centers_tried"]) == {BERLIN, MUNICH}
        assert unroutable[0]["data"]["opinion_round"] == 3
        # Asked again after a round that found no center: routed (not ignored), none left again.
        await publish(
            bootstrap,
            new_event(
                CaseFurtherOpinionRequested(
                    case_id=case_id,
                    opinion_round=4,
                    reason="other",
                    share_earlier_opinions=False,
                )
            ),
        )
        again = await routing.wait_for(case_id, "referrals.case.unroutable.v1", count=2)
        assert again[1]["data"]["opinion_round"] == 4
        await asyncio.sleep(1)
        assert len(await routing.wait_for(case_id, "referrals.referral.requested.v1", 2)) == 2
