"""Free text with control or bidi override characters is refused at every API with a 422 that
names the field, and changes nothing (issue: security and abuse, low items)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from referrals_intake.models import Case

from .world import Patient, World

pytestmark = pytest.mark.security

HOSTILE = ["NUL \x00 here", "reads \u202eFDP.exe", "bell \x07", "C1 \x9b31m"]


async def _cases(world: World) -> int:
    async with world.runtimes["intake"].db.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Case)) or 0)


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize(
    ("where", "pointer"),
    [
        ("questions", "/questions/0"),
        ("diagnosis", "/diagnosis/text"),
        ("insurance", "/insurance/policy_number"),
    ],
)
async def test_a_case_with_control_characters_in_free_text_is_refused(
    world: World, text: str, where: str, pointer: str
) -> None:
    body = Patient.random().case_body()
    if where == "questions":
        body["questions"] = [text]
    elif where == "diagnosis":
        body["diagnosis"]["text"] = text
    else:
        body["insurance"] = {"provider": "UNIQA", "policy_number": text}
    before = await _cases(world)
    r = await world.intake.post("/v1/cases", json=body, headers={"X-Api-Key": world.keys.front_end})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert pointer in [e.get("pointer") for e in r.json().get("errors", [])], r.json()
    assert await _cases(world) == before


@pytest.mark.parametrize("text", HOSTILE)
async def test_a_centers_message_with_control_characters_is_refused(
    world: World, text: str
) -> None:
    case = world.main
    r = await world.partners.post(
        f"/v1/partner/referrals/{case.referral_id}/decline",
        json={"reason": "other", "detail": text},
        headers={"X-Api-Key": world.keys.center},
    )
    assert r.status_code == 422, r.text
    view = await world.partners.get(
        f"/v1/partner/referrals/{case.referral_id}", headers={"X-Api-Key": world.keys.center}
    )
    assert view.json()["status"] != "declined"
