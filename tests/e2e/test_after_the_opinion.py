"""After the opinion, on the real platform through the public APIs only: the opinion's outcome
reaches the patient in structured fields and plain words, and the patient asks follow-up
questions that the center answers, in words and with a document it uploads (issue 21, §1 and
§5).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from devstack.demo import Journey, status_is
from devstack.information_demo import REVIEWED_OUTCOME, actors, collect_emails, open_and_submit

from .test_information_loop import TIMEOUT, of_type, wait_triggers

pytestmark = pytest.mark.e2e


def _answer_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, f"Staging note {time.time_ns()}: cT2N1M0; tests in this order.")
    return bytes(pdf.output())


async def _upload_for_question(desk: Any, center: str, path: str, content: bytes) -> str:
    """The center's upload for the question, once records has heard of the question (it
    learns of it from intake's event, as partners does, each at its own pace)."""
    deadline = time.monotonic() + 60
    while True:
        stored = await desk.records.post(
            path,
            files={"file": ("staging-note.pdf", content, "application/pdf")},
            headers={"X-Api-Key": desk.keys[center]},
        )
        if stored.status_code == 201:
            return str(stored.json()["id"])
        assert stored.status_code == 404 and time.monotonic() < deadline, stored.text
        await asyncio.sleep(0.5)


