"""Why a center was offered a case, recorded at routing time and read by that center only: on the
referral (partners' database), in the partner API's referral view and list, and in the
`referral.offered` event on the center's own inbox topic; for a first routing, a re-route after a
decline and the patient's choice, over real Kafka and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest

from referrals_common.contracts import CaseCenterChosen, ReferralOffered, new_event, topics
from referrals_partners.models import Referral

from ..conftest import publish
from .conftest import Inbox, Topic, api_client, key_for, partners_running
from .test_routing_over_kafka import BERLIN, MUNICH, WARSAW, open_case

pytestmark = pytest.mark.integration


async def stored_routing(rt, referral_id: uuid.UUID) -> dict:
    async with rt.db.unit_of_work() as uow:
        referral = await uow.session.get(Referral, referral_id)
    assert referral is not None
    assert referral.routing is not None
    return referral.routing


def by_rule(routing: dict) -> dict[str, dict]:
    return {m["rule"]: m for m in routing["matched"]}


def reason_codes(routing: dict) -> list[str]:
    return [r["code"] for r in routing["reasons"]]


async def test_the_first_routing_records_why_and_only_the_center_reads_it(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with partners_running(rt), api_client(rt) as api, Inbox(bootstrap, BERLIN) as berlin:
        case_id, _ = await open_case(rt)
        event = await berlin.offer_for(case_id)
        offer = ReferralOffered.model_validate(event["data"])
        routing = await stored_routing(rt, offer.referral_id)

        # Berlin (C50, 7 days) and Munich (C00-C80, 10 days) are eligible in Germany; Warsaw not.
        assert (routing["rank"], routing["eligible_count"], routing["considered_count"]) == (
            1,
            2,
            3,
        )
        assert routing["chosen_by_patient"] is False
        rules = by_rule(routing)
        assert rules["diagnosis"]["codes"] == ["C50", "C50.9"]
        assert rules["age_group"]["codes"] == ["adult"]
        assert rules["destination"]["codes"] == ["DE"]
        assert rules["languages"]["codes"] == ["de", "en"]
        assert (rules["capacity"]["places_taken"], rules["capacity"]["weekly_capacity"]) == (0, 20)
        assert rules["turnaround"]["turnaround_days"] == 7
        (first,) = routing["reasons"]
        assert (first["code"], first["criterion"]) == ("ranked_first", "turnaround")
        assert all(item["text"] for item in [*routing["matched"], *routing["reasons"]])

        # The center's inbox event carries the same explanation; codes, no personal data.
        assert event["data"]["routing"] == routing
        raw = json.dumps(event)
        for private in ("Is breast-conserving", "Test Oncology Munich", "desk@", "techniker"):
            assert private not in raw

        # The partner API: the referral and the list, to Berlin.
        mine = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        path = f"/v1/partner/referrals/{offer.referral_id}"
        read = await api.get(path, headers=mine)
        assert read.status_code == 200, read.text
        assert read.json()["routing"] == routing
        listed = await api.get("/v1/partner/referrals", headers=mine)
        assert [r["routing"] for r in listed.json() if r["id"] == str(offer.referral_id)] == [
            routing
        ]

        # The "no": another center gets a 404 for the referral and nothing in its list.
        for other in (MUNICH, WARSAW):
            theirs = {"X-Api-Key": await key_for(rt, "center", other)}
            refused = await api.get(path, headers=theirs)
            assert refused.status_code == 404
            assert "routing" not in refused.text and "ranked_first" not in refused.text
            assert (await api.get("/v1/partner/referrals", headers=theirs)).json() == []
        assert (await api.get(path)).status_code == 401


async def test_a_re_route_after_a_decline_says_so_to_the_next_center(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, _ = await open_case(rt)
        first = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        berlin_key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        declined = await api.post(
            f"/v1/partner/referrals/{first.referral_id}/decline",
            json={"reason": "no_capacity"},
            headers=berlin_key,
        )
        assert declined.status_code == 200, declined.text

        event = await munich.offer_for(case_id)
        second = ReferralOffered.model_validate(event["data"])
        routing = await stored_routing(rt, second.referral_id)
        # Berlin was tried: Munich is now the one eligible center of the three.
        assert (routing["rank"], routing["eligible_count"], routing["considered_count"]) == (
            1,
            1,
            3,
        )
        assert by_rule(routing)["diagnosis"]["codes"] == ["C00-C80", "C50.9"]
        assert by_rule(routing)["turnaround"]["turnaround_days"] == 10
        assert reason_codes(routing) == ["only_eligible", "rerouted_after_decline"]
        assert routing["reasons"][1]["count"] == 1
        assert routing["reasons"][1]["text"] == "Offered after 1 other center declined it."
        assert event["data"]["routing"] == routing

        munich_key = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        read = await api.get(f"/v1/partner/referrals/{second.referral_id}", headers=munich_key)
        assert read.json()["routing"] == routing
        # Berlin keeps its own explanation and never reads Munich's.
        own = await api.get(f"/v1/partner/referrals/{first.referral_id}", headers=berlin_key)
        assert reason_codes(own.json()["routing"]) == ["ranked_first"]
        other = await api.get(f"/v1/partner/referrals/{second.referral_id}", headers=berlin_key)
        assert other.status_code == 404


async def test_the_patients_choice_is_the_reason_even_for_a_lower_ranked_center(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing_topic,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, _ = await open_case(rt, patient_chooses=True)
        await routing_topic.wait_for(case_id, "referrals.case.centers_proposed.v1")
        await publish(bootstrap, new_event(CaseCenterChosen(case_id=case_id, center_code=MUNICH)))
        event = await munich.offer_for(case_id)
        offer = ReferralOffered.model_validate(event["data"])
        routing = await stored_routing(rt, offer.referral_id)

        assert routing["chosen_by_patient"] is True
        assert (routing["rank"], routing["eligible_count"], routing["considered_count"]) == (
            2,
            2,
            3,
        )
        assert reason_codes(routing) == ["chosen_by_patient"]
        assert routing["reasons"][0]["count"] == 2  # two centers were proposed
        assert "The patient chose your center" in routing["reasons"][0]["text"]
        assert by_rule(routing)["diagnosis"]["codes"] == ["C00-C80", "C50.9"]
        assert event["data"]["routing"] == routing
        munich_key = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        read = await api.get(f"/v1/partner/referrals/{offer.referral_id}", headers=munich_key)
        assert read.json()["routing"] == routing
        berlin_key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        refused = await api.get(f"/v1/partner/referrals/{offer.referral_id}", headers=berlin_key)
        assert refused.status_code == 404


async def test_a_re_route_after_an_expiry_and_a_silent_patient_are_explained(make_runtime):
    rt = await make_runtime(deadline_override_seconds=1.5, choice_window_seconds=1.5)
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        Topic(bootstrap, topics.ROUTING) as routing_topic,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        # Berlin lets the offer expire: Munich is told why it has the case now.
        case_id, _ = await open_case(rt)
        await berlin.offer_for(case_id)
        await routing_topic.wait_for(case_id, "referrals.referral.expired.v1")
        second = ReferralOffered.model_validate((await munich.offer_for(case_id))["data"])
        routing = await stored_routing(rt, second.referral_id)
        assert reason_codes(routing) == ["only_eligible", "rerouted_after_expiry"]
        assert routing["reasons"][1]["count"] == 1
        assert second.routing is not None and second.routing.model_dump(mode="json") == routing

        # A patient asked to choose and did not: the first-ranked center, and why.
        silent, _ = await open_case(rt, patient_chooses=True)
        await routing_topic.wait_for(silent, "referrals.case.centers_proposed.v1")
        offer = ReferralOffered.model_validate((await berlin.offer_for(silent))["data"])
        routing = await stored_routing(rt, offer.referral_id)
        assert routing["chosen_by_patient"] is False
        assert (routing["rank"], routing["eligible_count"]) == (1, 2)
        assert reason_codes(routing) == ["no_choice_by_deadline", "ranked_first"]
        assert routing["reasons"][1]["criterion"] == "turnaround"
