"""The patient's start page on a phone, as a frightened reader in Ukraine first sees it: in
Ukrainian, with a visible heading, English one tap away, and nothing axe-core calls serious or
critical in either language. Screenshots: docs/screenshots/start-phone-{uk,en}.png."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import axe_check, screenshot

pytestmark = pytest.mark.browser


def test_the_start_page_speaks_ukrainian_first_and_english_one_tap_away(
    phone: Any, web_url: str
) -> None:
    response = phone.goto(f"{web_url}/")
    assert response is not None and response.ok, f"GET / answered {response and response.status}"
    html = phone.locator("html")
    expect(html).to_have_attribute("lang", "uk")
    heading = phone.get_by_role("heading", level=1)
    expect(heading).to_be_visible()
    ukrainian = heading.inner_text().strip()
    assert re.search("[А-Яа-яІіЇїЄєҐґ]", ukrainian), f"the heading is not Ukrainian: {ukrainian!r}"
    axe_check(phone)
    screenshot(phone, "start-phone-uk")

    name = re.compile(r"^\s*English\s*$")
    english = phone.get_by_role("link", name=name).or_(phone.get_by_role("button", name=name)).first
    expect(english).to_be_visible()
    english.tap()
    expect(html).to_have_attribute("lang", "en")
    expect(heading).to_be_visible()
    assert heading.inner_text().strip() != ukrainian
    assert re.search("[A-Za-z]", heading.inner_text())
    axe_check(phone)
    screenshot(phone, "start-phone-en")
