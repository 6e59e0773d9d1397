"""Refused and denied calls leave an audit row naming the case they were about (issue:
security and abuse, low items): before, a 409 rolled its audit row back with the refused
change, and a center's try on another center's referral was audited without the case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from referrals_intake.models import AccessAudit as IntakeAudit
from referrals_partners.models import AccessAudit as PartnersAudit
from referrals_records.models import AccessAudit as RecordsAudit

from .world import World

pytestmark = pytest.mark.security


async def _rows(runtime: Any, model: Any, case_id: str) -> list[tuple[str, str, str]]:
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(model.actor, model.action, model.outcome).where(
                model.case_id == uuid.UUID(case_id)
            )
        )
        return [tuple(r) for r in rows.all()]


async def test_a_refused_submission_is_audited_with_its_case(world: World) -> None:
    case = world.main  # submitted long ago
    r = await world.intake.post(f"/v1/cases/{case.case_id}/submit", headers=case.bearer)
    assert r.status_code == 409, r.text
    rows = await _rows(world.runtimes["intake"], IntakeAudit, case.case_id)
    assert any(a == "submit_case" and o == "conflict" for _, a, o in rows), rows


async def test_a_refused_document_deletion_is_audited_with_its_case(world: World) -> None:
    case = world.main
    doc = case.documents[0]
    r = await world.records.delete(
        f"/v1/cases/{case.case_id}/documents/{doc.id}", headers=case.bearer
    )
    assert r.status_code == 409, r.text
    rows = await _rows(world.runtimes["records"], RecordsAudit, case.case_id)
    assert any(a == "delete" and o == "conflict" for _, a, o in rows), rows


async def test_a_center_trying_another_centers_referral_is_audited_with_that_case(
    world: World,
) -> None:
    case = world.main
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/accept",
        json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()},
        headers={"X-Api-Key": world.keys.other_center},
    )
    assert r.status_code == 404, r.text
    assert case.case_id not in r.text  # the caller learns nothing
    rows = await _rows(world.runtimes["partners"], PartnersAudit, case.case_id)
    munich = f"center:{world.centers['munich']}"
    assert any(actor == munich and o == "denied" for actor, _, o in rows), rows


async def test_a_refused_center_action_is_audited_with_its_case(world: World) -> None:
    case = world.take_routed()
    decline = {"reason": "no_capacity"}
    headers = {"X-Api-Key": world.keys.center}
    path = f"/v1/partner/referrals/{case.referral_id}/decline"
    assert (await world.partners.post(path, json=decline, headers=headers)).status_code == 200
    again = await world.partners.post(path, json=decline, headers=headers)
    assert again.status_code == 409, again.text
    rows = await _rows(world.runtimes["partners"], PartnersAudit, case.case_id)
    assert any(o == "refused" for _, _, o in rows), rows
