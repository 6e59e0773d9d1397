"""The pages the other browser tests do not open, in a real browser on the real platform.

1. A patient on a phone, in Ukrainian: the center (through partners' API, as its own system
   would) asks for a slide review and a question answered; the patient opens the request,
   writes an answer, records a courier shipment (first with nothing filled in: every error is
   explained and the answer she had typed is still there), sends it all, and the center reads
   her words and the tracking number. She signs out, signs in again without a password with the
   one-time code the mail sink received (an empty form and a wrong code first), and withdraws
   the case.
2. A center's doctor on a laptop, in English: the consultation meeting's other pages. New times
   for a meeting already offered, its cancellation (an empty reason first), then a second
   meeting that the patient books through intake's API: once its time has started the doctor
   records that the patient did not come (no choice first).

axe-core on every page (0 serious or critical) and nothing wider than the screen; screenshots
in docs/screenshots/more-0N-*.png.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from devstack.mailsink import list_messages
from referrals_web.i18n import translations
from referrals_web.vocabulary import (
    CASE_STATUSES,
    MEETING_OUTCOMES,
    SHIPMENT_MATERIALS,
    WITHDRAWAL_REASONS,
    case_reference,
)
from tests.browser.test_after_the_opinion_pages import Center, _days, reload_until, tag
from tests.browser.test_center_console import FrontEnd, console_code, fill_day, staff_of
from tests.browser.test_patient_journey import (
    PATHOLOGY_REPORT,
    _offer,
    answer_questions,
    check_page,
    create_case,
    give_consent,
    send_case,
    shoot,
    unique_email,
    upload,
)

pytestmark = pytest.mark.browser

UK: Callable[[str], str] = translations("uk").gettext
EN: Callable[[str], str] = translations("en").gettext
TIMEOUT_S = 120
ASK = {
    "reason": "Our tumour board wants the HER2 status re-read on the original slides.",
    "items": [
        {"kind": "pathology_review", "detail": "The H&E and HER2 slides of the core biopsy"},
        {"kind": "question", "detail": "Did the tumour grow during the last chemotherapy cycle?"},
    ],
}
TRACKING = "JD0146 0000 6281"


def sign_in_code(mail_dir: str, email: str, since: datetime, subject: str) -> str:
    """The newest sign-in code the mail sink received for `email` since `since`."""
    deadline = time.monotonic() + 30
    while True:
        found = [
            m
            for m in list_messages(Path(mail_dir))
            if email in m.recipients and m.subject == subject and m.received_at >= since
        ]
        if found:
            text = found[-1].text() or ""
            code = re.search(r"\b(\d{6})\b", text)
            assert code, text
            return code[1]
        assert time.monotonic() < deadline, f"no sign-in code for {email} in the mail sink"
        time.sleep(0.3)


def test_a_patient_answers_signs_in_again_and_withdraws_on_a_phone(
    phone: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, platform = running_platform
    _ = UK
    page = phone
    email = unique_email("answer")

    page.goto(f"{web_url}/new/diagnosis")
    answer_questions(page, _, email)
    create_case(page, _)
    page.goto(f"{web_url}/case/documents")
    upload(page, _, "pathology_report", PATHOLOGY_REPORT)
    expect(page.get_by_role("status")).to_be_visible()
    page.goto(f"{web_url}/case/consent")
    give_consent(page, _)
    reference = send_case(page, _)

    # The center the case was offered to asks before it decides.
    offer = _offer(platform, reference, timeout=TIMEOUT_S)
    center = Center(platform, offer)
    try:
        due = datetime.now(UTC) + timedelta(days=5)
        center.post(
            "/information-requests",
            json={**ASK, "due_at": due.isoformat()},
            key=f"ask-{offer['id']}",
        )

        # The request, on the status page and its own page.
        page.goto(f"{web_url}/case/status")
        ask = page.get_by_role("link", name=_("Answer the center's request"))
        reload_until(page, lambda: ask.count() > 0, "the center's request")
        check_page(page)
        ask.click()
        expect(page).to_have_url(re.compile(r"/case/information$"))
        expect(page.locator("#request-reason")).to_have_text(ASK["reason"])
        for item in ASK["items"]:
            expect(page.locator("#request-items")).to_contain_text(item["detail"])
        check_page(page)
        shoot(page, "more-01-information-uk")

        # Her answer, typed before she records the shipment, survives the shipment's page.
        words = "Ні, пухлина зменшилася: останнє УЗД показало 18 мм."
        page.locator("#answer").fill(words)
        page.get_by_role("button", name=_("Record a shipment")).click()
        expect(page).to_have_url(re.compile(r"/case/information/shipment$"))
        check_page(page)
        page.get_by_role("button", name=_("Save the shipment")).click()
        summary = page.locator("#error-summary")
        expect(summary).to_be_focused()
        expect(summary).to_contain_text(_("Choose what you sent"))
        expect(summary).to_contain_text(_("Enter the courier's name, for example DHL Express"))
        expect(summary).to_contain_text(_("Enter the day you sent it, as a real date"))
        expect(page).to_have_title(re.compile("^" + re.escape(_("Error:"))))
        check_page(page)
        shoot(page, "more-02-shipment-errors-uk")
        page.get_by_label(_(SHIPMENT_MATERIALS["slides"]), exact=True).check()
        page.get_by_label(_("Courier")).fill("DHL Express")
        page.get_by_label(_("Tracking number")).fill(TRACKING)
        today = datetime.now(UTC)
        fill_day(page, "sent", today)
        page.get_by_role("button", name=_("Save the shipment")).click()
        expect(page).to_have_url(re.compile(r"/case/information$"))
        expect(page.locator("#shipments")).to_contain_text(TRACKING)
        expect(page.locator("#answer")).to_have_value(words)
        check_page(page)
        shoot(page, "more-03-answer-ready-uk")
        page.get_by_role("button", name=_("Send to the center")).click()
        expect(page).to_have_url(re.compile(r"/case/status$"))
        expect(page.locator("#flash")).to_contain_text(_("Your answer was sent to the center."))
        check_page(page)

        # The center reads her words and the shipment through its API.
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            seen = center.partners.get(
                f"/v1/partner/referrals/{offer['id']}", headers=center.headers
            )
            assert seen.status_code == 200, seen.text
            (request,) = seen.json()["information_requests"]
            if request["status"] == "answered":
                break
            assert time.monotonic() < deadline, f"the answer never reached partners: {request}"
            time.sleep(0.5)
        assert request["answer"] == words
        assert TRACKING in seen.text and "DHL Express" in seen.text
    finally:
        center.close()

    # Signed out, she comes back without a password.
    page.get_by_role("button", name=_("Sign out")).click()
    page.goto(f"{web_url}/sign-in")
    check_page(page)
    page.get_by_role("button", name=_("Send me a code")).click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#error-summary")).to_contain_text(
        _("Enter your case reference, for example 3F0F-6C7D")
    )
    check_page(page)
    shoot(page, "more-04-sign-in-errors-uk")
    asked_at = datetime.now(UTC) - timedelta(seconds=1)
    page.get_by_label(_("Case reference")).fill(reference.lower())
    page.get_by_label(_("E-mail address or phone number")).fill(email.upper())
    page.get_by_role("button", name=_("Send me a code")).click()
    expect(page).to_have_url(re.compile(r"/sign-in/code$"))
    check_page(page)
    code = sign_in_code(stack.mail_dir, email, asked_at, _("Your sign-in code"))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    page.get_by_label(_("Code"), exact=True).fill(wrong)
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page.locator("#error-summary")).to_be_visible()
    expect(page.get_by_label(_("Code"), exact=True)).to_have_value(wrong)
    check_page(page)
    shoot(page, "more-05-wrong-code-uk")
    page.get_by_label(_("Code"), exact=True).fill(code)
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    # A submitted case opens on its status page.
    expect(page).to_have_url(re.compile(r"/case/status$"))

    # She withdraws the case.
    page.get_by_role("link", name=_("Withdraw this case")).click()
    expect(page).to_have_url(re.compile(r"/case/withdraw$"))
    check_page(page)
    shoot(page, "more-06-withdraw-uk")
    page.get_by_label(_(WITHDRAWAL_REASONS["duplicate"])).check()
    page.get_by_role("button", name=_("Yes, withdraw my case")).click()
    reload_until(page, lambda: tag(page) == _(CASE_STATUSES["withdrawn"]), "the withdrawal")
    expect(page.get_by_role("link", name=_("Withdraw this case"))).to_have_count(0)
    check_page(page)


def _meeting(center: Center, meeting_id: str) -> dict[str, Any]:
    seen = center.partners.get(
        f"/v1/partner/referrals/{center.referral_id}", headers=center.headers
    )
    assert seen.status_code == 200, seen.text
    return next(m for m in seen.json()["meetings"] if m["id"] == meeting_id)


def _wait_meeting(
    center: Center, meeting_id: str, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while not done(meeting := _meeting(center, meeting_id)):
        assert time.monotonic() < deadline, f"{what}: the meeting is {meeting}"
        time.sleep(0.5)
    return meeting


def test_a_center_doctor_moves_cancels_and_records_meetings_in_the_console(
    desktop: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, platform = running_platform
    _ = EN
    page = desktop
    front = FrontEnd(platform)
    center: Center | None = None
    try:
        case_id = front.open_and_submit()
        offer = _offer(platform, case_reference(case_id), timeout=TIMEOUT_S)
        center = Center(platform, offer)
        center.accept()
        center.deliver_opinion()
        first = center.offer_meeting([_days(3), _days(4)])
        front.wait(lambda c: c["status"] == "opinion_delivered", "the opinion")

        email = staff_of(offer["center"], platform)
        began = datetime.now(UTC) - timedelta(seconds=1)
        page.goto(f"{web_url}/center/sign-in")
        page.get_by_label(_("Work e-mail address")).fill(email)
        page.get_by_role("button", name=_("Send me a code")).click()
        page.get_by_label(_("Code")).fill(console_code(stack.mail_dir, email, began))
        page.get_by_role("button", name=_("Sign in"), exact=True).click()
        expect(page).to_have_url(re.compile(r"/center$"))
        referral_url = f"{web_url}/center/referrals/{offer['id']}"

        # New times replace the two offered.
        page.goto(referral_url)
        page.get_by_role("link", name=_("Offer new times")).click()
        expect(page).to_have_url(re.compile(rf"/meetings/{first['id']}/times$"))
        check_page(page)
        page.get_by_label(_("Time zone of the times below")).select_option("Europe/Berlin")
        new_day = _days(6)
        slot = page.locator("#slot-1")
        slot.get_by_label(_("Day")).fill(str(new_day.day))
        slot.get_by_label(_("Month")).fill(str(new_day.month))
        slot.get_by_label(_("Year")).fill(str(new_day.year))
        slot.get_by_label(_("Starts at")).fill("10:15")
        shoot(page, "more-07-meeting-new-times")
        page.get_by_role("button", name=_("Send the new times to the patient")).click()
        expect(page).to_have_url(re.compile(rf"/center/referrals/{offer['id']}$"))
        expect(page.locator("#flash")).to_contain_text(
            _("The new times were sent. The patient is asked to choose one.")
        )
        check_page(page)
        moved = _meeting(center, first["id"])
        (only,) = moved["slots"]
        starts = datetime.fromisoformat(only["starts_at"]).astimezone(UTC)
        # 10:15 in Berlin: 09:15 UTC in winter, 08:15 in summer.
        assert (starts.date(), starts.minute) == (new_day.date(), 15), only
        assert starts.hour in (8, 9), only

        # Cancelled with the center's words (none first: the patient must read why).
        page.get_by_role("link", name=_("Cancel the meeting")).click()
        expect(page).to_have_url(re.compile(rf"/meetings/{first['id']}/cancel$"))
        check_page(page)
        page.get_by_role("button", name=_("Cancel the meeting")).click()
        expect(page.locator("#error-summary")).to_be_focused()
        expect(page.locator("#error-summary")).to_contain_text(
            _("Say why you cancel: the patient reads it")
        )
        check_page(page)
        shoot(page, "more-08-meeting-cancel-error")
        why = "Our radiologist is ill that week; we will offer new times soon."
        page.get_by_label(_("Why your center cancels")).fill(why)
        page.get_by_role("button", name=_("Cancel the meeting")).click()
        expect(page.locator("#flash")).to_contain_text(
            _("The meeting was cancelled. The patient is told, with your words.")
        )
        check_page(page)
        assert _meeting(center, first["id"])["status"] == "cancelled"

        # A second meeting, soon; the patient books it through intake's API.
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=40)
        offered = center.post(
            "/meetings",
            json={
                "place": {
                    "mode": "video",
                    "join_url": "https://meet.example.org/tumour-board-8",
                    "time_zone": "Europe/Berlin",
                    "language": "en",
                },
                "slots": [
                    {
                        "starts_at": soon.isoformat(),
                        "ends_at": (soon + timedelta(minutes=30)).isoformat(),
                    }
                ],
            },
            key=f"second-meeting-{offer['id']}",
        )
        second = offered["meetings"][-1]
        assert second["id"] != first["id"]
        front.wait(
            lambda c: any(m["id"] == second["id"] for m in c.get("meetings") or []),
            "the second meeting at intake",
        )
        booked = front.intake.post(
            f"/v1/cases/{case_id}/meetings/{second['id']}/booking",
            json={"slot_id": second["slots"][0]["slot_id"], "time_zone": "Europe/Kyiv"},
            headers={**front.token(), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert booked.status_code == 200, booked.text
        _wait_meeting(center, second["id"], lambda m: m["status"] == "booked", "the booking")

        # Before its time there is nothing to record; once it started, the doctor records it.
        page.goto(referral_url)
        record = page.get_by_role("link", name=_("Record whether it took place"))
        expect(record).to_have_count(0)
        time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds() + 1))
        page.reload()
        record.click()
        expect(page).to_have_url(re.compile(rf"/meetings/{second['id']}/outcome$"))
        check_page(page)
        page.get_by_role("button", name=_("Record it")).click()
        expect(page.locator("#error-summary")).to_contain_text(
            _("Choose whether the meeting took place")
        )
        check_page(page)
        shoot(page, "more-09-meeting-outcome-error")
        page.get_by_label(_(MEETING_OUTCOMES["missed"])).check()
        page.get_by_role("button", name=_("Record it")).click()
        expect(page.locator("#flash")).to_contain_text(_("Recorded. Thank you."))
        check_page(page)
        assert _meeting(center, second["id"])["status"] == "missed"
    finally:
        front.close()
        if center is not None:
            center.close()
