"""`referrals_case_oldest_in_state_seconds` counts from the case's last transition (the case row's
`status_since`), so a note added to a case's timeline later (a declined referral, a reminder) does
not hide a case stuck in its state from `CaseStuckInState`; and it reads no timeline to know."""

from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import text

from referrals_intake.repository import CaseRepository

from .conftest import open_case

pytestmark = pytest.mark.integration


async def test_the_oldest_in_a_state_counts_from_its_transition_not_a_later_note(
    api, api_key, runtime
):
    stuck, _ = await open_case(api, api_key)
    await open_case(api, api_key)  # a fresh draft beside it
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(
            text("update cases set status_since = now() - interval '3 hours' where id = :id"),
            {"id": UUID(stuck)},
        )
        # Its timeline's last entry a minute old: a note after the transition.
        await uow.session.execute(
            text("update case_timeline set at = now() - interval '1 minute' where case_id = :id"),
            {"id": UUID(stuck)},
        )
        await uow.commit()
    async with runtime.db.unit_of_work() as uow:
        states = {s: (n, age) for s, n, age in await CaseRepository(uow.session).states()}
    count, oldest = states["draft"]
    assert count >= 2
    assert 3 * 3600 - 60 <= oldest <= 3 * 3600 + 600
