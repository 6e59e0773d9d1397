"""Who pays, and the follow-up answer's documents, against an attacker (issue 21 §1, §4).

The insurance policy is personal data: it reaches the center that accepted the referral, through
its authenticated partner API, and nobody else: not the center that was only offered the case,
not the one that declined it, not another center, never a Kafka topic a center reads (the data
minimisation scan covers every topic). And a center answering a follow-up question attaches
only documents it uploaded for that referral: never the patient's, never another referral's.
Every world case is paid by an insurer that Berlin and Munich accept (world.INSURER)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from referrals_partners.models import Referral

from .world import INSURER, CaseHandle, World, wait_for

pytestmark = pytest.mark.security


def _soon() -> str:
    return (datetime.now(UTC) + timedelta(days=7)).isoformat()


async def _referral(world: World, key: str, referral_id: str) -> Any:
    return await world.partners.get(
        f"/v1/partner/referrals/{referral_id}", headers={"X-Api-Key": key}
    )


def _no_policy(response: Any, case: CaseHandle, *, listing: bool = False) -> None:
    """Neither the policy number nor the insurer's name is anywhere in the answer (in a list,
    the number only: every world patient names the same insurer, and the center's own accepted
    referrals of other cases show it rightly)."""
    text = response.text
    assert case.patient.policy_number not in text, text[:300]
    if not listing:
        assert case.patient.insurance_provider not in text, text[:300]


async def test_the_policy_reaches_only_the_center_that_accepted(world: World) -> None:
    case = world.take_routed()  # offered to Berlin
    berlin, munich = world.keys.center, await world.center_key("munich")
    spare = await world.center_key("spare")

    # Offered only: the payer and the policy are not shown, even to the offered center.
    offered = await _referral(world, berlin, case.referral_id)
    assert offered.status_code == 200, offered.text
    assert offered.json()["payer"] is None
    _no_policy(offered, case)

    # Berlin declines: the case goes to Munich; Berlin's declined referral shows nothing of it.
    declined = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/decline",
        json={"reason": "no_capacity"},
        headers={"X-Api-Key": berlin},
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["payer"] is None
    _no_policy(declined, case)
    partners = world.runtimes["partners"]

    async def munichs() -> Referral | None:
        async with partners.db.unit_of_work() as uow:
            rows = await uow.session.execute(
                select(Referral).where(
                    Referral.case_id == uuid.UUID(case.case_id),
                    Referral.center_code == world.centers["munich"],
                )
            )
            return rows.scalars().first()

    referral = await wait_for(munichs, "the case re-routed to Munich")
    munich_referral = str(referral.id)
    before = await _referral(world, munich, munich_referral)
    assert before.json()["payer"] is None
    _no_policy(before, case)
    accepted = await world.partners.post(
        f"/v1/partner/referrals/{munich_referral}/accept",
        json={"expected_opinion_at": _soon()},
        headers={"X-Api-Key": munich},
    )
    assert accepted.status_code == 200, accepted.text

    async def policy() -> dict[str, Any] | None:
        payer = (await _referral(world, munich, munich_referral)).json()["payer"]
        return payer if payer and payer["policy_number"] else None

    shown = await wait_for(policy, "intake's sealed policy reaches partners")
    assert shown == {
        "kind": "insurer",
        "insurer": INSURER,
        "insurer_name": case.patient.insurance_provider,
        "policy_number": case.patient.policy_number,
    }

    # Still nothing for Berlin (its own declined referral, Munich's, its list), nor Lyon.
    again = await _referral(world, berlin, case.referral_id)
    assert again.status_code == 200 and again.json()["payer"] is None
    _no_policy(again, case)
    for key in (berlin, spare):
        other = await _referral(world, key, munich_referral)
        assert other.status_code == 404, other.text
        _no_policy(other, case)
        listed = await world.partners.get("/v1/partner/referrals", headers={"X-Api-Key": key})
        assert listed.status_code == 200, listed.text
        _no_policy(listed, case, listing=True)


async def test_a_follow_up_answer_takes_only_the_referrals_own_uploads(world: World) -> None:
    case = await world.accepted_case()
    berlin = {"X-Api-Key": world.keys.center}
    opinion = await world.upload_opinion(case)
    delivered = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/opinion",
        json={"document_id": opinion},
        headers=berlin,
    )
    assert delivered.status_code == 200, delivered.text

    async def opinion_delivered() -> bool:
        r = await world.intake.get(f"/v1/cases/{case.case_id}", headers=case.bearer)
        return r.json()["status"] == "opinion_delivered"

    await wait_for(opinion_delivered, "intake shows the opinion")
    asked = await world.intake.post(
        f"/v1/cases/{case.case_id}/follow-up-questions",
        json={"question": "Which dose do you mean?"},
        headers=case.bearer,
    )
    assert asked.status_code == 201, asked.text
    question = asked.json()["follow_up_questions"][0]["id"]

    async def known() -> bool:
        r = await _referral(world, world.keys.center, case.referral_id)
        return bool(r.json()["follow_up_questions"])

    await wait_for(known, "partners knows the question")
    # Another referral's upload: the main case's opinion is not there; a second accepted case's
    # opinion is (Berlin's own, but for another referral).
    other_case = await world.accepted_case()
    other_opinion = await world.upload_opinion(other_case)
    path = f"/v1/partner/referrals/{case.referral_id}/follow-up-questions/{question}/answer"
    words = f"Two tablets a day {secrets.token_hex(3)}."
    for attached in (case.documents[0].id, other_opinion):
        refused = await world.partners.post(
            path, json={"answer": words, "document_ids": [attached]}, headers=berlin
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["pointer"] == "/document_ids/0"
        assert words not in refused.text
    # Nothing answered, nothing told.
    view = (await _referral(world, world.keys.center, case.referral_id)).json()
    assert view["follow_up_questions"][0]["answered_at"] is None
    # Munich, which never had the case, cannot upload for the question at records either (once
    # records knows the question, so that the 404 is the refusal, not a question on its way).
    records = world.runtimes["records"]

    async def records_knows() -> bool:
        async with records.db.unit_of_work() as uow:
            found = await records.records.open_question(
                uow, uuid.UUID(case.referral_id), uuid.UUID(question)
            )
            return found is not None

    await wait_for(records_knows, "records knows the question")
    munich = {"X-Api-Key": await world.center_key("munich")}
    upload = await world.records.post(
        f"/v1/referrals/{case.referral_id}/follow-up-questions/{question}/documents",
        files={"file": ("note.pdf", b"%PDF-1.4 not really", "application/pdf")},
        headers=munich,
    )
    assert upload.status_code == 404, upload.text
    # The center's own opinion of this referral is accepted as an attachment.
    done = await world.partners.post(
        path, json={"answer": words, "document_ids": [opinion]}, headers=berlin
    )
    assert done.status_code == 200, done.text
