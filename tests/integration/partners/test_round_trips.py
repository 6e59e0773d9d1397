"""What partners asks PostgreSQL, counted (issue 25, cost per case): an idle scheduler round is
one statement, a known case's lock one, a consumer's `document.stored` one between its inbox's
BEGIN and its COMMIT, and the scheduler's one question finds each kind of work its polls would.
The statements are counted as SQLAlchemy sends them (`before_cursor_execute`), and those sent
through asyncpg itself as asyncpg logs them; that what is due is still done on time is tested
end to end in test_routing_over_kafka and test_scheduler_traces."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from referrals_common.db import Database
from referrals_partners.models import (
    CaseDocument,
    Referral,
    RoutingCase,
    Webhook,
    WebhookDelivery,
    utcnow,
)
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


async def _stored_case(rt: Any, *, documents: int = 1) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A case with its documents stored, as the consumer applies `document.stored`."""
    case_id = uuid.uuid4()
    ids = []
    for _ in range(documents):
        stored = document_stored(case_id)
        async with rt.db.unit_of_work() as uow:
            assert await uow.inbox.record("partners.routing", stored.id, stored.type)
            await rt.partners.on_document_stored(uow, stored.data)
            await uow.commit()
        ids.append(stored.data.document_id)
    return case_id, ids


async def _apply_ready(rt: Any, event: Any, *, inbox: bool = True) -> None:
    """`case.ready_for_referral` as the consumer applies it (its inbox row first: the
    transaction is asyncpg's own), or through the ORM session alone (`inbox=False`)."""
    async with rt.db.unit_of_work() as uow:
        if inbox:
            assert await uow.inbox.record("partners.routing", event.id, event.type)
        await rt.partners.on_case_ready(uow, event.data)
        await uow.commit()


async def test_a_consumers_ready_case_is_routed_in_three_statements_in_the_inbox_transaction(
    make_runtime,
):
    """`case.ready_for_referral` as the consumer applies it: between the inbox's BEGIN and its
    COMMIT, the case's lock, what routing reads (its referrals, its documents, the centers'
    versions and loads), and the case's changes with the offer, its webhook delivery and the two
    events; all through asyncpg, none through the ORM (were 5 statements through SQLAlchemy, the
    lock with the referrals, the documents, the centers, the referral's INSERT and the case's
    UPDATE, and the outbox's). Said again while the offer is open: the lock, the reads and the
    case's request kept, no offer."""
    rt = await make_runtime()
    async with rt.db.unit_of_work() as uow:  # the center the case goes to has a webhook
        for code in await PartnersRepository(uow.session).center_codes():
            uow.session.add(
                Webhook(center_code=code, url="https://x.example/h", secret_encrypted="s")
            )
        await uow.commit()
    # A case routed before: the centers' profiles are known (read once, then on a change only).
    await _apply_ready(rt, ready(*await _stored_case(rt)))
    case_id, documents = await _stored_case(rt, documents=2)
    first = ready(case_id, documents)
    async with queries_sent(rt.db, look_ups=False) as sent:
        await _apply_ready(rt, first)
    assert sent.orm == []
    kinds = [q.split()[0].lower() for q in sent.native]
    assert kinds == ["begin;", "select", "select", "with", "commit"], sent.native
    assert sent.native[1].endswith("FOR UPDATE")
    saved = sent.native[3].lower()
    assert "update routing_cases" in saved and "insert into referrals" in saved
    assert "insert into webhook_deliveries" in saved and "insert into outbox" in saved

    again = ready(case_id, documents)  # intake says it again: the offer is open
    async with queries_sent(rt.db, look_ups=False) as sent:
        await _apply_ready(rt, again)
    assert sent.orm == []
    kinds = [q.split()[0].lower() for q in sent.native]
    assert kinds == ["begin;", "select", "select", "update", "commit"], sent.native

    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        offers = await PartnersRepository(uow.session).referrals_of_case(case_id)
        deliveries = await PartnersRepository(uow.session).deliveries_of([offers[0].id])
    assert case is not None
    assert (case.status, case.attempts, case.request) == (
        "offered",
        1,
        again.data.model_dump(mode="json"),
    )
    assert [(r.attempt, r.status) for r in offers] == [(1, "offered")]
    assert [d.payload["data"]["referral_id"] for d in deliveries] == [str(offers[0].id)]
    assert [o["document_id"] for o in offers[0].offer["data"]["documents"]] == [
        str(d) for d in documents
    ]


