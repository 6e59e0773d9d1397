"""Routing end to end over real Kafka: offer on the center's own inbox topic, decline and expiry
re-route to the next center (never the same twice), no center left is `case.unroutable`, the
opinion closes the loop, and a center sees nothing of another center's referral."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from referrals_common.contracts import ReferralOffered, topics
from referrals_partners.models import Referral, RoutingCase

from ..conftest import publish
from .conftest import (
    Inbox,
    Topic,
    api_client,
    case_headers,
    document_stored,
    key_for,
    partners_running,
    ready,
)

pytestmark = pytest.mark.integration

BERLIN, MUNICH, WARSAW = "test-breast-berlin", "test-oncology-munich", "test-oncology-warsaw"


async def open_case(rt, *, documents: int = 2, **ready_options):
    case_id = uuid.uuid4()
    stored = [document_stored(case_id) for _ in range(documents)]
    bootstrap = rt.settings.kafka.bootstrap_servers
    await publish(bootstrap, *stored)
    await publish(bootstrap, ready(case_id, [s.data.document_id for s in stored], **ready_options))
    return case_id, stored


async def test_offer_reaches_the_center_inbox_and_a_decline_goes_to_the_next(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, stored = await open_case(rt)
        offer = await berlin.offer_for(case_id)
        data = ReferralOffered.model_validate(offer["data"])
        assert data.center_code == BERLIN  # 7-day turnaround beats Munich's 10
        assert {d.document_id for d in data.documents} == {s.data.document_id for s in stored}
        assert data.clinical.icd10 == "C50.9"
        assert "@" not in offer["data"].__repr__()  # no contact data in the offer
        requested = await routing.wait_for(case_id, "referrals.referral.requested.v1")
        assert requested[0]["data"]["attempt"] == 1
        assert "Test Breast Center Berlin" in requested[0]["data"]["rationale"]

        berlin_key = await key_for(rt, "center", BERLIN)
        response = await api.post(
            f"/v1/partner/referrals/{data.referral_id}/decline",
            json={"reason": "no_capacity", "detail": "Our board is full until next month."},
            headers={"X-Api-Key": berlin_key},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "declined"

        second = ReferralOffered.model_validate((await munich.offer_for(case_id))["data"])
        assert second.center_code == MUNICH
        assert second.referral_id != data.referral_id
        requests = await routing.wait_for(case_id, "referrals.referral.requested.v1", count=2)
        assert [r["data"]["attempt"] for r in requests] == [1, 2]
        await routing.wait_for(case_id, "referrals.referral.declined.v1")

        # Declining again changes nothing and says why.
        again = await api.post(
            f"/v1/partner/referrals/{data.referral_id}/decline",
            json={"reason": "no_capacity"},
            headers={"X-Api-Key": berlin_key},
        )
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["referral_status"] == "declined"

        # Munich declines too: Warsaw is not in Germany, so nobody is left.
        munich_key = await key_for(rt, "center", MUNICH)
        response = await api.post(
            f"/v1/partner/referrals/{second.referral_id}/decline",
            json={"reason": "outside_expertise"},
            headers={"X-Api-Key": munich_key},
        )
        assert response.status_code == 200
        unroutable = await routing.wait_for(case_id, "referrals.case.unroutable.v1")
        assert unroutable[0]["data"]["reason"] == "all_centers_declined"
        assert unroutable[0]["data"]["centers_tried"] == [BERLIN, MUNICH]

    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        offers = (
            (await uow.session.execute(select(Referral).where(Referral.case_id == case_id)))
            .scalars()
            .all()
        )
    assert case.status == "unroutable"
    assert sorted(r.center_code for r in offers) == [BERLIN, MUNICH]  # never the same twice


async def test_an_expired_deadline_re_routes_and_a_late_answer_is_refused(make_runtime):
    rt = await make_runtime(deadline_override_seconds=1.5)
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, _ = await open_case(rt)
        first = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        expired = await routing.wait_for(case_id, "referrals.referral.expired.v1")
        assert expired[0]["data"]["referral_id"] == str(first.referral_id)
        second = ReferralOffered.model_validate((await munich.offer_for(case_id))["data"])
        assert second.center_code == MUNICH

        late = await api.post(
            f"/v1/partner/referrals/{first.referral_id}/accept",
            json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()},
            headers={"X-Api-Key": await key_for(rt, "center", BERLIN)},
        )
        assert late.status_code == 409
        assert late.json()["referral_status"] == "expired"
        # Munich lets it expire as well: no German center is left.
        unroutable = await routing.wait_for(case_id, "referrals.case.unroutable.v1")
        assert unroutable[0]["data"]["centers_tried"] == [BERLIN, MUNICH]


async def test_no_eligible_center_is_unroutable_at_once(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with partners_running(rt), Topic(bootstrap, topics.ROUTING) as routing:
        # Documents in Turkish: none of the three centers reads Turkish.
        case_id, _ = await open_case(rt, countries=("DE", "PL"), languages=("tr",))
        unroutable = await routing.wait_for(case_id, "referrals.case.unroutable.v1")
        assert unroutable[0]["data"] == {
            "case_id": str(case_id),
            "reason": "no_eligible_center",
            "centers_tried": [],
            "opinion_round": None,  # the first opinion, not a further one
        }
    async with api_client(rt) as api:
        ops = {"X-Api-Key": await key_for(rt, "ops")}
        listed = await api.get("/v1/ops/cases", params={"status": "unroutable"}, headers=ops)
        assert str(case_id) in [c["case_id"] for c in listed.json()]
        routing_view = (await api.get(f"/v1/ops/cases/{case_id}/routing", headers=ops)).json()
        considered = routing_view["last_decision"]
        text = str(considered)
        assert "Turkish" in text  # every center was considered, with the reason it was not chosen
        for code in (BERLIN, MUNICH, WARSAW):
            assert code in text


async def test_accept_then_opinion_closes_the_loop(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id, _ = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        opinion_at = datetime.now(UTC) + timedelta(days=7)
        accepted = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": opinion_at.isoformat()},
            headers=key,
        )
        assert accepted.status_code == 200, accepted.text
        twice = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": opinion_at.isoformat()},
            headers=key,
        )
        assert twice.status_code == 409
        await routing.wait_for(case_id, "referrals.referral.accepted.v1")

        # The patient sees where the case went and why.
        why = await api.get(f"/v1/cases/{case_id}/routing", headers=case_headers(case_id))
        assert why.status_code == 200
        assert why.json()["center_name"] == "Test Breast Center Berlin"
        assert "C50" in why.json()["why"]
        other = await api.get(f"/v1/cases/{case_id}/routing", headers=case_headers(uuid.uuid4()))
        assert other.status_code == 404

        # Another referral's opinion (as if another center uploaded it): never deliverable.
        foreign = document_stored(case_id, kind="opinion", referral_id=uuid.uuid4())
        await publish(bootstrap, foreign)
        async with asyncio.timeout(20):
            while True:
                stolen = await api.post(
                    f"/v1/partner/referrals/{offer.referral_id}/opinion",
                    json={"document_id": str(foreign.data.document_id)},
                    headers=key,
                )
                if stolen.status_code != 409:  # 409 until partners has read the event
                    break
                await asyncio.sleep(0.2)
        assert stolen.status_code == 422, stolen.text
        assert stolen.json()["errors"][0]["code"] == "not_own_opinion"

        # The opinion: stored by records first (its event), then referenced here.
        opinion = document_stored(case_id, kind="opinion", referral_id=offer.referral_id)
        unknown = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/opinion",
            json={"document_id": str(opinion.data.document_id)},
            headers=key,
        )
        assert unknown.status_code == 409  # records has not announced it yet
        await publish(bootstrap, opinion)
        # An outcome that contradicts itself is refused, and nothing is delivered.
        body = {"document_id": str(opinion.data.document_id)}
        for wrong in (
            {"diagnosis": "changed", "stage": "confirmed", "treatment": "agreed"},  # no icd10
            {"diagnosis": "confirmed", "stage": "changed", "treatment": "agreed"},  # no stage
            {"diagnosis": "confirmed", "stage": "confirmed", "treatment": "maybe"},
        ):
            bad = await api.post(
                f"/v1/partner/referrals/{offer.referral_id}/opinion",
                json={**body, "outcome": wrong},
                headers=key,
            )
            assert bad.status_code == 422, bad.text
        outcome = {
            "diagnosis": "changed",
            "icd10": "C50.4",
            "stage": "confirmed",
            "treatment": "alternative_proposed",
            "additional_tests": ["BRCA1/2 germline testing"],
            "clinical_trials": False,
        }
        async with asyncio.timeout(20):
            while True:
                delivered = await api.post(
                    f"/v1/partner/referrals/{offer.referral_id}/opinion",
                    json={**body, "outcome": outcome},
                    headers=key,
                )
                if delivered.status_code != 409:
                    break
                await asyncio.sleep(0.2)
        assert delivered.status_code == 200, delivered.text
        assert delivered.json()["status"] == "completed"
        assert delivered.json()["outcome"]["icd10"] == "C50.4"
        done = await routing.wait_for(case_id, "referrals.referral.opinion_delivered.v1")
        assert done[0]["data"]["opinion_document_id"] == str(opinion.data.document_id)
        assert done[0]["data"]["outcome"]["treatment"] == "alternative_proposed"
        # The concordance figures count it, for this center and overall.
        ops = {"X-Api-Key": await key_for(rt, "ops")}
        figures = (await api.get("/v1/ops/concordance", headers=ops)).json()
        mine = next(f for f in figures if f["center_code"] == BERLIN)
        assert mine["opinions"] == mine["with_outcome"] == 1
        assert mine["diagnosis_changed_share"] == mine["plan_changed_share"] == 1.0
        assert figures[-1]["center_code"] is None and figures[-1]["opinions"] >= 1
        assert (await api.get("/v1/ops/concordance", headers=key)).status_code in (401, 403)


async def test_a_center_cannot_see_or_answer_another_centers_referral(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with partners_running(rt), api_client(rt) as api, Inbox(bootstrap, BERLIN) as berlin:
        case_id, _ = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        warsaw = {"X-Api-Key": await key_for(rt, "center", WARSAW)}
        path = f"/v1/partner/referrals/{offer.referral_id}"
        assert (await api.get(path, headers=warsaw)).status_code == 404
        refused = await api.post(f"{path}/decline", json={"reason": "other"}, headers=warsaw)
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await api.get("/v1/partner/referrals", headers=warsaw)).json() == []
        assert (await api.get(path)).status_code == 401
        ops_key = {"X-Api-Key": await key_for(rt, "ops")}
        assert (await api.get(path, headers=ops_key)).status_code == 401  # wrong kind of key
        mine = await api.get(path, headers={"X-Api-Key": await key_for(rt, "center", BERLIN)})
        assert mine.status_code == 200
        assert mine.json()["status"] == "offered"
    async with rt.db.unit_of_work() as uow:
        referral = await uow.session.get(Referral, offer.referral_id)
    assert referral.status == "offered"  # the refused decline changed nothing


async def test_webhook_gets_the_same_offer_signed_and_retried(make_runtime):
    """A center without Kafka consumers registers a webhook: the offer arrives by HTTPS POST,
    signed; the receiver's first answer is a 503, so the delivery is retried, then recorded."""
    import json

    import uvicorn

    from devstack.process import free_port
    from referrals_common.webhooks import EVENT_ID_HEADER, verify

    received: list[tuple[dict, dict]] = []
    answers = [503]

    async def receiver(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        received.append((headers, body))
        code = answers.pop(0) if answers else 204
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    # The local receiver is reachable only as an explicit allow-list entry (host and port).
    rt = await make_runtime(outbound_allowed_targets=[f"127.0.0.1:{port}"])
    bootstrap = rt.settings.kafka.bootstrap_servers
    try:
        async with partners_running(rt), api_client(rt) as api, Inbox(bootstrap, BERLIN) as inbox:
            key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
            for internal in (
                "https://169.254.169.254/latest/meta-data",  # a cloud metadata service
                "https://10.1.2.3:8443/offers",
                "https://[fd00::1]/offers",
                "https://kafka.internal/offers",
                f"http://127.0.0.1:{port + 1}/offers",  # the allow-listed host, another port
                f"http://localhost:{port}/offers",  # the allow-listed port, another name
            ):
                refused = await api.put("/v1/partner/webhook", json={"url": internal}, headers=key)
                assert refused.status_code == 422, (internal, refused.text)  # no SSRF
            made = await api.put(
                "/v1/partner/webhook", json={"url": f"http://127.0.0.1:{port}/offers"}, headers=key
            )
            assert made.status_code == 200, made.text
            secret = made.json()["secret"]
            case_id, _ = await open_case(rt)
            offer = await inbox.offer_for(case_id)
            async with asyncio.timeout(20):
                while len(received) < 2:
                    await asyncio.sleep(0.1)
            for headers, body in received:
                verify(
                    secret,
                    body,
                    headers["x-referrals-timestamp"],
                    headers["x-referrals-signature"],
                )
                assert headers[EVENT_ID_HEADER.lower()] == offer["id"]
                assert json.loads(body) == offer  # the same event as on the inbox topic
            async with asyncio.timeout(10):
                while True:
                    view = (await api.get("/v1/partner/webhook", headers=key)).json()
                    if view["deliveries"] and view["deliveries"][0]["status"] == "delivered":
                        break
                    await asyncio.sleep(0.1)
            delivery = view["deliveries"][0]
            assert delivery["attempts"] == 2
            assert delivery["last_status_code"] == 204
    finally:
        server.should_exit = True
        await serving


def soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


ASK = {
    "reason": "The tumour board wants the HER2 status re-tested on the original block.",
    "items": [
        {"kind": "pathology_review", "detail": "One paraffin block of the core biopsy"},
        {"kind": "pathology_report", "detail": "The HER2 immunohistochemistry report"},
    ],
}


def answered(case_id, request_id, referral_id, ids, new, **extra):
    from referrals_common.contracts import CaseInformationProvided, new_event

    return new_event(
        CaseInformationProvided(
            case_id=case_id,
            request_id=request_id,
            referral_id=referral_id,
            new_document_ids=new,
            document_ids=ids,
            **extra,
        )
    )


async def test_an_offer_on_hold_for_information_goes_back_to_the_same_center(make_runtime):
    """Asked before accepting: the offer waits, the answer offers it again to the same center
    with the new document and a new deadline (a `referral.resumed`, not a new attempt)."""
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        checklist = {"family_history": "mother: breast cancer at 52"}
        case_id, stored = await open_case(rt, preparation=checklist)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        asked = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/information-requests",
            json={**ASK, "due_at": soon(days=10)},
            headers=key,
        )
        assert asked.status_code == 200, asked.text
        assert asked.json()["status"] == "info_requested"
        assert asked.json()["preparation"] is None  # asking is not accepting
        (request,) = asked.json()["information_requests"]
        assert request["status"] == "open" and len(request["items"]) == 2
        info = await routing.wait_for(case_id, "referrals.referral.info_requested.v1")
        assert info[0]["data"]["request_id"] == request["id"]
        assert info[0]["data"]["resumes_as"] == "offered"
        assert [i["kind"] for i in info[0]["data"]["items"]] == [
            "pathology_review",
            "pathology_report",
        ]
        # Waiting: neither accepted nor asked again, but it may still decline.
        for action, body in (
            ("accept", {"expected_opinion_at": soon(days=5)}),
            ("information-requests", {**ASK, "due_at": soon(days=10)}),
        ):
            refused = await api.post(
                f"/v1/partner/referrals/{offer.referral_id}/{action}", json=body, headers=key
            )
            assert refused.status_code == 409, refused.text
            assert refused.json()["referral_status"] == "info_requested"

        # The patient uploads the report and sends the answer (intake's event).
        extra = document_stored(case_id)
        await publish(bootstrap, extra)
        ids = [s.data.document_id for s in stored] + [extra.data.document_id]
        await publish(
            bootstrap,
            answered(
                case_id, uuid.UUID(request["id"]), offer.referral_id, ids, [extra.data.document_id]
            ),
        )
        resumed = await routing.wait_for(case_id, "referrals.referral.resumed.v1")
        assert resumed[0]["data"]["status"] == "offered"
        assert resumed[0]["data"]["answer_due_at"]
        async with asyncio.timeout(20):
            while True:
                again = await berlin.offer_for(case_id)
                if len(again["data"]["documents"]) == 3:
                    break
        assert again["data"]["referral_id"] == str(offer.referral_id)
        # One attempt only: the same center, not a re-routing.
        assert len(await routing.wait_for(case_id, "referrals.referral.requested.v1")) == 1
        accepted = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": soon(days=5)},
            headers=key,
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["preparation"]["family_history"] == checklist["family_history"]
        view = accepted.json()["information_requests"][0]
        assert view["status"] == "answered"
        assert view["new_document_ids"] == [str(extra.data.document_id)]


