"""The patient's side of the information loop over real Kafka and PostgreSQL: a center's request
puts the case on hold with what, why and by when; every wrong answer is refused with a problem
and changes nothing; the right one goes back to the center as `case.information_provided` and
the case returns to the state it was asked in; a shipment is confirmed; an unanswered request
expires."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from referrals_common.contracts import (
    DocumentTranslationRequired,
    ExpiryReason,
    ReferralExpired,
    ReferralInfoRequested,
    ReferralRequested,
    ReferralShipmentReceived,
    RequestedItem,
    new_event,
)

from ..conftest import wait_for
from .conftest import open_case
from .test_lifecycle_over_kafka import accepted, case_events, intake_running, publish_twice, stored

pytestmark = pytest.mark.integration

CENTER = "charite-berlin"


def requested(case_id, referral_id):
    return new_event(
        ReferralRequested(
            case_id=case_id,
            referral_id=referral_id,
            center_code=CENTER,
            center_country="DE",
            attempt=1,
            answer_due_at=datetime.now(UTC) + timedelta(days=3),
            rationale="Breast cancer board.",
        )
    )


def asks(case_id, referral_id, request_id, *, resumes_as="offered"):
    return new_event(
        ReferralInfoRequested(
            case_id=case_id,
            referral_id=referral_id,
            center_code=CENTER,
            message="The board wants the HER2 status re-tested.",
            request_id=request_id,
            items=[
                RequestedItem(kind="pathology_report", detail="The HER2 IHC report"),
                RequestedItem(kind="family_history", detail="Cancers in first-degree relatives"),
            ],
            due_at=datetime.now(UTC) + timedelta(days=10),
            resumes_as=resumes_as,
        )
    )


async def referred_case(api, api_key, runtime, **case):
    """A case referred to a center (its documents accepted, the referral requested)."""
    bootstrap = runtime.settings.kafka.bootstrap_servers
    raw_id, headers = await open_case(api, api_key, **case)
    case_id = uuid.UUID(raw_id)
    doc, doc_stored = stored(case_id, "pathology_report")
    await publish_twice(bootstrap, doc_stored)

    async def known():
        return len((await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["documents"])

    await wait_for(known)
    for kind in ("processing", "cross_border"):
        await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    await publish_twice(bootstrap, accepted(case_id, doc, "en"))
    await wait_for(lambda: status_is(api, case_id, headers, "ready"))
    referral_id = uuid.uuid4()
    await publish_twice(bootstrap, requested(case_id, referral_id))
    await wait_for(lambda: status_is(api, case_id, headers, "referred"))
    return case_id, headers, referral_id


async def status_is(api, case_id, headers, wanted):
    return (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["status"] == wanted


async def test_the_patient_sees_the_request_and_only_a_valid_answer_goes_to_the_center(
    api, api_key, runtime
):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    async with intake_running(runtime):
        case_id, headers, referral_id = await referred_case(api, api_key, runtime)
        request_id = uuid.uuid4()
        await publish_twice(bootstrap, asks(case_id, referral_id, request_id))
        await wait_for(lambda: status_is(api, case_id, headers, "information_requested"))
        view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
        (request,) = view["information_requests"]  # the event came twice: one request
        assert request["id"] == str(request_id) and request["status"] == "open"
        assert request["reason"] == "The board wants the HER2 status re-tested."
        assert [i["kind"] for i in request["items"]] == ["pathology_report", "family_history"]
        assert request["due_at"]
        # The case is in Ukrainian; the center's own words stay as it wrote them.
        assert view["still_missing"] == [
            "хвороби у вашій родині (сімейний анамнез): Cancers in first-degree relatives"
        ]
        assert "надішліть усе центру" in view["next_step"]
        timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
        assert "просить додаткову інформацію" in timeline[-1]["reason"]
        assert "HER2 IHC report" in timeline[-1]["reason"]
        assert timeline[-1]["next_step_code"] == "answer_request"

        answer_path = f"/v1/cases/{case_id}/information-requests/{request_id}/answer"

        async def refused(body, status, kind, path=answer_path):
            r = await api.post(path, json=body, headers=headers)
            assert r.status_code == status, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"].endswith(kind), r.json()
            now = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
            assert now["status"] == "information_requested"
            assert now["information_requests"][0]["status"] == "open"
            return r

        await refused(
            {"answer": "x"},
            404,
            "not-found",
            path=f"/v1/cases/{case_id}/information-requests/{uuid.uuid4()}/answer",
        )
        await refused({}, 422, "empty-answer")
        unknown = await refused({"document_ids": [str(uuid.uuid4())]}, 422, "answer-invalid")
        assert unknown.json()["errors"][0]["pointer"] == "/document_ids/0"
        await refused({"answer": "a\x00b"}, 422, "validation-failed")
        await refused(
            {"shipments": [{"material": "slides", "carrier": "DHL", "tracking_number": "!"}]},
            422,
            "validation-failed",
        )

        # A document still being checked: not yet; one in the wrong language: replace it.
        report, report_stored = stored(case_id, "pathology_report")
        await publish_twice(bootstrap, report_stored)

        async def listed():
            docs = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["documents"]
            return len(docs) == 2

        await wait_for(listed)
        pending = await refused({"answer": "Here it is."}, 409, "documents-being-checked")
        assert pending.headers["retry-after"]
        assert pending.json()["documents"] == [str(report)]
        await publish_twice(
            bootstrap,
            new_event(
                DocumentTranslationRequired(
                    case_id=case_id,
                    document_id=report,
                    detected_language="uk",
                    acceptable_languages=["en", "de"],
                    confidence=0.99,
                )
            ),
        )

        async def checked(check):
            docs = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["documents"]
            return any(d["document_id"] == str(report) and d["check"] == check for d in docs)

        await wait_for(lambda: checked("translation_required"))
        await refused({"document_ids": [str(report)]}, 409, "documents-not-accepted")
        await publish_twice(bootstrap, accepted(case_id, report, "en"))  # a re-check, say
        await wait_for(lambda: checked("accepted"))

        # The checklist: what the center asked of it is no longer missing.
        put = await api.put(
            f"/v1/cases/{case_id}/preparation",
            json={"family_history": "mother: breast cancer at 52"},
            headers=headers,
        )
        assert put.status_code == 200, put.text
        assert put.json()["still_missing"] == []

        body = {
            "answer": "The block is at the regional centre; slides sent today.",
            "shipments": [
                {
                    "material": "slides",
                    "carrier": "Nova Poshta",
                    "tracking_number": "20450000000000",
                    "sent_on": datetime.now(UTC).date().isoformat(),
                }
            ],
        }
        key = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        sent = await api.post(answer_path, json=body, headers=key)
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "referred"  # back to the offer the center holds
        (answered,) = sent.json()["information_requests"]
        assert answered["status"] == "answered"
        assert answered["document_ids"] == [str(report)]  # added since the request
        shipment_id = answered["shipments"][0]["shipment_id"]
        again = await api.post(answer_path, json=body, headers=key)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        twice = await api.post(answer_path, json=body, headers=headers)
        assert twice.status_code == 409 and twice.json()["request_status"] == "answered"

        async def provided():
            events = await case_events(bootstrap, case_id)
            found = [e for e in events if e["type"].endswith("information_provided.v1")]
            return found or None

        (event,) = await wait_for(provided)
        data = event["data"]
        assert data["request_id"] == str(request_id)
        assert data["referral_id"] == str(referral_id)
        assert data["new_document_ids"] == [str(report)]
        assert len(data["document_ids"]) == 2
        assert data["preparation"]["family_history"] == "mother: breast cancer at 52"
        assert data["shipments"][0]["tracking_number"] == "20450000000000"

        await publish_twice(
            bootstrap,
            new_event(
                ReferralShipmentReceived(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    request_id=request_id,
                    shipment_id=uuid.UUID(shipment_id),
                    received_at=datetime.now(UTC),
                )
            ),
        )

        async def received():
            view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
            return view["information_requests"][0]["shipments"][0]["received_at"]

        await wait_for(received)
        fhir = (await api.get(f"/v1/cases/{case_id}/fhir", headers=headers)).json()
        kinds = [e["resource"]["resourceType"] for e in fhir["entry"]]
        assert "CommunicationRequest" in kinds and "Communication" in kinds


async def test_an_unanswered_request_expires_and_the_case_goes_on(api, api_key, runtime):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    async with intake_running(runtime):
        case_id, headers, referral_id = await referred_case(api, api_key, runtime)
        request_id = uuid.uuid4()
        await publish_twice(bootstrap, asks(case_id, referral_id, request_id))
        await wait_for(lambda: status_is(api, case_id, headers, "information_requested"))
        await publish_twice(
            bootstrap,
            new_event(
                ReferralExpired(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    reason=ExpiryReason.INFORMATION_NOT_PROVIDED,
                    request_id=request_id,
                )
            ),
        )
        await wait_for(lambda: status_is(api, case_id, headers, "referred"))
        view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
        assert view["information_requests"][0]["status"] == "expired"
        assert view["still_missing"] == []
        late = await api.post(
            f"/v1/cases/{case_id}/information-requests/{request_id}/answer",
            json={"answer": "Too late?"},
            headers=headers,
        )
        assert late.status_code == 409, late.text
        assert late.json()["request_status"] == "expired"
        timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
        assert timeline[-1]["reason_code"] == "information_not_provided"


async def test_a_checklist_request_is_answered_by_completing_the_checklist(api, api_key, runtime):
    """A request for the family history only: completing it and sending is an answer; another
    case's token cannot replay this answer's Idempotency-Key, nor answer this case's request."""
    bootstrap = runtime.settings.kafka.bootstrap_servers
    async with intake_running(runtime):
        case_id, headers, referral_id = await referred_case(api, api_key, runtime)
        other_id, other_headers, _ = await referred_case(api, api_key, runtime)
        request_id = uuid.uuid4()
        await publish_twice(
            bootstrap,
            new_event(
                ReferralInfoRequested(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    message="Before we accept: any drug allergies?",
                    request_id=request_id,
                    items=[RequestedItem(kind="allergies", detail="Any drug allergies")],
                    due_at=datetime.now(UTC) + timedelta(days=5),
                    resumes_as="offered",
                )
            ),
        )
        await wait_for(lambda: status_is(api, case_id, headers, "information_requested"))
        path = f"/v1/cases/{case_id}/information-requests/{request_id}/answer"
        empty = await api.post(path, json={}, headers=headers)
        assert empty.status_code == 422 and empty.json()["type"].endswith("empty-answer")
        put = await api.put(
            f"/v1/cases/{case_id}/preparation", json={"allergies": ["penicillin"]}, headers=headers
        )
        assert put.status_code == 200 and put.json()["still_missing"] == []
        key = str(uuid.uuid4())
        sent = await api.post(path, json={}, headers={**headers, "Idempotency-Key": key})
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "referred"  # asked before the center accepted
        other_path = f"/v1/cases/{other_id}/information-requests/{request_id}/answer"
        replay = await api.post(
            other_path, json={}, headers={**other_headers, "Idempotency-Key": key}
        )
        assert replay.status_code == 422, replay.text
        assert replay.json()["errors"][0]["code"] == "key_reused"
        foreign = await api.post(other_path, json={"answer": "mine"}, headers=other_headers)
        assert foreign.status_code == 404, foreign.text


