"""After the opinion and for the accepting center only (issue 21 §1, §4), on real Kafka and
PostgreSQL: a follow-up answer attaches only documents the center uploaded for this referral;
the insurance policy intake seals for the accepted referral reaches that center's API, and only
once it accepted, never its inbox."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from referrals_common.contracts import (
    CaseFollowUpAsked,
    CasePolicyShared,
    ReferralOffered,
    new_event,
    topics,
)
from referrals_common.crypto import SealedBox

from ..conftest import publish, wait_for
from .conftest import (
    Inbox,
    Topic,
    api_client,
    document_stored,
    key_for,
    partners_running,
    ready,
)

pytestmark = pytest.mark.integration

BERLIN, MUNICH = "test-breast-berlin", "test-oncology-munich"
POLICY_PRIVATE, POLICY_PUBLIC = SealedBox.generate_keypair_base64()
INSURED = {"kind": "insurer", "insurer": "allianz-care"}
POLICY = {"insurer": "allianz-care", "provider": "Allianz Care", "policy_number": "AC-77-0042"}


def soon(days: int = 7) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def sealed_for(case_id: uuid.UUID, referral_id: uuid.UUID) -> object:
    """`case.policy_shared` as intake publishes it once a center accepted."""
    return new_event(
        CasePolicyShared(
            case_id=case_id,
            referral_id=referral_id,
            sealed_policy=SealedBox(public_key_b64=POLICY_PUBLIC).seal_json(
                POLICY, bound_to=f"{case_id}/{referral_id}"
            ),
        )
    )


async def test_the_policy_reaches_only_the_accepting_center_through_its_api(make_runtime):
    rt = await make_runtime(policy_private_key=POLICY_PRIVATE)
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id = uuid.uuid4()
        stored = document_stored(case_id)
        await publish(bootstrap, stored)
        await publish(bootstrap, ready(case_id, [stored.data.document_id], payer=INSURED))
        offer = await munich.offer_for(case_id)
        assert "AC-77-0042" not in json.dumps(offer) and "allianz" not in json.dumps(offer)
        referral_id = ReferralOffered.model_validate(offer["data"]).referral_id
        key = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        path = f"/v1/partner/referrals/{referral_id}"
        # A policy that arrives while the referral is only offered is kept, not shown.
        await publish(bootstrap, sealed_for(case_id, referral_id))

        async def kept() -> bool:
            async with rt.db.unit_of_work() as uow:
                from referrals_partners.models import Referral

                row = await uow.session.get(Referral, referral_id)
                return bool(row and row.sealed_policy)

        await wait_for(kept)
        assert (await api.get(path, headers=key)).json()["payer"] is None
        accepted = await api.post(
            f"{path}/accept", json={"expected_opinion_at": soon()}, headers=key
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["payer"] == {
            **INSURED,
            "insurer_name": "Allianz Care",
            "policy_number": "AC-77-0042",
        }
        # A policy sealed for another referral does not open for this one.
        await publish(bootstrap, sealed_for(case_id, uuid.uuid4()))
        async with rt.db.unit_of_work() as uow:
            from referrals_partners.models import Referral

            row = await uow.session.get(Referral, referral_id)
            row.sealed_policy = SealedBox(public_key_b64=POLICY_PUBLIC).seal_json(
                POLICY, bound_to=f"{case_id}/{uuid.uuid4()}"
            )
            await uow.commit()
        moved = (await api.get(path, headers=key)).json()["payer"]
        assert moved == {**INSURED, "insurer_name": None, "policy_number": None}


async def test_a_follow_up_answer_attaches_only_this_referrals_own_uploads(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id = uuid.uuid4()
        patients = document_stored(case_id)
        await publish(bootstrap, patients)
        await publish(bootstrap, ready(case_id, [patients.data.document_id]))
        referral_id = ReferralOffered.model_validate(
            (await berlin.offer_for(case_id))["data"]
        ).referral_id
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        path = f"/v1/partner/referrals/{referral_id}"
        assert (
            await api.post(f"{path}/accept", json={"expected_opinion_at": soon()}, headers=key)
        ).is_success
        opinion = document_stored(case_id, "opinion", referral_id)
        attachment = document_stored(case_id, "opinion", referral_id)
        elsewhere = document_stored(case_id, "opinion", uuid.uuid4())  # another referral's
        await publish(bootstrap, opinion, attachment, elsewhere)

        async def delivered():
            answer = await api.post(
                f"{path}/opinion", json={"document_id": str(opinion.data.document_id)}, headers=key
            )
            return answer if answer.status_code == 200 else None

        await wait_for(delivered)
        question = uuid.uuid4()
        await publish(
            bootstrap,
            new_event(
                CaseFollowUpAsked(
                    case_id=case_id,
                    question_id=question,
                    referral_id=referral_id,
                    question="Does the staging change the plan?",
                    asked_at=datetime.now(UTC),
                )
            ),
        )

        async def asked():
            view = (await api.get(path, headers=key)).json()
            return view["follow_up_questions"] or None

        await wait_for(asked)
        answer = f"{path}/follow-up-questions/{question}/answer"
        words = "See the attached note on staging."
        for document, status, where in (
            (patients.data.document_id, 422, "/document_ids/0"),  # the patient's document
            (elsewhere.data.document_id, 422, "/document_ids/0"),  # another referral's upload
        ):
            refused = await api.post(
                answer, json={"answer": words, "document_ids": [str(document)]}, headers=key
            )
            assert refused.status_code == status, refused.text
            assert refused.json()["errors"][0]["pointer"] == where
        unknown = await api.post(
            answer,
            json={
                "answer": words,
                "document_ids": [str(attachment.data.document_id), str(uuid.uuid4())],
            },
            headers=key,
        )
        assert unknown.status_code == 409, unknown.text
        assert unknown.json()["type"].endswith("opinion-not-stored")
        assert unknown.headers["Retry-After"] == "2"
        twice = await api.post(
            answer,
            json={"answer": words, "document_ids": [str(attachment.data.document_id)] * 2},
            headers=key,
        )
        assert twice.status_code == 422, twice.text
        # Nothing was answered by the refusals.
        view = (await api.get(path, headers=key)).json()
        assert view["follow_up_questions"][0]["answered_at"] is None
        done = await api.post(
            answer,
            json={"answer": words, "document_ids": [str(attachment.data.document_id)]},
            headers={**key, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert done.status_code == 200, done.text
        (shown,) = done.json()["follow_up_questions"]
        assert shown["document_ids"] == [str(attachment.data.document_id)]
        (event,) = await routing.wait_for(case_id, "referrals.referral.follow_up_answered.v1")
        assert event["data"]["document_ids"] == [str(attachment.data.document_id)]
        assert event["data"]["answer"] == words