async def test_an_accepted_referral_asks_gets_the_answer_and_confirms_the_shipment(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id, stored = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        expected = datetime.now(UTC) + timedelta(days=5)
        accepted = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": expected.isoformat()},
            headers=key,
        )
        assert accepted.status_code == 200
        asked = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/information-requests",
            json={**ASK, "due_at": soon(days=14)},
            headers=key,
        )
        assert asked.status_code == 200, asked.text
        request_id = uuid.UUID(asked.json()["information_requests"][0]["id"])
        # An accepted referral is not declined by asking first.
        decline = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/decline",
            json={"reason": "outside_expertise"},
            headers=key,
        )
        assert decline.status_code == 409, decline.text
        # No opinion while it waits.
        waiting = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/opinion",
            json={"document_id": str(uuid.uuid4())},
            headers=key,
        )
        assert waiting.status_code == 409
        extra = document_stored(case_id)
        await publish(bootstrap, extra)
        ids = [s.data.document_id for s in stored] + [extra.data.document_id]
        from referrals_common.contracts import Shipment

        shipment = Shipment(
            shipment_id=uuid.uuid4(),
            material="blocks",
            carrier="DHL Express",
            tracking_number="JD014600006281",
            sent_on=datetime.now(UTC).date(),
        )
        await publish(
            bootstrap,
            answered(
                case_id,
                request_id,
                offer.referral_id,
                ids,
                [extra.data.document_id],
                answer="The block was sent by courier today.",
                shipments=[shipment],
            ),
        )
        resumed = await routing.wait_for(case_id, "referrals.referral.resumed.v1")
        assert resumed[0]["data"]["status"] == "accepted"
        moved = datetime.fromisoformat(resumed[0]["data"]["expected_opinion_at"])
        assert moved > expected  # by the time the center waited
        # The center's inbox says what arrived, and nothing of the patient's words.
        async with asyncio.timeout(20):
            while True:
                news = await berlin.offer_for(case_id)
                if news["type"] == "referrals.referral.information_received.v1":
                    break
        assert news["data"]["shipments"] == 1 and news["data"]["written_answer"] is True
        assert [d["document_id"] for d in news["data"]["documents"]] == [
            str(extra.data.document_id)
        ]
        assert "courier" not in json.dumps(news) and "JD014600006281" not in json.dumps(news)
        # The answer itself is read through the API, by this center only.
        view = (await api.get(f"/v1/partner/referrals/{offer.referral_id}", headers=key)).json()
        assert view["status"] == "accepted"
        (request,) = view["information_requests"]
        assert request["answer"] == "The block was sent by courier today."
        assert request["shipments"][0]["tracking_number"] == "JD014600006281"
        other = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        path = f"/v1/partner/referrals/{offer.referral_id}/shipments/{shipment.shipment_id}/receipt"
        assert (await api.post(path, headers=other)).status_code == 404
        unknown = path.replace(str(shipment.shipment_id), str(uuid.uuid4()))
        assert (await api.post(unknown, headers=key)).status_code == 404
        for _ in range(2):  # confirming twice is one receipt
            confirmed = await api.post(path, headers=key)
            assert confirmed.status_code == 200, confirmed.text
        received = confirmed.json()["information_requests"][0]["shipments"][0]["received_at"]
        assert received is not None
        await asyncio.sleep(1)
        assert len(await routing.wait_for(case_id, "referrals.referral.shipment_received.v1")) == 1