async def test_follow_up_questions_after_the_opinion(api, api_key, runtime):
    from referrals_common.contracts import (
        DocumentStored,
        ReferralAccepted,
        ReferralFollowUpAnswered,
        ReferralOpinionDelivered,
    )

    bootstrap = runtime.settings.kafka.bootstrap_servers
    async with intake_running(runtime):
        case_id, headers, referral_id = await referred_case(api, api_key, runtime)
        path = f"/v1/cases/{case_id}/follow-up-questions"
        early = await api.post(path, json={"question": "Already?"}, headers=headers)
        assert early.status_code == 409 and early.json()["reason"] == "no-opinion"
        await publish_twice(
            bootstrap,
            new_event(
                ReferralAccepted(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    expected_opinion_at=datetime.now(UTC) + timedelta(days=5),
                )
            ),
            new_event(
                ReferralOpinionDelivered(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    opinion_document_id=uuid.uuid4(),
                )
            ),
        )
        await wait_for(lambda: status_is(api, case_id, headers, "opinion_delivered"))
        asked = await api.post(path, json={"question": "Can I join the trial?"}, headers=headers)
        assert asked.status_code == 201, asked.text
        (question,) = asked.json()["follow_up_questions"]
        assert question["question"] == "Can I join the trial?"
        assert asked.json()["follow_up_questions_left"] == 2
        for text in ("Second?", "Third?"):
            assert (await api.post(path, json={"question": text}, headers=headers)).is_success
        fourth = await api.post(path, json={"question": "Fourth?"}, headers=headers)
        assert fourth.status_code == 409 and fourth.json()["reason"] == "no-questions-left"
        events = await wait_for(lambda: _follow_ups_published(bootstrap, case_id, 3), timeout=30)
        assert {e["data"]["referral_id"] for e in events} == {str(referral_id)}
        await publish_twice(
            bootstrap,
            new_event(
                ReferralFollowUpAnswered(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    question_id=uuid.UUID(question["id"]),
                    answer="Yes, at the Warsaw site.",
                    answered_at=datetime.now(UTC),
                )
            ),
        )

        async def answered():
            view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
            return view["follow_up_questions"][0]["answer"]

        assert await wait_for(answered) == "Yes, at the Warsaw site."

        # An answer with a document the center uploaded to records (kind opinion, for this
        # referral): kept with the question, in the timeline, and in the FHIR export as a
        # reference to the document's DocumentReference.
        second = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()[
            "follow_up_questions"
        ][1]
        attachment = uuid.uuid4()
        attachment_stored = new_event(
            DocumentStored(
                case_id=case_id,
                document_id=attachment,
                kind="opinion",
                media_type="application/pdf",
                size_bytes=20_480,
                sha256="cd" * 32,
                object_key=f"cases/{case_id}/{attachment}",
                stored_at=datetime.now(UTC),
                referral_id=referral_id,
            )
        )
        await publish_twice(
            bootstrap,
            attachment_stored,
            new_event(
                ReferralFollowUpAnswered(
                    case_id=case_id,
                    referral_id=referral_id,
                    center_code=CENTER,
                    question_id=uuid.UUID(second["id"]),
                    answer="The attached report explains the staging.",
                    answered_at=datetime.now(UTC),
                    document_ids=[attachment],
                )
            ),
        )

        async def with_document():
            view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
            return view["follow_up_questions"][1]["document_ids"] or None

        assert await wait_for(with_document) == [str(attachment)]
        view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
        assert view["follow_up_questions"][0]["document_ids"] == []  # words only
        bundle = (await api.get(f"/v1/cases/{case_id}/fhir", headers=headers)).json()
        answers = [
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Communication"
            and e["resource"]["category"][0]["text"] == "follow-up-answer"
        ]
        by_question = {a["inResponseTo"][0]["reference"]: a for a in answers}
        attached = by_question[f"urn:uuid:{second['id']}"]
        assert attached["payload"] == [
            {"contentString": "The attached report explains the staging."},
            {
                "contentReference": {
                    "reference": f"urn:uuid:{attachment}",
                    "type": "DocumentReference",
                }
            },
        ]
        assert f"urn:uuid:{attachment}" in {e["fullUrl"] for e in bundle["entry"]}
        words_only = by_question[f"urn:uuid:{question['id']}"]
        assert words_only["payload"] == [{"contentString": "Yes, at the Warsaw site."}]