async def test_the_patient_asks_follow_up_questions_and_the_center_answers(
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
        await desk.accept(center, referral_id)
        path = f"/v1/cases/{case_id}/follow-up-questions"
        early = await front.intake.post(path, json={"question": "Too early?"}, headers=front.auth)
        assert early.status_code == 409 and early.json()["reason"] == "no-opinion"
        await desk.deliver_opinion(center, referral_id)
        await watcher.wait_for(status_is("opinion_delivered"), TIMEOUT, "the opinion")
        view = await front.read_case()
        assert view["opinion_outcome"]["treatment"] == "alternative_proposed"
        assert view["follow_up_questions_left"] == 3

        bad = await front.intake.post(path, json={"question": "  "}, headers=front.auth)
        assert bad.status_code == 422
        questions = [
            "Can the trial you mention be joined from Ukraine?",
            "Should the in situ hybridisation be done before the trial?",
            "Is radiotherapy still needed?",
        ]
        for question in questions:
            asked = await front.intake.post(
                path,
                json={"question": question},
                headers={**front.auth, "Idempotency-Key": f"q-{case_id}-{question[:10]}"},
            )
            assert asked.status_code == 201, asked.text
        assert asked.json()["follow_up_questions_left"] == 0
        fourth = await front.intake.post(path, json={"question": "One more?"}, headers=front.auth)
        assert fourth.status_code == 409 and fourth.json()["reason"] == "no-questions-left"

        # The center is told on its inbox, without the patient's words, and reads them by API.
        seen = await desk.wait(
            center,
            referral_id,
            lambda v: len(v["follow_up_questions"]) == 3,
            TIMEOUT,
            "the questions at the center",
        )
        assert [q["question"] for q in seen["follow_up_questions"]] == questions
        first = seen["follow_up_questions"][0]
        answer_path = (
            f"/v1/partner/referrals/{referral_id}/follow-up-questions/{first['id']}/answer"
        )
        other = next(code for code in desk.keys if code != center)
        foreign = await desk.partners.post(
            answer_path,
            json={"answer": "Not mine to answer."},
            headers={"X-Api-Key": desk.keys[other]},
        )
        assert foreign.status_code == 404
        answer = "Yes: the trial has a site in Warsaw; your oncologist can refer you."
        done = await desk.call(center, desk.partners, "POST", answer_path, json={"answer": answer})
        assert done["follow_up_questions"][0]["answer"] == answer
        again = await desk.partners.post(
            answer_path, json={"answer": "Again"}, headers={"X-Api-Key": desk.keys[center]}
        )
        assert again.status_code == 409

        view = await front.read_case()
        deadline = time.monotonic() + 60
        while view["follow_up_questions"][0]["answer"] != answer:
            assert time.monotonic() < deadline, "intake never got the answer"
            await asyncio.sleep(0.3)
            view = await front.read_case()
        await wait_triggers(watcher, journey, Counter({"follow_up_answered": 1}))

        # The second question is answered with a document the center uploads to records for it.
        second = seen["follow_up_questions"][1]
        upload_path = f"/v1/referrals/{referral_id}/follow-up-questions/{second['id']}/documents"
        content = _answer_pdf()
        intruder = await desk.records.post(
            upload_path,
            files={"file": ("note.pdf", content, "application/pdf")},
            headers={"X-Api-Key": desk.keys[other]},
        )
        assert intruder.status_code == 404  # not the center that gave the opinion
        document = await _upload_for_question(desk, center, upload_path, content)
        patients = next(d for d in view["documents"] if d["kind"] == "pathology_report")
        second_path = (
            f"/v1/partner/referrals/{referral_id}/follow-up-questions/{second['id']}/answer"
        )
        attach_patients = await desk.partners.post(
            second_path,
            json={"answer": "See the note.", "document_ids": [patients["document_id"]]},
            headers={"X-Api-Key": desk.keys[center]},
        )
        assert attach_patients.status_code == 422  # the patient's document is not the center's
        with_document = "The attached note sets out the staging and the order of the tests."
        answered = await desk.call(
            center,
            desk.partners,
            "POST",
            second_path,
            json={"answer": with_document, "document_ids": [document]},
        )
        assert answered["follow_up_questions"][1]["document_ids"] == [document]
        deadline = time.monotonic() + 60
        while view["follow_up_questions"][1]["document_ids"] != [document]:
            assert time.monotonic() < deadline, "intake never got the answer's document"
            await asyncio.sleep(0.3)
            view = await front.read_case()
        assert view["follow_up_questions"][1]["answer"] == with_document
        # The patient downloads it from records with the case token.
        link = await front.records.post(
            f"/v1/cases/{case_id}/documents/{document}/link", headers=front.auth
        )
        assert link.status_code == 200, link.text
        downloaded = await desk.downloads.get(link.json()["url"])
        assert downloaded.status_code == 200 and downloaded.content == content
        await wait_triggers(watcher, journey, Counter({"follow_up_answered": 2}))
        fhir = await front.fhir()
    await collect_emails(journey, stack.mail_dir, began, 4, timeout=30)
    answered_mails = [e for e in journey.emails if "додаткове запитання" in e.subject]
    assert len(answered_mails) == 2, [e.subject for e in journey.emails]
    attached = [e for e in answered_mails if "Додані документи: 1" in e.body]
    assert len(attached) == 1  # the e-mail of the answer with the document says so
    inbox = [e for e in journey.events if "partner-inbox" in e.topic]
    asked_events = [e for e in inbox if e.type == "referrals.referral.follow_up_asked.v1"]
    assert len(asked_events) == 3
    assert not any(q in json.dumps([e.data for e in inbox]) for q in questions)
    answered_events = of_type(journey, "referral.follow_up_answered")
    assert [e.data["document_ids"] for e in answered_events] == [[], [document]]
    comms = [
        e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Communication"
    ]
    replies = [c for c in comms if c.get("inResponseTo")]
    assert len(comms) == 5 and len(replies) == 2
    assert replies[0]["payload"] == [{"contentString": answer}]
    assert replies[1]["payload"] == [
        {"contentString": with_document},
        {"contentReference": {"reference": f"urn:uuid:{document}", "type": "DocumentReference"}},
    ]
    references = {e["fullUrl"] for e in fhir["entry"]}
    assert f"urn:uuid:{document}" in references  # the DocumentReference is in the bundle
    # The opinion's outcome and the answer are told by e-mail in words, never the center's text.
    assert not any(answer in e.body for e in journey.emails)
    assert REVIEWED_OUTCOME["additional_tests"][0] not in json.dumps(
        [e.body for e in journey.emails]
    )