async def test_an_unanswered_request_reminds_then_expires_to_the_next_center(make_runtime):
    rt = await make_runtime(info_min_due_seconds=1, info_reminders_before_seconds=[4, 2])
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, _ = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        key = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        for due, pointer in ((soon(seconds=-5), "/due_at"), (soon(days=200), "/due_at")):
            bad = await api.post(
                f"/v1/partner/referrals/{offer.referral_id}/information-requests",
                json={**ASK, "due_at": due},
                headers=key,
            )
            assert bad.status_code == 422, bad.text
            assert bad.json()["errors"][0]["pointer"] == pointer
        asked = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/information-requests",
            json={**ASK, "due_at": soon(seconds=6)},
            headers=key,
        )
        assert asked.status_code == 200, asked.text
        reminders = await routing.wait_for(
            case_id, "referrals.referral.info_reminder.v1", count=2, timeout=15
        )
        assert [r["data"]["reminder"] for r in reminders] == ["days_before", "due_soon"]
        expired = await routing.wait_for(case_id, "referrals.referral.expired.v1", timeout=15)
        assert expired[0]["data"]["reason"] == "information_not_provided"
        assert expired[0]["data"]["request_id"] == asked.json()["information_requests"][0]["id"]
        second = ReferralOffered.model_validate((await munich.offer_for(case_id))["data"])
        assert second.center_code == MUNICH
        # Berlin can no longer act on it; a late answer changes nothing.
        late = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/decline",
            json={"reason": "other"},
            headers=key,
        )
        assert late.status_code == 409
        await asyncio.sleep(1)
        assert len(await routing.wait_for(case_id, "referrals.referral.info_reminder.v1", 2)) == 2