async def test_the_policy_goes_sealed_to_partners_only_when_an_insurer_pays(api, api_key, runtime):
    """Issue 21 §4: once a center accepted, intake hands the policy to partners on the cases
    topic, sealed to partners' key for that referral alone; a self-paying patient's policy (or
    an insured case before acceptance) goes nowhere."""
    from referrals_common.contracts import ReferralAccepted
    from referrals_common.crypto import SealedBox

    from .conftest import PARTNERS_PRIVATE

    bootstrap = runtime.settings.kafka.bootstrap_servers
    insurance = {"provider": "Allianz Care", "policy_number": "AC-55-0193-7"}
    async with intake_running(runtime):
        insured, headers, referral_id = await referred_case(
            api,
            api_key,
            runtime,
            payer={"kind": "insurer", "insurer": "allianz-care"},
            insurance=insurance,
        )
        self_pay, self_pay_headers, self_pay_referral = await referred_case(
            api, api_key, runtime, payer={"kind": "self_pay"}, insurance=insurance
        )
        before = await case_events(bootstrap, insured)
        assert not [e for e in before if e["type"] == "referrals.case.policy_shared.v1"]
        for case_id, referral in ((insured, referral_id), (self_pay, self_pay_referral)):
            await publish_twice(
                bootstrap,
                new_event(
                    ReferralAccepted(
                        case_id=case_id,
                        referral_id=referral,
                        center_code=CENTER,
                        expected_opinion_at=datetime.now(UTC) + timedelta(days=5),
                    )
                ),
            )
        await wait_for(lambda: status_is(api, insured, headers, "accepted"))

        async def shared(case_id):
            events = await case_events(bootstrap, case_id)
            found = [e for e in events if e["type"] == "referrals.case.policy_shared.v1"]
            return found or None

        (event,) = await wait_for(lambda: shared(insured), timeout=30)
        assert event["data"]["referral_id"] == str(referral_id)
        assert "AC-55-0193-7" not in str(event) and "Allianz" not in str(event)
        box = SealedBox(private_key_b64=PARTNERS_PRIVATE)
        opened = box.open_json(event["data"]["sealed_policy"], bound_to=f"{insured}/{referral_id}")
        assert opened == {"insurer": "allianz-care", **insurance}
        with pytest.raises(Exception):  # noqa: B017, PT011 - bound to this case and referral
            box.open_json(event["data"]["sealed_policy"], bound_to=f"{insured}/{uuid.uuid4()}")
        await wait_for(lambda: status_is(api, self_pay, self_pay_headers, "accepted"))
        await asyncio.sleep(2)  # the relay's time: the case's status change is out by now
        assert await shared(self_pay) is None


