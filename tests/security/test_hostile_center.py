"""What a center holding a valid key must not be able to do (issue: security and abuse).

Each test tries the attack through the public APIs of the running platform (the security
world: five services on real Kafka, MinIO and PostgreSQL) and checks that it fails and changed
nothing. They failed on the code before the fix: a center that was only offered a case could
store an "opinion" in it, a later center saw that document and could deliver it as its own, a
center saw the patient's file names, and a webhook URL naming loopback by host name was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select, update

from devstack.process import free_port
from referrals_common.outbound import IPAddress, OutboundPolicy
from referrals_common.webhooks import RetryPolicy
from referrals_partners.models import WebhookDelivery
from referrals_partners.scheduler import WebhookSender
from referrals_records.models import CenterReferral, Document

from .world import CaseHandle, World, wait_for

pytestmark = pytest.mark.security


def _opinion_pdf() -> tuple[str, bytes]:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, f"Second opinion {secrets.token_hex(8)}: we agree with the diagnosis.")
    return f"opinion_{secrets.token_hex(3)}.pdf", bytes(pdf.output())


def _center(world: World) -> dict[str, str]:
    return {"X-Api-Key": world.keys.center}


async def _documents_in_records(world: World, case: CaseHandle) -> int:
    records = world.runtimes["records"]
    async with records.db.unit_of_work() as uow:
        count = await uow.session.scalar(
            select(func.count())
            .select_from(Document)
            .where(Document.case_id == uuid.UUID(case.case_id))
        )
    return int(count or 0)


async def test_a_center_only_offered_a_case_cannot_upload_an_opinion_to_it(world: World) -> None:
    case = world.take_routed()
    before = await _documents_in_records(world, case)
    name, content = _opinion_pdf()
    r = await world.records.post(
        f"/v1/referrals/{case.referral_id}/opinion",
        files={"file": (name, content, "application/pdf")},
        headers=_center(world),
    )
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/referral-not-accepted")
    assert "Retry-After" in r.headers
    assert await _documents_in_records(world, case) == before  # nothing stored


async def test_a_center_sees_the_patients_documents_and_its_own_never_another_centers(
    world: World,
) -> None:
    """Berlin accepted and uploaded its opinion; Munich is then offered the same case (as after
    a re-route): Munich sees the patient's documents, under neutral names, and not Berlin's
    opinion, which it can neither download nor deliver."""
    case = await world.accepted_case()
    opinion = await world.upload_opinion(case)
    munich = world.centers["munich"]
    munich_referral = uuid.uuid4()
    # Records learns of Munich's referral as from partners' `referral.requested`.
    records = world.runtimes["records"]
    async with records.db.unit_of_work() as uow:
        await world.runtimes["records"].records.on_referral_offered(
            uow, munich_referral, uuid.UUID(case.case_id), munich
        )
        await uow.commit()
    munich_key = {"X-Api-Key": world.keys.other_center}

    listed = await world.records.get(
        f"/v1/referrals/{munich_referral}/documents", headers=munich_key
    )
    assert listed.status_code == 200, listed.text
    ids = {d["id"] for d in listed.json()}
    assert opinion not in ids
    assert {d.id for d in case.documents} <= ids
    names = [d["file_name"] for d in listed.json()]
    assert all(n.startswith(("pathology-report-", "discharge-summary-")) for n in names), names
    for doc in case.documents:  # the patient's own file names never reach a center
        assert doc.file_name not in listed.text
        link = await world.records.get(
            f"/v1/referrals/{munich_referral}/documents/{doc.id}", headers=munich_key
        )
        assert link.status_code == 200, link.text
        assert doc.file_name not in link.text
        assert case.patient.family_name not in link.text
    stolen = await world.records.get(
        f"/v1/referrals/{munich_referral}/documents/{opinion}", headers=munich_key
    )
    assert stolen.status_code == 404, stolen.text

    # Berlin still sees its own upload.
    own = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents", headers=_center(world)
    )
    assert opinion in {d["id"] for d in own.json()}


async def test_only_the_opinion_this_referral_uploaded_can_be_delivered(world: World) -> None:
    case = await world.accepted_case()
    patient_document = case.documents[0].id
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/opinion",
        json={"document_id": patient_document},
        headers=_center(world),
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/document_id"
    assert "Retry-After" not in r.headers  # permanent, not "try again later"
    view = await world.partners.get(
        f"/v1/partner/referrals/{case.referral_id}", headers=_center(world)
    )
    assert view.json()["status"] == "accepted"  # nothing changed

    opinion = await world.upload_opinion(case)
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/opinion",
        json={"document_id": opinion},
        headers=_center(world),
    )
    assert r.status_code == 200, r.text

    # Completed: the center loses read and upload rights at once (as soon as records hears).
    async def records_closed_it() -> bool:
        async with world.runtimes["records"].db.unit_of_work() as uow:
            row = await uow.session.get(CenterReferral, uuid.UUID(case.referral_id))
            return row is not None and row.closed_reason == "completed"

    await wait_for(records_closed_it, "records closes the completed referral")
    listed = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents", headers=_center(world)
    )
    assert listed.status_code == 404, listed.text
    name, content = _opinion_pdf()
    again = await world.records.post(
        f"/v1/referrals/{case.referral_id}/opinion",
        files={"file": (name, content, "application/pdf")},
        headers=_center(world),
    )
    assert again.status_code == 404, again.text


async def test_a_center_cannot_adopt_a_patient_document_as_its_opinion(world: World) -> None:
    """The same bytes as the patient's report, uploaded as an opinion: refused, not returned as
    the center's 'own' twin that it could then deliver."""
    case = await world.accepted_case()
    doc = case.documents[0]
    link = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents/{doc.id}", headers=_center(world)
    )
    report = (await world.records.get(link.json()["url"])).content  # the patient's very bytes
    before = await _documents_in_records(world, case)
    r = await world.records.post(
        f"/v1/referrals/{case.referral_id}/opinion",
        files={"file": ("opinion.pdf", report, "application/pdf")},
        headers=_center(world),
    )
    assert r.status_code == 409, r.text
    assert await _documents_in_records(world, case) == before