async def test_invalid_values_are_refused_with_422_and_change_nothing(make_runtime):
    """A query filter outside its vocabulary is a 422 naming the parameter (it was a 200 with an
    empty list), and an acceptance with an opinion date in the past is a 422 naming the field
    (it was a 409, as if the referral were in the wrong state)."""
    rt = await make_runtime()
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(rt.settings.kafka.bootstrap_servers, BERLIN) as berlin,
    ):
        center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        ops = {"X-Api-Key": await key_for(rt, "ops")}
        for path, headers in (
            ("/v1/partner/referrals?status=bogus", center),
            ("/v1/ops/cases?status=bogus", ops),
        ):
            r = await api.get(path, headers=headers)
            assert r.status_code == 422, (path, r.text)
            assert r.json()["errors"][0]["pointer"] == "#/query/status", r.json()
            assert r.json()["errors"][0]["location"] == "query"
        case_id, _ = await open_case(rt)
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        past = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
            headers=center,
        )
        assert past.status_code == 422, past.text
        assert past.json()["errors"][0]["pointer"] == "/expected_opinion_at"
        view = await api.get(f"/v1/partner/referrals/{offer.referral_id}", headers=center)
        assert view.json()["status"] == "offered"


async def test_the_accepting_center_and_only_it_sees_the_preparation_checklist(make_runtime):
    """Family history, medications and allergies reach partners with the ready case; the center
    sees them through the API once it accepted, not while it is only offered the case, and
    never on its inbox topic."""
    preparation = {
        "family_history": "mother: breast cancer at 52",
        "medications": [{"medicine": "Letrozole", "dose": "2.5 mg once a day"}],
        "allergies": ["penicillin"],
    }
    rt = await make_runtime()
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(rt.settings.kafka.bootstrap_servers, BERLIN) as berlin,
    ):
        center = {"X-Api-Key": await key_for(rt, "center", BERLIN)}
        case_id, _ = await open_case(rt, preparation=preparation)
        offered = await berlin.offer_for(case_id)
        assert "Letrozole" not in str(offered) and "penicillin" not in str(offered)
        referral_id = offered["data"]["referral_id"]
        before = await api.get(f"/v1/partner/referrals/{referral_id}", headers=center)
        assert before.json()["preparation"] is None
        accepted = await api.post(
            f"/v1/partner/referrals/{referral_id}/accept",
            json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=5)).isoformat()},
            headers=center,
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["preparation"] == preparation
        after = await api.get(f"/v1/partner/referrals/{referral_id}", headers=center)
        assert after.json()["preparation"] == preparation


