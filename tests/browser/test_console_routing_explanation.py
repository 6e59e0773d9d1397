"""A center's doctor reads, in the console's inbox and on the referral's page, why routing offered
the case to the center: on the real platform, from the explanation partners recorded when it
routed the case (the partner API gives it to that center only).

A partner front end submits the demo's case (C50.4 for Germany, an English report); routing
offers it to a center. That center's staff member signs in on a laptop: the offer's row in the
inbox says why this center (its rank among the eligible centers and the deciding factor), and the
referral's page adds the rules the center met (the ICD-10 coverage entry, the age group, the
country, the documents' language, capacity, turnaround). axe-core on both pages (0 serious or
critical); screenshots docs/screenshots/center-10-inbox-why.png and center-11-referral-why.png.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from referrals_web.routing_words import explain
from referrals_web.vocabulary import case_reference
from tests.browser.support import SCREENSHOTS
from tests.browser.test_center_console import EN, TIMEOUT_S, FrontEnd, console_code, staff_of
from tests.browser.test_patient_journey import (
    SCREENSHOT_MAX_BYTES,
    _offer,
    check_page,
    shoot,
)

pytestmark = pytest.mark.browser


def test_the_inbox_and_the_referral_say_why_routing_chose_the_center(
    desktop: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, platform = running_platform
    _ = EN
    page = desktop
    front = FrontEnd(platform)
    try:
        case_id = front.open_and_submit()
        reference = case_reference(case_id)
        offer = _offer(platform, reference, timeout=TIMEOUT_S)
        routing = offer["routing"]
        # Partners recorded why: the C50.4 case matched the center's coverage of C50 (or a
        # range holding it), for an adult, in Germany, in English.
        assert routing["rank"] == 1 and routing["eligible_count"] >= 1
        rules = {m["rule"]: m for m in routing["matched"]}
        assert rules["diagnosis"]["codes"][-1] == "C50.4"
        assert rules["destination"]["codes"] == ["DE"]
        assert rules["languages"]["codes"] == ["en"]
        # Another center reads neither the referral nor its explanation.
        others = {c: k for c, k in platform.keys()["centers"].items() if c != offer["center"]}
        with httpx.Client(base_url=platform.apis["partners"], timeout=10) as client:
            for key in others.values():
                refused = client.get(
                    f"/v1/partner/referrals/{offer['id']}", headers={"X-Api-Key": key}
                )
                assert refused.status_code == 404, refused.text
        words = explain(routing, "en")
        assert words is not None and words.reasons

        email = staff_of(offer["center"], platform)
        began = datetime.now(UTC) - timedelta(seconds=1)
        page.goto(f"{web_url}/center")
        page.get_by_label(_("Work e-mail address")).fill(email)
        page.get_by_role("button", name=_("Send me a code")).click()
        page.get_by_label(_("Code")).fill(console_code(stack.mail_dir, email, began))
        page.get_by_role("button", name=_("Sign in"), exact=True).click()

        # The inbox: the offer says why this center, in words.
        expect(page).to_have_url(re.compile(r"/center$"))
        row = page.locator("#offers tr", has_text=reference)
        expect(row).to_be_visible()
        why = row.locator("td.routing-why")
        for line in words.reasons:
            expect(why).to_contain_text(line)
        if routing["eligible_count"] > 1:
            expect(why).to_contain_text(
                f"Ranked first of {routing['eligible_count']} eligible centers."
            )
        else:
            expect(why).to_contain_text("The only eligible center of")
        check_page(page)
        shoot(page, "center-10-inbox-why")

        # The referral: the reasons, the rank and the rules the center met.
        row.get_by_role("link", name=reference).click()
        expect(page).to_have_url(re.compile(rf"/center/referrals/{offer['id']}$"))
        section = page.locator("#routing")
        expect(page.get_by_role("heading", name=_("Why your center was offered this case")))
        expect(section).to_contain_text(
            f"Rank among the eligible centers: 1 of {routing['eligible_count']}."
        )
        expect(section).to_contain_text("which covers C50.4")
        expect(section).to_contain_text("Where the patient asked for the opinion from: Germany.")
        expect(section).to_contain_text(
            "Languages of the documents, all read by your reviewers: English."
        )
        for line in words.matched:
            expect(section.locator("#routing-rules")).to_contain_text(line)
        check_page(page)
        # The section itself (it is below the fold of the page's top).
        path = SCREENSHOTS / "center-11-referral-why.png"
        section.screenshot(path=str(path), animations="disabled", caret="hide")
        assert path.stat().st_size < SCREENSHOT_MAX_BYTES
    finally:
        front.close()
