"""Events of one case handled at the same moment by different consumers, on real PostgreSQL.

`document.stored` (from records) and `case.ready_for_referral` (from intake) travel on different
topics, so partners may apply them in two concurrent transactions. Whatever the interleaving,
the case must be routed once its last document is known: neither transaction may decide on a
view that misses the other's uncommitted work."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from referrals_partners.models import Referral, RoutingCase

from .conftest import document_stored, ready

pytestmark = pytest.mark.integration


async def _status(rt, case_id: uuid.UUID) -> tuple[str, int]:
    async with rt.db.unit_of_work() as uow:
        case = await uow.session.get(RoutingCase, case_id)
        assert case is not None
        offers = await uow.session.execute(select(Referral).where(Referral.case_id == case_id))
        return case.status, len(offers.scalars().all())


async def test_ready_still_open_while_the_last_document_arrives_routes_the_case(make_runtime):
    """The ready transaction sees one document missing and is still open when the document's
    transaction runs: the case must be offered once, not left awaiting documents."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    first, last = document_stored(case_id), document_stored(case_id)
    async with rt.db.unit_of_work() as uow:
        await rt.partners.on_document_stored(uow, first.data)
        await uow.commit()

    ready_event = ready(case_id, [first.data.document_id, last.data.document_id])
    async with rt.db.unit_of_work() as ready_uow:
        await rt.partners.on_case_ready(ready_uow, ready_event.data)

        async def store_last() -> None:
            async with rt.db.unit_of_work() as uow:
                await rt.partners.on_document_stored(uow, last.data)
                await uow.commit()

        storing = asyncio.create_task(store_last())
        await asyncio.sleep(0.5)  # long enough for the document's transaction to decide
        await ready_uow.commit()
    await asyncio.wait_for(storing, 10)
    assert await _status(rt, case_id) == ("offered", 1)


async def test_the_last_document_still_open_while_ready_arrives_routes_the_case(make_runtime):
    """The other order: the document's transaction holds the case while ready is applied."""
    rt = await make_runtime()
    case_id = uuid.uuid4()
    only = document_stored(case_id)
    ready_event = ready(case_id, [only.data.document_id])
    async with rt.db.unit_of_work() as doc_uow:
        await rt.partners.on_document_stored(doc_uow, only.data)

        async def apply_ready() -> None:
            async with rt.db.unit_of_work() as uow:
                await rt.partners.on_case_ready(uow, ready_event.data)
                await uow.commit()

        applying = asyncio.create_task(apply_ready())
        await asyncio.sleep(0.5)
        await doc_uow.commit()
    await asyncio.wait_for(applying, 10)
    assert await _status(rt, case_id) == ("offered", 1)