async def test_the_patient_chooses_among_the_proposed_centers(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    from referrals_common.contracts import CaseCenterChosen, new_event

    async with (
        partners_running(rt),
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        case_id, _ = await open_case(rt, patient_chooses=True)
        (proposed,) = await routing.wait_for(case_id, "referrals.case.centers_proposed.v1")
        proposals = proposed["data"]["proposals"]
        assert [p["center_code"] for p in proposals] == [BERLIN, MUNICH]  # by rank
        assert proposals[0]["turnaround_days"] < proposals[1]["turnaround_days"]
        assert "ranked 2 of 2" in proposals[1]["why"]
        async with rt.db.unit_of_work() as uow:
            case = await uow.session.get(RoutingCase, case_id)
            offers = (
                await uow.session.execute(select(Referral).where(Referral.case_id == case_id))
            ).all()
        assert case.status == "choosing" and offers == []  # nobody is offered it yet
        await publish(bootstrap, new_event(CaseCenterChosen(case_id=case_id, center_code=MUNICH)))
        offer = ReferralOffered.model_validate((await munich.offer_for(case_id))["data"])
        assert offer.center_code == MUNICH
        (requested,) = await routing.wait_for(case_id, "referrals.referral.requested.v1")
        assert requested["data"]["rationale"].startswith("The patient chose")
        # A late second choice changes nothing.
        await publish(bootstrap, new_event(CaseCenterChosen(case_id=case_id, center_code=BERLIN)))
        await asyncio.sleep(1.5)
        assert len(await routing.wait_for(case_id, "referrals.referral.requested.v1")) == 1


async def test_without_a_choice_by_the_deadline_the_first_ranked_is_offered(make_runtime):
    rt = await make_runtime(choice_window_seconds=1.5)
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, BERLIN) as berlin,
    ):
        case_id, _ = await open_case(rt, patient_chooses=True)
        await routing.wait_for(case_id, "referrals.case.centers_proposed.v1")
        offer = ReferralOffered.model_validate((await berlin.offer_for(case_id))["data"])
        assert offer.center_code == BERLIN
        (requested,) = await routing.wait_for(case_id, "referrals.referral.requested.v1")
        assert "did not choose" in requested["data"]["rationale"]