async def _follow_ups_published(bootstrap, case_id, count):
    events = await case_events(bootstrap, case_id)
    found = [e for e in events if e["type"] == "referrals.case.follow_up_asked.v1"]
    return found if len(found) >= count else None


async def test_the_patient_chooses_one_of_the_proposed_centers(api, api_key, runtime):
    from referrals_common.contracts import CentersProposed, ProposedCenter

    bootstrap = runtime.settings.kafka.bootstrap_servers
    async with intake_running(runtime):
        payer = {"kind": "insurer", "insurer": "allianz-care"}
        raw_id, headers = await open_case(api, api_key, patient_chooses_center=True, payer=payer)
        case_id = uuid.UUID(raw_id)
        # Who pays (issue 21 §4): an insurer is named exactly when an insurer pays.
        bad = await api.patch(
            f"/v1/cases/{case_id}", json={"payer": {"kind": "insurer"}}, headers=headers
        )
        assert bad.status_code == 422
        assert (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["payer"] == payer
        doc, doc_stored = stored(case_id, "pathology_report")
        await publish_twice(bootstrap, doc_stored)

        async def known():
            return (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["documents"]

        await wait_for(known)
        for kind in ("processing", "cross_border"):
            await api.put(
                f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
            )
        assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
        await publish_twice(bootstrap, accepted(case_id, doc, "en"))

        async def ready_event():
            events = await case_events(bootstrap, case_id)
            found = [e for e in events if e["type"].endswith("ready_for_referral.v1")]
            return found or None

        (ready,) = await wait_for(ready_event)
        assert ready["data"]["patient_chooses"] is True
        assert ready["data"]["payer"] == payer  # for routing; never the policy number
        path = f"/v1/cases/{case_id}/center-choice"
        early = await api.post(path, json={"center_code": "charite-berlin"}, headers=headers)
        assert early.status_code == 409 and early.json()["type"].endswith("choice-closed")
        proposals = [
            ProposedCenter(
                rank=i + 1,
                center_code=code,
                center_name=name,
                center_country="DE",
                turnaround_days=7 + i,
                why="ranked",
            )
            for i, (code, name) in enumerate(
                [("charite-berlin", "Charité Berlin"), ("lmu-munich", "LMU Munich")]
            )
        ]
        await publish_twice(
            bootstrap,
            new_event(
                CentersProposed(
                    case_id=case_id,
                    proposals=proposals,
                    choose_by=datetime.now(UTC) + timedelta(days=3),
                )
            ),
        )
        await wait_for(lambda: status_is(api, case_id, headers, "choosing_center"))
        view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
        assert [p["center_name"] for p in view["center_proposal"]["proposals"]] == [
            "Charité Berlin",
            "LMU Munich",
        ]
        assert "Оберіть один із запропонованих центрів" in view["next_step"]
        assert [p["center_country_name"] for p in view["center_proposal"]["proposals"]] == [
            "Німеччина",
            "Німеччина",
        ]
        assert [p["explanation"] for p in view["center_proposal"]["proposals"]] == [
            ["Країна центру: Німеччина.", "Центр зазвичай надає висновок за 7 днів."],
            ["Країна центру: Німеччина.", "Центр зазвичай надає висновок за 8 днів."],
        ]
        wrong = await api.post(path, json={"center_code": "nio-warszawa"}, headers=headers)
        assert wrong.status_code == 422 and wrong.json()["errors"][0]["pointer"] == "/center_code"
        chose = await api.post(path, json={"center_code": "lmu-munich"}, headers=headers)
        assert chose.status_code == 200, chose.text
        assert chose.json()["center_proposal"]["chosen"] == "lmu-munich"
        twice = await api.post(path, json={"center_code": "charite-berlin"}, headers=headers)
        assert twice.status_code == 409

        async def chosen_event():
            events = await case_events(bootstrap, case_id)
            found = [e for e in events if e["type"].endswith("center_chosen.v1")]
            return found or None

        (event,) = await wait_for(chosen_event)
        assert event["data"]["center_code"] == "lmu-munich"
