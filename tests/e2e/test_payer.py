"""Who pays, end to end on the real platform through the public APIs only (issue 21 §4, seeds
003, 004): the front end creates a case an insurer pays; routing offers it only to a center that
accepts that insurer (the registry's `payers`); that center reads the payer and the policy
through its authenticated API once it accepted, never on its inbox; the FHIR export holds the
payer as a Coverage. A payer no center accepts makes the case unroutable with the reason
`payer_not_accepted`, and the patient's e-mail says so.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from typing import Any

import pytest

from devstack.demo import Journey, status_is
from devstack.information_demo import actors, collect_emails

from .test_information_loop import TIMEOUT, of_type, wait_triggers

pytestmark = pytest.mark.e2e

BERLIN = "sample-breast-center-berlin"
"""The only sample center in Germany for breast cancer with an agreement with Allianz Care."""


async def _insured_case(front: Any, payer: dict[str, Any], insurance: dict[str, str]) -> str:
    case_id = await front.create_case(payer=payer, insurance=insurance)
    await front.upload(
        "upload the pathology report (English)", "pathology_report", "pathology_report_en.pdf"
    )
    await front.wait_documents(1, TIMEOUT)
    await front.submit()
    return case_id


async def test_an_insured_case_goes_to_a_center_of_its_insurer_which_reads_the_policy(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    policy = f"AC-E2E-{secrets.token_hex(4).upper()}"
    payer = {"kind": "insurer", "insurer": "allianz-care"}
    async with actors(stack, platform, journey) as (front, desk, watcher):
        case_id = await _insured_case(
            front, payer, {"provider": "Allianz Care", "policy_number": policy}
        )
        watcher.follow(case_id)
        center, offer = await desk.offer(case_id, TIMEOUT)
        assert center == BERLIN  # Munich also reviews C50 in Germany, but not for this insurer
        referral_id = str(offer["id"])
        assert offer["payer"] is None  # offered only: nothing of who pays
        for other in (code for code in desk.keys if code != center):
            foreign = await desk.partners.get(
                f"/v1/partner/referrals/{referral_id}", headers={"X-Api-Key": desk.keys[other]}
            )
            assert foreign.status_code == 404
            assert policy not in foreign.text
        await desk.accept(center, referral_id)
        seen = await desk.wait(
            center,
            referral_id,
            lambda v: bool(v["payer"] and v["payer"]["policy_number"]),
            TIMEOUT,
            "the policy at the accepting center",
        )
        assert seen["payer"] == {
            **payer,
            "insurer_name": "Allianz Care",
            "policy_number": policy,
        }
        await watcher.wait_for(status_is("accepted"), TIMEOUT, "the acceptance")
        fhir = await front.fhir()
    requested = of_type(journey, "referral.requested")
    assert {e.data["center_code"] for e in requested} == {BERLIN}
    inbox = [e for e in journey.events if "partner-inbox" in e.topic]
    assert inbox, "the offer on Berlin's inbox"
    center_facing = json.dumps([e.data for e in inbox])
    assert policy not in center_facing and "allianz" not in center_facing.lower()
    # On the platform's topics the policy is ciphertext only (sealed to partners' key).
    shared = of_type(journey, "case.policy_shared")
    assert [e.data["referral_id"] for e in shared] == [referral_id]
    assert policy not in json.dumps([e.data for e in journey.events])

    resources = [e["resource"] for e in fhir["entry"]]
    (coverage,) = [r for r in resources if r["resourceType"] == "Coverage"]
    assert coverage["payor"][0]["identifier"]["value"] == "allianz-care"
    assert coverage["payor"][0]["display"] == "Allianz Care"
    (request,) = [r for r in resources if r["resourceType"] == "ServiceRequest"]
    coverage_url = next(e["fullUrl"] for e in fhir["entry"] if e["resource"] == coverage)
    assert request["insurance"] == [{"reference": coverage_url, "type": "Coverage"}]
    assert policy not in json.dumps(fhir)  # the export names no personal identifier


async def test_a_payer_no_center_accepts_is_unroutable_and_the_patient_is_told(
    running_platform: tuple[Any, Any],
) -> None:
    stack, platform = running_platform
    journey = Journey()
    began = time.time()
    async with actors(stack, platform, journey) as (front, _desk, watcher):
        case_id = await _insured_case(
            front,
            {"kind": "insurer", "insurer": "unknown-mutual"},
            {"provider": "Unknown Mutual", "policy_number": "UM-0001"},
        )
        watcher.follow(case_id)
        await watcher.wait_for(status_is("unroutable"), TIMEOUT, "the case unroutable")
        await wait_triggers(watcher, journey, Counter({"case_unroutable": 1}))
        view = await front.read_case()
        assert view["status"] == "unroutable"
    (unroutable,) = of_type(journey, "case.unroutable")
    assert unroutable.data["reason"] == "payer_not_accepted"
    assert unroutable.data["centers_tried"] == []
    assert not of_type(journey, "referral.requested")  # no center was offered the case
    await collect_emails(journey, stack.mail_dir, began, 3, timeout=30)
    told = [
        e for e in journey.emails if "не приймають той спосіб оплати" in " ".join(e.body.split())
    ]
    assert len(told) == 1, [e.subject for e in journey.emails]
