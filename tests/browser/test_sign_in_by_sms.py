"""Signing in again with a phone number, in a real browser on the real platform: the one-time code
arrives by text message in the dev stack's SMS sink (a Twilio-compatible server on loopback,
reached by the web app through the platform's outbound guard).

1. A patient on a phone, in Ukrainian, makes a case with only a phone number, closes the
   browser, and comes back: the case's reference and the number typed the local way
   (`050 …`); the code is read from the SMS sink, a wrong one first, then the right one opens
   her case.
2. The "no": the same reference with another phone number gets the very same page, and no text
   goes to either number.

axe-core on every page (0 serious or critical), nothing wider than the screen; screenshots in
docs/screenshots/sms-0N-*.png.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from devstack.smssink import StoredSms, list_messages
from referrals_web.i18n import translations
from tests.browser.test_patient_journey import check_page, continue_, create_case, shoot

pytestmark = pytest.mark.browser

UK: Callable[[str], str] = translations("uk").gettext
SMS_TIMEOUT_S = 30


def unique_phone() -> tuple[str, str]:
    """A Ukrainian mobile number of this run only: (as a patient types it, as E.164)."""
    digits = f"{random.randrange(10**7):07d}"
    return f"050 {digits[:3]} {digits[3:5]} {digits[5:]}", f"+38050{digits}"


def texts_to(sms_dir: str, number: str, since: datetime) -> list[StoredSms]:
    return [m for m in list_messages(Path(sms_dir)) if m.to == number and m.received_at >= since]


def sms_code(sms_dir: str, number: str, since: datetime) -> str:
    """The newest sign-in code the SMS sink received for `number` since `since`."""
    deadline = time.monotonic() + SMS_TIMEOUT_S
    while not (found := texts_to(sms_dir, number, since)):
        assert time.monotonic() < deadline, f"no text to {number} in the SMS sink"
        time.sleep(0.3)
    body = found[-1].body
    code = re.search(r"\b(\d{6})\b", body)
    assert code, body
    return code[1]


def phone_only_case(page: Any, web_url: str, typed_phone: str) -> str:
    """A draft case whose only contact is a phone number, made through the pages in
    Ukrainian; returns its reference."""
    _ = UK
    page.goto(f"{web_url}/new/diagnosis")
    page.get_by_label(_("Diagnosis code (ICD-10)")).fill("C50.4")
    continue_(page, _, "/new/stage")
    page.get_by_label(_("TNM stage")).fill("cT2N1M0")
    continue_(page, _, "/new/reasons")
    page.get_by_label(_("Help to choose between treatments")).check()
    continue_(page, _, "/new/questions")
    continue_(page, _, "/new/destination")
    page.get_by_label(_("A cancer center in the countries I choose")).check()
    page.get_by_label(_("Country %(number)s") % {"number": 1}).select_option("DE")
    continue_(page, _, "/new/date-of-birth")
    page.get_by_label(_("Day")).fill("12")
    page.get_by_label(_("Month")).fill("4")
    page.get_by_label(_("Year")).fill("1979")
    continue_(page, _, "/new/contact")
    page.get_by_label(_("Mobile phone number")).fill(typed_phone)
    page.get_by_label(_("Text message (SMS)")).check()
    continue_(page, _, "/new/check")
    return create_case(page, _)


def ask_for_code(page: Any, web_url: str, reference: str, contact: str) -> None:
    _ = UK
    page.goto(f"{web_url}/sign-in")
    page.get_by_label(_("Case reference")).fill(reference)
    page.get_by_label(_("E-mail address or phone number")).fill(contact)
    page.get_by_role("button", name=_("Send me a code")).click()
    expect(page).to_have_url(re.compile(r"/sign-in/code$"))


def test_a_patient_signs_in_with_her_phone_number_and_the_texted_code(
    phone_context: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, _platform = running_platform
    assert stack.sms_dir, "the test stack was started without its SMS sink"
    _ = UK
    typed, number = unique_phone()
    page = phone_context.new_page()
    reference = phone_only_case(page, web_url, typed)

    # She closes the browser and comes back another day.
    phone_context.clear_cookies()
    page.goto(f"{web_url}/sign-in")
    by_text = _(
        "If they match, we send you a code: by text message to the phone number, or by e-mail "
        "to the e-mail address."
    )
    expect(page.get_by_text(by_text)).to_be_visible()
    check_page(page)
    shoot(page, "sms-01-sign-in-uk")
    asked_at = datetime.now(UTC) - timedelta(seconds=1)
    ask_for_code(page, web_url, reference.lower(), typed)
    expect(
        page.get_by_text(
            _(
                "If the details you gave match a case, we have sent a 6-digit code by text "
                "message to that phone number. It works for 10 minutes."
            )
        )
    ).to_be_visible()
    check_page(page)
    shoot(page, "sms-02-code-by-text-uk")

    code = sms_code(stack.sms_dir, number, asked_at)
    [text] = texts_to(stack.sms_dir, number, asked_at)
    assert reference not in text.body and reference.replace("-", "") not in text.body
    wording = _("Sign-in code: %(code)s. It works for %(minutes)s min. Never share it.")
    assert text.body == wording % {"code": code, "minutes": 10}

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    page.get_by_label(_("Code"), exact=True).fill(wrong)
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text(
        _("The code is not right. Check the text message and try again, or ask for a new code")
    )
    expect(page.get_by_label(_("Code"), exact=True)).to_have_value(wrong)
    check_page(page)
    shoot(page, "sms-03-wrong-code-uk")

    page.get_by_label(_("Code"), exact=True).fill(code)
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case$"))
    expect(page.locator(".caption .reference")).to_have_text(reference)
    check_page(page)


def test_a_wrong_phone_number_gets_the_same_page_and_no_text(
    phone_context: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, _platform = running_platform
    typed, number = unique_phone()
    other_typed, other_number = unique_phone()
    page = phone_context.new_page()
    reference = phone_only_case(page, web_url, typed)
    phone_context.clear_cookies()

    asked_at = datetime.now(UTC) - timedelta(seconds=1)
    ask_for_code(page, web_url, reference, other_typed)
    refused = page.locator("main").inner_text()
    check_page(page)
    # A new code asked for from the code page: still nothing, and the same words.
    page.get_by_role("button", name=UK("Send a new code")).click()
    expect(page.get_by_role("status")).to_contain_text(
        UK("If the details match a case, we sent a new code. Only the newest code works.")
    )

    # What the right number sees, for comparison (its text is then the only one).
    phone_context.clear_cookies()
    ask_for_code(page, web_url, reference, typed)
    accepted = page.locator("main").inner_text()
    assert refused == accepted
    sms_code(stack.sms_dir, number, asked_at)  # the right number's text did arrive
    time.sleep(2)  # and the wrong number's would have arrived long before
    assert texts_to(stack.sms_dir, other_number, asked_at) == []
    assert len(texts_to(stack.sms_dir, number, asked_at)) == 1