async def test_with_one_eligible_center_there_is_nothing_to_choose(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, WARSAW) as warsaw,
    ):
        case_id, _ = await open_case(rt, patient_chooses=True, countries=("PL",), languages=("en",))
        offer = ReferralOffered.model_validate((await warsaw.offer_for(case_id))["data"])
        assert offer.center_code == WARSAW
        await asyncio.sleep(0.5)
        assert not [e for e in routing.events if e["type"].endswith("centers_proposed.v1")]


async def test_routing_offers_only_centers_that_accept_the_payer(make_runtime):
    """Insurance (issue 21 §4): a case paid by an insurer goes only to a center with an
    agreement with it (Munich here, though Berlin ranks first otherwise); the payer reaches the
    center through the partner API once it accepted, never on its inbox; a payer no center
    accepts is unroutable, and the rationale says why."""
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Topic(bootstrap, topics.ROUTING) as routing,
        Inbox(bootstrap, MUNICH) as munich,
    ):
        insured = {"kind": "insurer", "insurer": "allianz-care"}
        case_id, _ = await open_case(rt, payer=insured)
        event = await munich.offer_for(case_id)
        assert "allianz" not in json.dumps(event)  # not on the center's inbox
        offer = ReferralOffered.model_validate(event["data"])
        requested = await routing.wait_for(case_id, "referrals.referral.requested.v1")
        assert requested[0]["data"]["center_code"] == MUNICH
        key = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        before = await api.get(f"/v1/partner/referrals/{offer.referral_id}", headers=key)
        assert before.json()["payer"] is None
        accepted = await api.post(
            f"/v1/partner/referrals/{offer.referral_id}/accept",
            json={"expected_opinion_at": soon(days=7)},
            headers=key,
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["payer"] == {
            **insured,
            "insurer_name": None,  # no policy handed over for this case
            "policy_number": None,
        }

        nobody, _ = await open_case(rt, payer={"kind": "insurer", "insurer": "unknown-mutual"})
        unroutable = await routing.wait_for(nobody, "referrals.case.unroutable.v1")
        assert unroutable[0]["data"]["reason"] == "payer_not_accepted"
        why = await api.get(
            f"/v1/ops/cases/{nobody}/routing", headers={"X-Api-Key": await key_for(rt, "ops")}
        )
        assert "payer" in json.dumps(why.json())

        # A charity: Berlin does not take it, so Munich (the only other match) is offered.
        charity, _ = await open_case(rt, payer={"kind": "charity"})
        first = await routing.wait_for(charity, "referrals.referral.requested.v1")
        assert first[0]["data"]["center_code"] == MUNICH
