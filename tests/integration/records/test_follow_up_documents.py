"""A center answers a follow-up question with a document (issue 21 §1): after its opinion, the
center that gave it uploads documents for an unanswered question of its referral, and nobody
else does; the patient reads them with the case token. Real PostgreSQL and MinIO."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from referrals_common.contracts import CaseStatus

from .conftest import case_headers, center_key, pdf_bytes, upload

pytestmark = pytest.mark.integration

BERLIN, WARSAW = "charite-berlin", "nio-warsaw"


async def _apply(runtime, use_case, *args) -> None:
    async with runtime.db.unit_of_work() as uow:
        await use_case(uow, *args)
        await uow.commit()


async def _opinion_delivered(api, runtime, case_id, referral_id):
    """Berlin was offered the case, accepted, uploaded and delivered its opinion."""
    records = runtime.records
    await _apply(runtime, records.on_referral_offered, referral_id, case_id, BERLIN)
    await _apply(runtime, records.on_referral_accepted, referral_id, case_id, BERLIN)
    key = {"X-Api-Key": await center_key(runtime, BERLIN)}
    opinion = await api.post(
        f"/v1/referrals/{referral_id}/opinion",
        files={"file": ("opinion.pdf", pdf_bytes(note="opinion"), "application/pdf")},
        headers=key,
    )
    assert opinion.status_code == 201, opinion.text
    await _apply(runtime, records.on_referral_closed, referral_id, case_id, BERLIN, "completed")
    await _apply(runtime, records.on_case_status, case_id, CaseStatus.OPINION_DELIVERED)
    return key, opinion.json()["id"]


def _file(note: str) -> dict:
    return {"file": ("answer.pdf", pdf_bytes(note=note), "application/pdf")}


async def test_the_center_that_gave_the_opinion_uploads_a_document_for_an_open_question(
    api, runtime
):
    case_id, referral_id, question = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    patients = (await upload(api, case_id, pdf_bytes())).json()
    key, opinion = await _opinion_delivered(api, runtime, case_id, referral_id)
    path = f"/v1/referrals/{referral_id}/follow-up-questions/{question}/documents"

    # Before records heard of the question: no upload (nothing is kept).
    early = await api.post(path, files=_file("early"), headers=key)
    assert early.status_code == 404, early.text
    # The case is closed to the patient's uploads and the referral completed, as before.
    closed = await api.post(f"/v1/referrals/{referral_id}/opinion", files=_file("x"), headers=key)
    assert closed.status_code == 404

    asked_at = datetime.now(UTC)
    await _apply(
        runtime, runtime.records.on_follow_up_asked, question, referral_id, case_id, asked_at
    )
    stored = await api.post(path, files=_file("staging explained"), headers=key)
    assert stored.status_code == 201, stored.text
    document = stored.json()
    assert document["kind"] == "opinion"  # part of the center's opinion
    again = await api.post(path, files=_file("staging explained"), headers=key)
    assert again.status_code == 200 and again.json()["id"] == document["id"]

    # The patient lists and downloads it with the case token.
    patient = case_headers(case_id)
    listed = await api.get(f"/v1/cases/{case_id}/documents", headers=patient)
    assert [d["id"] for d in listed.json()] == [patients["id"], opinion, document["id"]]
    link = await api.post(f"/v1/cases/{case_id}/documents/{document['id']}/link", headers=patient)
    assert link.status_code == 200, link.text
    assert (await api.get(link.json()["url"])).status_code == 200

    # Answered: nothing more for this question.
    await _apply(runtime, runtime.records.on_follow_up_answered, question)
    late = await api.post(path, files=_file("late"), headers=key)
    assert late.status_code == 404, late.text


async def test_no_other_center_and_no_other_referral_uploads_for_the_question(api, runtime):
    case_id, referral_id, question = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    patients_file = pdf_bytes(note="the patient's own report")
    await upload(api, case_id, patients_file)
    key, _ = await _opinion_delivered(api, runtime, case_id, referral_id)
    asked_at = datetime.now(UTC)
    await _apply(
        runtime, runtime.records.on_follow_up_asked, question, referral_id, case_id, asked_at
    )
    # Warsaw declined an earlier offer of the same case: its referral grants nothing.
    declined = uuid.uuid4()
    await _apply(runtime, runtime.records.on_referral_offered, declined, case_id, WARSAW)
    await _apply(runtime, runtime.records.on_referral_closed, declined, case_id, WARSAW, "declined")
    warsaw = {"X-Api-Key": await center_key(runtime, WARSAW)}
    for n, (referral, headers) in enumerate(
        ((referral_id, warsaw), (declined, warsaw), (declined, key))
    ):
        path = f"/v1/referrals/{referral}/follow-up-questions/{question}/documents"
        refused = await api.post(path, files=_file(f"refused {n}"), headers=headers)
        assert refused.status_code == 404, refused.text
    # The question is Berlin's on this referral only; another question id is unknown.
    other = f"/v1/referrals/{referral_id}/follow-up-questions/{uuid.uuid4()}/documents"
    assert (await api.post(other, files=_file("other"), headers=key)).status_code == 404
    # The patient's document cannot be adopted as the center's answer: the same bytes, 409.
    path = f"/v1/referrals/{referral_id}/follow-up-questions/{question}/documents"
    adopted = await api.post(
        path, files={"file": ("copy.pdf", patients_file, "application/pdf")}, headers=key
    )
    assert adopted.status_code == 409, adopted.text
    # Withdrawn: the case takes nothing more, even for an open question.
    await _apply(runtime, runtime.records.on_case_status, case_id, CaseStatus.WITHDRAWN)
    withdrawn = await api.post(path, files=_file("after withdrawal"), headers=key)
    assert withdrawn.status_code == 409, withdrawn.text
    listed = await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))
    assert [d["kind"] for d in listed.json()] == ["discharge_summary", "opinion"]


async def test_records_learns_the_question_and_its_answer_from_the_events(api, runtime):
    """The grant comes from intake's `case.follow_up_asked` and ends with partners'
    `referral.follow_up_answered`, read by records' own consumer from Kafka."""
    from referrals_common.contracts import CaseFollowUpAsked, ReferralFollowUpAnswered, new_event

    from ..conftest import publish, wait_for
    from .test_center_before_grant import records_consumer

    case_id, referral_id, question = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await upload(api, case_id, pdf_bytes())
    key, _ = await _opinion_delivered(api, runtime, case_id, referral_id)
    bootstrap = runtime.settings.kafka.bootstrap_servers

    async def open_question():
        async with runtime.db.unit_of_work() as uow:
            return await runtime.records.open_question(uow, referral_id, question)

    async with records_consumer(runtime):
        await publish(
            bootstrap,
            new_event(
                CaseFollowUpAsked(
                    case_id=case_id,
                    question_id=question,
                    referral_id=referral_id,
                    question="Which dose?",
                    asked_at=datetime.now(UTC),
                )
            ),
            times=2,
        )
        await wait_for(open_question, timeout=60)
        path = f"/v1/referrals/{referral_id}/follow-up-questions/{question}/documents"
        stored = await api.post(path, files=_file("dose"), headers=key)
        assert stored.status_code == 201, stored.text
        await publish(
            bootstrap,
            new_event(
                ReferralFollowUpAnswered(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=BERLIN,
                    question_id=question,
                    answer="Two a day.",
                    answered_at=datetime.now(UTC),
                    document_ids=[uuid.UUID(stored.json()["id"])],
                )
            ),
        )

        async def closed():
            return await open_question() is None

        await wait_for(closed, timeout=60)
        late = await api.post(path, files=_file("late"), headers=key)
        assert late.status_code == 404, late.text
