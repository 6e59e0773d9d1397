"""The console says why routing offered a case to the center, in plain words: in the inbox (the
reasons) and on the referral's page (the reasons, the rank and the rules the center met), from
partners' `routing` explanation of the referral (codes and figures)."""

from __future__ import annotations

from typing import Any

import pytest

from referrals_common.contracts.examples import ROUTING_EXPLANATION
from referrals_web.routing_words import explain
from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import FakePlatform

pytestmark = pytest.mark.unit

ROUTING: dict[str, Any] = ROUTING_EXPLANATION.model_dump(mode="json")
"""Ranked first of 2 eligible (41 considered) by turnaround, after one decline; C50 covers
C50.9, adult, Germany, German and English, 3 of 20 places taken, 7 days."""


def test_each_item_is_worded_from_its_codes() -> None:
    words = explain(ROUTING, "en")
    assert words is not None
    assert words.reasons == [
        "Ranked first of 2 eligible centers.",
        "Deciding factor: the shortest opinion turnaround.",
        "Offered after 1 other center declined it.",
    ]
    assert words.rank == "Rank among the eligible centers: 1 of 2."
    assert words.matched == [
        "Diagnosis: your center reviews C50, which covers C50.9.",
        "Age group your center sees: Adult.",
        "Where the patient asked for the opinion from: Germany.",
        "Languages of the documents, all read by your reviewers: German and English.",
        "Places taken this week when the case was routed: 3 of 20.",
        "Your usual opinion turnaround: 7 days.",
    ]


def test_in_ukrainian_names_are_ukrainian_and_an_unknown_item_keeps_partners_words() -> None:
    words = explain(ROUTING, "uk")
    assert words is not None
    assert any("Німеччина" in line for line in words.matched)
    assert not any("Germany" in line for line in words.matched)
    newer = {**ROUTING, "reasons": [{"code": "something_new", "text": "A newer reason."}]}
    later = explain(newer, "en")
    assert later is not None and later.reasons == ["A newer reason."]
    assert explain(None, "en") is None


async def test_the_inbox_and_the_referral_say_why_this_center(
    staff_browser: Browser, fake: FakePlatform
) -> None:
    explained = fake.add_referral(routing=ROUTING)
    older = fake.add_referral(routing=None)

    page = await staff_browser.get("/center")
    offers = page.text.split('id="offers"')[1].split('id="accepted"')[0]
    row = offers.split(f"/center/referrals/{explained}")[1].split("</tr>")[0]
    assert "Ranked first of 2 eligible centers." in row
    assert "Offered after 1 other center declined it." in row
    old_row = offers.split(f"/center/referrals/{older}")[1].split("</tr>")[0]
    assert "Your center was the first chosen for this case." in old_row

    page = await staff_browser.get(f"/center/referrals/{explained}")
    routing = page.text.split('id="routing"')[1]
    assert "Why your center was offered this case" in page.text
    assert "Rank among the eligible centers: 1 of 2." in routing
    assert "Diagnosis: your center reviews C50, which covers C50.9." in routing
    assert "German and English" in routing
    page = await staff_browser.get(f"/center/referrals/{older}")
    assert 'id="routing"' not in page.text
