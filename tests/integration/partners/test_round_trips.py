"""What partners asks PostgreSQL, counted (issue 25, cost per case): an idle scheduler round is
one statement, a known case's lock one, a consumer's `document.stored` one between its inbox's
BEGIN and its COMMIT, and the scheduler's one question finds each kind of work its polls would.
The statements are counted as SQLAlchemy sends them (`before_cursor_execute`), and those sent
through asyncpg itself as asyncpg logs them; that what is due is still done on time is tested
end to end in test_routing_over_kafka and test_scheduler_traces."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from referrals_common.db import Database
from referrals_partners.models import CaseDocument, Referral, RoutingCase, WebhookDelivery, utcnow
from referrals_partners.repository import PartnersRepository
from referrals_partners.scheduler import WebhookSender, anything_due, run_scheduler
from tests.integration.statements_sent import queries_sent

from .conftest import document_stored, ready

pytestmark = pytest.mark.integration


@contextmanager
def statements_sent(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent on `db` while the block runs, in order."""
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    sync_engine = db.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)


async def test_an_idle_scheduler_round_is_one_statement(make_runtime):
    rt = await make_runtime()
    sender = WebhookSender(rt.db, rt.cipher, rt.outbound)
    stop = asyncio.Event()
    with statements_sent(rt.db) as sent:
        rounds = asyncio.create_task(
            run_scheduler(
                rt.partners, rt.db, sender, interval=0.05, stop=stop, meetings=rt.meetings
            )
        )
        for _ in range(200):
            if len(sent) >= 5:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await rounds
    await sender.close()
    assert len(sent) >= 5
    # Nothing is due: every round asked its one question, and no poll ran.
    assert all(statement.lstrip().startswith("SELECT (EXISTS") for statement in sent), sent


async def test_the_schedulers_question_finds_each_kind_of_due_work(make_runtime):
    rt = await make_runtime()
    sender = WebhookSender(rt.db, rt.cipher, rt.outbound)
    now = utcnow()

    async def due() -> bool:
        return await anything_due(rt.partners, rt.meetings, sender, rt.db)

    case_id = uuid.uuid4()
    async with rt.db.unit_of_work() as uow:
        uow.session.add(RoutingCase(case_id=case_id, status="offered", attempts=1))
        offer = Referral(
            case_id=case_id,
            center_code="test-breast-berlin",
            attempt=1,
            status="offered",
            offered_at=now,
            answer_due_at=now + timedelta(hours=1),
        )
        uow.session.add(offer)
        await uow.commit()
    assert not await due()  # an offer not yet due

    async with rt.db.unit_of_work() as uow:
        (await PartnersRepository(uow.session).referral(offer.id)).answer_due_at = now  # type: ignore[union-attr]
        await uow.commit()
    assert await due()  # its deadline passed

    delivery = WebhookDelivery(
        event_id=uuid.uuid4(),
        center_code="test-breast-berlin",
        referral_id=offer.id,
        payload={},
        next_attempt_at=now + timedelta(hours=1),
    )
    async with rt.db.unit_of_work() as uow:
        (await PartnersRepository(uow.session).referral(offer.id)).status = "accepted"  # type: ignore[union-attr]
        uow.session.add(delivery)
        await uow.commit()
    assert not await due()  # answered; a delivery to retry later

    async with rt.db.unit_of_work() as uow:
        (await uow.session.get(WebhookDelivery, delivery.id)).next_attempt_at = now  # type: ignore[union-attr]
        await uow.commit()
    assert await due()  # the delivery's retry is due

    async with rt.db.unit_of_work() as uow:
        (await uow.session.get(WebhookDelivery, delivery.id)).status = "delivered"  # type: ignore[union-attr]
        await uow.commit()
    assert not await due()

    async with rt.db.unit_of_work() as uow:
        chooser = RoutingCase(
            case_id=uuid.uuid4(), status="choosing", attempts=0, choose_by=now - timedelta(1)
        )
        uow.session.add(chooser)
        await uow.commit()
    assert await due()  # a patient's choice past its deadline
    await sender.close()


async def test_a_known_cases_lock_is_one_statement(make_runtime):
    rt = await make_runtime()
    case_id = uuid.uuid4()
    async with rt.db.unit_of_work() as uow:
        with statements_sent(rt.db) as first:
            created = await PartnersRepository(uow.session).lock_case(case_id)
        await uow.commit()
    assert created.status == "new"
    assert [s.split()[0] for s in first] == ["SELECT", "INSERT", "SELECT"]

    async with rt.db.unit_of_work() as uow:
        with statements_sent(rt.db) as again:
            known = await PartnersRepository(uow.session).lock_case(case_id)
        await uow.commit()
    assert known.case_id == case_id
    assert len(again) == 1 and "FOR UPDATE" in again[0]


async def test_a_consumers_document_stored_is_one_statement_in_the_inbox_transaction(make_runtime):
    """`document.stored` as the consumer applies it: BEGIN with the inbox row, the case's lock
    (its row made on first sight) and the document in one statement, COMMIT; no ORM session
    (were a case lock of one to three statements and the document's insert through it)."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    for n in range(2):  # the case's first document (its row made), then one more
        stored = document_stored(case_id)
        async with queries_sent(rt.db) as sent, rt.db.unit_of_work() as uow:
            assert await uow.inbox.record("partners.routing", stored.id, stored.type)
            await rt.partners.on_document_stored(uow, stored.data)
            await uow.commit()
        assert sent.orm == [], n
        native = sent.native
        assert [q.split()[0].lower() for q in native] == ["begin;", "with", "commit"], native
        statement = native[1].lower()
        assert "for update" in statement and "insert into case_documents" in statement
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        docs = await PartnersRepository(uow.session).documents([stored.data.document_id])
    assert case is not None and (case.status, case.attempts, case.opinion_round) == ("new", 0, 1)
    assert [(d.case_id, d.kind) for d in docs] == [(case_id, "pathology_report")]
    assert isinstance(docs[0], CaseDocument)


async def test_a_ready_case_is_locked_with_its_referrals_in_one_statement(make_runtime):
    """`case.ready_for_referral`: the case's lock and its referrals (whether one is open, which
    centers were tried) are one statement, not two; the case is offered as before."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    stored = document_stored(case_id)
    async with rt.db.unit_of_work() as uow:
        assert await uow.inbox.record("partners.routing", stored.id, stored.type)
        await rt.partners.on_document_stored(uow, stored.data)
        await uow.commit()
    ready_event = ready(case_id, [stored.data.document_id])
    with statements_sent(rt.db) as orm:
        async with rt.db.unit_of_work() as uow:
            assert await uow.inbox.record("partners.routing", ready_event.id, ready_event.type)
            await rt.partners.on_case_ready(uow, ready_event.data)
            await uow.commit()
    first = " ".join(orm[0].split())
    assert "FROM routing_cases LEFT OUTER JOIN referrals" in first
    assert first.endswith("FOR UPDATE OF routing_cases")
    assert not any(s.startswith("SELECT referrals.") for s in orm)  # no read of them alone
    again = ready(case_id, [stored.data.document_id])  # intake says it again: the offer is open
    async with rt.db.unit_of_work() as uow:
        assert await uow.inbox.record("partners.routing", again.id, again.type)
        await rt.partners.on_case_ready(uow, again.data)
        await uow.commit()
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        offers = await PartnersRepository(uow.session).referrals_of_case(case_id)
    assert case is not None and case.status == "offered"
    assert [(r.attempt, r.status) for r in offers] == [(1, "offered")]