async def test_a_ready_case_routed_through_asyncpg_is_written_as_through_the_session(
    make_runtime,
):
    """The same ready case routed through asyncpg (the consumer's path) and through the ORM
    session: the same rows (but for ids and times), the same events in the same order; offered,
    for a choice of centers, and unroutable."""
    rt = await make_runtime()
    written = []
    for options, inbox in itertools.product(
        [{}, {"patient_chooses": True}, {"countries": ("JP",)}], (True, False)
    ):
        case_id, documents = await _stored_case(rt, documents=2)
        event = ready(case_id, documents, **options)
        await _apply_ready(rt, event, inbox=inbox)
        async with rt.db.engine.connect() as connection:
            rows = {}
            for table, key in (("routing_cases", "case_id"), ("referrals", "case_id")):
                found = await connection.exec_driver_sql(
                    f"select to_jsonb(t) from {table} t where {key} = $1",
                    (case_id,),
                )
                rows[table] = [_timeless(_json(r[0])) for r in found]
            found = await connection.exec_driver_sql(
                "select event_type, topic, payload from outbox where aggregate_id = $1"
                " order by seq",
                (str(case_id),),
            )
            rows["outbox"] = [(t, topic, _timeless(_json(p))) for t, topic, p in found]
            # The next case finds the centers as loaded as this one did.
            await connection.exec_driver_sql(
                "update referrals set status = 'withdrawn' where case_id = $1", (case_id,)
            )
            await connection.commit()
        written.append(rows)
    offered, offered_session, choosing, choosing_session, unroutable, unroutable_session = written
    assert offered == offered_session
    assert [t for t, _, _ in offered["outbox"]] == [
        "referrals.referral.requested.v1",
        "referrals.referral.offered.v1",
    ]
    assert choosing == choosing_session
    assert [t for t, _, _ in choosing["outbox"]] == ["referrals.case.centers_proposed.v1"]
    assert unroutable == unroutable_session
    assert [t for t, _, _ in unroutable["outbox"]] == ["referrals.case.unroutable.v1"]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _timeless(value: Any) -> Any:
    """`value` (a row or an event as JSON) without what differs between two cases routed the
    same way: ids (the case's, its documents', the referral's, the event's and its subject) and
    times (a deadline, a time to choose by)."""
    if isinstance(value, dict):
        return {
            k: _timeless(v)
            for k, v in value.items()
            if k not in ("id", "time", "subject", "fetch_via")
            and not k.endswith(("_at", "_by", "_id", "_ids"))
        }
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


async def test_a_second_ready_waiting_for_the_first_sees_its_offer(make_runtime):
    """Intake says a case is ready twice (two events), applied at the same moment: the second
    waits for the first's lock of the case and then finds the offer the first made; the case is
    offered once. (Reading the case's referrals in the statement that locks it read them as
    they were before the wait: none, and the case was offered again.)"""
    rt = await make_runtime()
    for inbox in (True, False):
        case_id, documents = await _stored_case(rt)
        one, two = ready(case_id, documents), ready(case_id, documents)
        async with rt.db.unit_of_work() as first:
            if inbox:
                assert await first.inbox.record("partners.routing", one.id, one.type)
            await rt.partners.on_case_ready(first, one.data)
            second = asyncio.create_task(_apply_ready(rt, two, inbox=inbox))
            await asyncio.sleep(0.5)
            assert not second.done()  # waits for the case's lock
            await first.commit()
        await asyncio.wait_for(second, 10)
        async with rt.db.unit_of_work() as uow:
            case = await uow.session.get(RoutingCase, case_id)
            offers = await PartnersRepository(uow.session).referrals_of_case(case_id)
        assert case is not None
        assert (case.status, case.attempts) == ("offered", 1), inbox
        assert [(r.attempt, r.status) for r in offers] == [(1, "offered")], inbox


async def test_a_ready_case_waits_for_its_documents_and_the_last_one_routes_it(make_runtime):
    """A ready case whose documents records has not all announced yet: first seen by its ready
    (no row yet: made through the session, as before), then said ready again through asyncpg
    alone (its lock, the reads, the case kept waiting: no offer, no event); the last document
    routes it."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    first, last = document_stored(case_id), document_stored(case_id)
    documents = [first.data.document_id, last.data.document_id]
    await _apply_ready(rt, ready(case_id, documents))  # the case's first event
    async with rt.db.unit_of_work() as uow:
        assert await uow.inbox.record("partners.routing", first.id, first.type)
        await rt.partners.on_document_stored(uow, first.data)
        await uow.commit()
    async with queries_sent(rt.db, look_ups=False) as sent:
        await _apply_ready(rt, ready(case_id, documents))
    assert sent.orm == []
    kinds = [q.split()[0].lower() for q in sent.native]
    assert kinds == ["begin;", "select", "select", "update", "commit"], sent.native
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        assert case is not None and (case.status, case.attempts) == ("awaiting_documents", 0)
        assert await PartnersRepository(uow.session).referrals_of_case(case_id) == []

    async with rt.db.unit_of_work() as uow:
        assert await uow.inbox.record("partners.routing", last.id, last.type)
        await rt.partners.on_document_stored(uow, last.data)
        await uow.commit()
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        offers = await PartnersRepository(uow.session).referrals_of_case(case_id)
    assert case is not None and (case.status, case.attempts) == ("offered", 1)
    assert [o["document_id"] for o in offers[0].offer["data"]["documents"]] == [
        str(d) for d in documents
    ]
