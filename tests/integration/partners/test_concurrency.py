"""Events of one case handled at the same moment by different consumers, on real PostgreSQL.

`document.stored` (from records) and `case.ready_for_referral` (from intake) travel on different
topics, so partners may apply them in two concurrent transactions. Whatever the interleaving,
the case must be routed once its last document is known: neither transaction may decide on a
view that misses the other's uncommitted work. Each interleaving is tried as the consumer applies
the events (its inbox row first: `document.stored` is then one statement through asyncpg) and
through the ORM session alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from referrals_common.db import UnitOfWork
from referrals_partners.models import Referral, RoutingCase

from .conftest import document_stored, ready

pytestmark = pytest.mark.integration

CONSUMER = "partners.routing"


@pytest.fixture(params=["inbox", "session"])
def opened(request):
    """How each event's unit of work begins: with its inbox row, as the consumer's does (the
    transaction is asyncpg's own, `UnitOfWork.native`), or with the ORM session's first
    statement."""

    async def begin(uow: UnitOfWork, event) -> None:
        if request.param == "inbox":
            assert await uow.inbox.record(CONSUMER, event.id, event.type)
            assert uow.native is not None

    return begin


async def _status(rt, case_id: uuid.UUID) -> tuple[str, int]:
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        assert case is not None
        offers = await uow.session.execute(select(Referral).where(Referral.case_id == case_id))
        return case.status, len(offers.scalars().all())


async def test_ready_still_open_while_the_last_document_arrives_routes_the_case(
    make_runtime, opened
):
    """The ready transaction sees one document missing and is still open when the document's
    transaction runs: the case must be offered once, not left awaiting documents."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    first, last = document_stored(case_id), document_stored(case_id)
    async with rt.db.unit_of_work() as uow:
        await opened(uow, first)
        await rt.partners.on_document_stored(uow, first.data)
        await uow.commit()

    ready_event = ready(case_id, [first.data.document_id, last.data.document_id])
    async with rt.db.unit_of_work() as ready_uow:
        await opened(ready_uow, ready_event)
        await rt.partners.on_case_ready(ready_uow, ready_event.data)

        async def store_last() -> None:
            async with rt.db.unit_of_work() as uow:
                await opened(uow, last)
                await rt.partners.on_document_stored(uow, last.data)
                await uow.commit()

        storing = asyncio.create_task(store_last())
        await asyncio.sleep(0.5)  # long enough for the document's transaction to decide
        await ready_uow.commit()
    await asyncio.wait_for(storing, 10)
    assert await _status(rt, case_id) == ("offered", 1)


async def test_the_last_document_still_open_while_ready_arrives_routes_the_case(
    make_runtime, opened
):
    """The other order: the document's transaction holds the case while ready is applied."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    only = document_stored(case_id)
    ready_event = ready(case_id, [only.data.document_id])
    async with rt.db.unit_of_work() as doc_uow:
        await opened(doc_uow, only)
        await rt.partners.on_document_stored(doc_uow, only.data)

        async def apply_ready() -> None:
            async with rt.db.unit_of_work() as uow:
                await opened(uow, ready_event)
                await rt.partners.on_case_ready(uow, ready_event.data)
                await uow.commit()

        applying = asyncio.create_task(apply_ready())
        await asyncio.sleep(0.5)
        await doc_uow.commit()
    await asyncio.wait_for(applying, 10)
    assert await _status(rt, case_id) == ("offered", 1)


async def test_a_document_whose_case_another_transaction_is_creating_waits_for_it(make_runtime):
    """The case's first two documents at the same moment: the second's statement finds the
    case's row being created by the first (its insert waits, then sees the row taken, which its
    snapshot does not show): it stores its document and then locks the case as it is."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    first, second = document_stored(case_id), document_stored(case_id)
    async with rt.db.unit_of_work() as first_uow:
        assert await first_uow.inbox.record(CONSUMER, first.id, first.type)
        await rt.partners.on_document_stored(first_uow, first.data)

        async def store_second() -> None:
            async with rt.db.unit_of_work() as uow:
                assert await uow.inbox.record(CONSUMER, second.id, second.type)
                await rt.partners.on_document_stored(uow, second.data)
                await uow.commit()

        storing = asyncio.create_task(store_second())
        await asyncio.sleep(0.5)
        assert not storing.done()  # waits for the first transaction's row
        await first_uow.commit()
    await asyncio.wait_for(storing, 10)
    ready_event = ready(case_id, [first.data.document_id, second.data.document_id])
    async with rt.db.unit_of_work() as uow:
        await rt.partners.on_case_ready(uow, ready_event.data)
        await uow.commit()
    assert await _status(rt, case_id) == ("offered", 1)