async def test_offers_carry_no_questions_and_the_center_reads_them_through_the_api(
    world: World,
) -> None:
    case = world.main
    r = await world.partners.get(
        f"/v1/partner/referrals/{case.referral_id}", headers=_center(world)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["offer"]["clinical"]["questions"] == []
    assert body["questions"] == case.patient.case_body()["questions"]


# ---------------------------------------------------------------------- webhooks (SSRF)

HOSTILE_URLS = [
    "https://localhost/offers",
    "https://localhost./offers",
    "https://LocalHost/offers",
    "https://127.0.0.1/offers",
    "https://[::1]/offers",
    "https://[::ffff:127.0.0.1]/offers",
    "https://[::ffff:7f00:1]/offers",
    "https://[64:ff9b::7f00:1]/offers",
    "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/offers",
    "https://2130706433/offers",
    "https://metadata.google.internal./computeMetadata/v1/",
    "https://app.127.0.0.1.nip.io/offers",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_a_webhook_to_an_internal_address_is_refused_by_host_name_too(
    world: World, url: str
) -> None:
    before = await world.partners.get("/v1/partner/webhook", headers=_center(world))
    r = await world.partners.put("/v1/partner/webhook", json={"url": url}, headers=_center(world))
    assert r.status_code == 422, (url, r.text)
    after = await world.partners.get("/v1/partner/webhook", headers=_center(world))
    assert after.status_code == before.status_code
    if after.status_code == 200:
        assert after.json()["url"] == before.json()["url"]


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP server on loopback that records what reaches it."""
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        got.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield port, got
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def _webhook(world: World, policy: OutboundPolicy, url: str) -> AsyncIterator[None]:
    """Berlin's webhook at `url`, registered and delivered to under `policy`; removed after."""
    rt = world.runtimes["partners"]
    saved, rt.outbound = rt.outbound, policy
    try:
        r = await world.partners.put(
            "/v1/partner/webhook", json={"url": url}, headers=_center(world)
        )
        assert r.status_code == 200, r.text
        yield
    finally:
        rt.outbound = saved
        await world.partners.delete("/v1/partner/webhook", headers=_center(world))


async def _queued_then_delivered(
    world: World, case: CaseHandle, *, max_attempts: int, before: Any = None
) -> WebhookDelivery:
    """Queue a delivery of `case`'s offer, run `before()` if given, let the scheduler's sender
    try once, and return the delivery as it is then."""
    rt = world.runtimes["partners"]
    async with rt.db.unit_of_work() as uow:
        # The world runs no scheduler: deliveries other tests' offers queued wait for none, and
        # the sender below must try exactly this one.
        await uow.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
            .values(status="cancelled")
        )
        delivery = WebhookDelivery(
            event_id=uuid.uuid4(),
            center_code=case.center,
            referral_id=uuid.UUID(case.referral_id),
            payload={"referral_id": case.referral_id},
        )
        uow.session.add(delivery)
        await uow.commit()
    if before is not None:
        await before()
    # One attempt (no quick retry), `max_attempts` rounds before the delivery is given up.
    once = RetryPolicy(attempts=1, base_delay=0, max_delay=0, rounds=max_attempts)
    sender = WebhookSender(rt.db, rt.cipher, rt.outbound, retry=once)
    try:
        await sender.deliver_due()
    finally:
        await sender.close()
    async with rt.db.unit_of_work() as uow:
        row = await uow.session.get(WebhookDelivery, delivery.id)
        assert row is not None
        return row


async def test_a_host_rebound_to_loopback_after_registration_is_not_called(world: World) -> None:
    """DNS rebinding: the name was public when the center registered it and names loopback
    when the scheduler delivers. The scheduler resolves again, refuses, never connects, and
    stores only the error's class."""
    answers: dict[str, list[str]] = {"hooks.rebind.example": ["93.184.215.14"]}

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in answers:
            raise OSError(f"{host}: Name or service not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    case = world.take_routed()
    policy = OutboundPolicy(require_https=False, resolve=resolve)
    async with _receiver() as (port, got):
        async with _webhook(world, policy, f"http://hooks.rebind.example:{port}/offers"):
            answers["hooks.rebind.example"] = ["127.0.0.1"]
            row = await _queued_then_delivered(world, case, max_attempts=1)
        assert got == []  # nothing reached the loopback server
        assert row.status == "failed"
        assert row.last_error == "address refused"


async def test_a_failed_delivery_stores_a_coarse_class_not_the_socket_error(world: World) -> None:
    case = world.take_routed()
    closed_port = free_port()  # nothing listens there
    policy = OutboundPolicy(require_https=False, allowed=[f"127.0.0.1:{closed_port}"])
    async with _webhook(world, policy, f"http://127.0.0.1:{closed_port}/offers"):
        row = await _queued_then_delivered(world, case, max_attempts=5)
        view = await world.partners.get("/v1/partner/webhook", headers=_center(world))
    assert row.last_error == "connect failed"
    shown = next(d for d in view.json()["deliveries"] if d["id"] == str(row.id))
    assert shown["last_error"] == "connect failed"
    # The socket's words ("[Errno 111] Connection refused") are neither stored nor shown.
    assert "errno" not in view.text.lower() and "connection refused" not in view.text.lower()


async def test_an_offer_that_ended_is_not_sent_to_the_webhook(world: World) -> None:
    """The center declines while a webhook delivery of the offer is still queued (its receiver
    was down): the delivery is cancelled and never sent."""
    case = world.take_routed()

    async def decline() -> None:
        declined = await world.partners.post(
            f"/v1/partner/referrals/{case.referral_id}/decline",
            json={"reason": "no_capacity"},
            headers=_center(world),
        )
        assert declined.status_code == 200, declined.text

    async with _receiver() as (port, got):
        policy = OutboundPolicy(require_https=False, allowed=[f"127.0.0.1:{port}"])
        async with _webhook(world, policy, f"http://127.0.0.1:{port}/offers"):
            row = await _queued_then_delivered(world, case, max_attempts=3, before=decline)
        assert row.status == "cancelled"
        assert got == []


async def test_a_download_link_is_short_lived_audited_at_each_use_and_dies_with_the_referral(
    world: World,
) -> None:
    import hashlib
    from datetime import UTC, datetime, timedelta

    from referrals_records.models import AccessAudit

    case = world.take_routed()
    doc = case.documents[0]
    r = await world.records.get(
        f"/v1/referrals/{case.referral_id}/documents/{doc.id}", headers=_center(world)
    )
    assert r.status_code == 200, r.text
    link = r.json()
    expires = datetime.fromisoformat(link["expires_at"])
    assert expires <= datetime.now(UTC) + timedelta(minutes=10)  # minutes, not days
    for _ in range(2):
        got = await world.records.get(link["url"])
        assert got.status_code == 200, got.text
        assert hashlib.sha256(got.content).hexdigest() == doc.sha256
    records = world.runtimes["records"]
    async with records.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(AccessAudit.actor, AccessAudit.at).where(
                AccessAudit.document_id == uuid.UUID(doc.id), AccessAudit.action == "download"
            )
        )
        downloads = rows.all()
    assert len(downloads) == 2  # who, which document, when: each download
    assert {actor for actor, _ in downloads} == {f"center:{case.center}"}

    declined = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/decline",
        json={"reason": "outside_expertise"},
        headers=_center(world),
    )
    assert declined.status_code == 200, declined.text

    async def revoked() -> bool:
        return (await world.records.get(link["url"])).status_code == 410

    await wait_for(revoked, "the link stops working once records hears of the decline")
    gone = await world.records.get(link["url"])
    assert gone.json()["type"].endswith("/link-revoked")
    assert case.patient.family_name not in gone.text
