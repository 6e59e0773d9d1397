"""After the opinion, the patient's pages in a real browser, on the real platform.

On a phone in Ukrainian whose clock is Warsaw's: the patient makes a case through the pages and
asks to choose the center herself; routing proposes several and she chooses the second. That
center (through partners' and records' APIs, as its own system would) accepts, delivers the
written opinion with its outcome and offers two times for the consultation meeting. In the
browser the patient reads the opinion and its outcome in words, downloads it, asks a follow-up
question (the center answers it with a document, which she downloads beside the answer), books
the first time (shown on her own clock, with the center's beside it) and sees it confirmed
without a reload, moves it to the second, cancels it with a reason, and asks for a further
opinion, answering the consent to share the earlier one as a question of its own.

axe-core on every new page (0 serious or critical) and nothing wider than the phone's screen;
screenshots in docs/screenshots/after-0N-*-uk.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from referrals_web.i18n import translations, zone_name, zoned_date_time, zoned_time
from referrals_web.vocabulary import (
    CASE_STATUSES,
    CENTER_CHOICES,
    FURTHER_OPINION_REASONS,
    MEETING_CANCEL_REASONS,
    PATIENT_DIAGNOSIS_VERDICTS,
    PATIENT_MEETING_STATUSES,
    PATIENT_TREATMENT_VERDICTS,
)
from tests.browser.support import PHONE, SCREENSHOTS, TIMEOUT_MS
from tests.browser.test_patient_journey import (
    PATHOLOGY_REPORT,
    SAMPLES,
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
OPINION = SAMPLES / "opinion_en.pdf"
TIMEOUT_S = 120
LIVE_MS = 45_000
ZONE = "Europe/Warsaw"
CENTER_ZONE = "Europe/Berlin"
OUTCOME = {
    "diagnosis": "refined",
    "icd10": "C50.4",
    "stage": "confirmed",
    "treatment": "alternative_proposed",
    "additional_tests": ["HER2 in situ hybridisation on block A2"],
    "clinical_trials": True,
    "clinical_trials_detail": "A HER2-low antibody-drug conjugate trial is recruiting.",
}


@pytest.fixture
def warsaw_phone(browser: Any) -> Iterator[Any]:
    """A phone in Ukrainian whose clock is set to Warsaw's (not Kyiv's: the pages must follow
    the browser's zone, not assume one)."""
    context = browser.new_context(**PHONE, timezone_id=ZONE)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


class Center:
    """The chosen center's own system, through partners' and records' public APIs."""

    def __init__(self, platform: Any, offer: dict[str, Any]) -> None:
        self.referral_id = offer["id"]
        self.headers = {"X-Api-Key": offer["key"]}
        self.partners = httpx.Client(base_url=platform.apis["partners"], timeout=30)
        self.records = httpx.Client(base_url=platform.apis["records"], timeout=60)

    def close(self) -> None:
        self.partners.close()
        self.records.close()

    def post(self, path: str, *, key: str | None = None, **kwargs: Any) -> dict[str, Any]:
        url = f"/v1/partner/referrals/{self.referral_id}{path}"
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            response = self.partners.post(url, headers=headers, **kwargs)
            if response.status_code != 409 or "retry-after" not in response.headers:
                break
            assert time.monotonic() < deadline, response.text
            time.sleep(float(response.headers["retry-after"]))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def accept(self) -> None:
        self.post("/accept", json={"expected_opinion_at": _days(10).isoformat()})

    def deliver_opinion(self) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # records hears of the acceptance from partners' event, within seconds
            stored = self.records.post(
                f"/v1/referrals/{self.referral_id}/opinion",
                files={"file": ("second-opinion.pdf", OPINION.read_bytes(), "application/pdf")},
                headers=self.headers,
            )
            if stored.status_code != 409 or "retry-after" not in stored.headers:
                break
            assert time.monotonic() < deadline, stored.text
            time.sleep(float(stored.headers["retry-after"]))
        assert stored.status_code == 201, stored.text
        self.post("/opinion", json={"document_id": stored.json()["id"], "outcome": OUTCOME})

    def answer_follow_up(self, words: str, file_name: str, content: bytes) -> None:
        """Answer the patient's open follow-up question with a document: stored at records for
        the question first (records hears of the question a moment after partners), then
        attached to the answer by its id."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            referral = self.partners.get(
                f"/v1/partner/referrals/{self.referral_id}", headers=self.headers
            )
            assert referral.status_code == 200, referral.text
            open_ = [q for q in referral.json()["follow_up_questions"] if not q["answer"]]
            if open_:
                break
            assert time.monotonic() < deadline, "no follow-up question at partners"
            time.sleep(0.5)
        question_id = open_[0]["id"]
        while True:
            stored = self.records.post(
                f"/v1/referrals/{self.referral_id}/follow-up-questions/{question_id}/documents",
                files={"file": (file_name, content, "application/pdf")},
                headers=self.headers,
            )
            if stored.status_code not in (404, 409):
                break
            assert time.monotonic() < deadline, stored.text
            time.sleep(0.5)
        assert stored.status_code == 201, stored.text
        self.post(
            f"/follow-up-questions/{question_id}/answer",
            json={"answer": words, "document_ids": [stored.json()["id"]]},
            key=f"answer-{question_id}",
        )

    def offer_meeting(self, starts: list[datetime]) -> dict[str, Any]:
        place = {
            "mode": "video",
            "join_url": "https://meet.example.org/tumour-board-7",
            "time_zone": CENTER_ZONE,
            "language": "en",
        }
        slots = [
            {"starts_at": s.isoformat(), "ends_at": (s + timedelta(minutes=45)).isoformat()}
            for s in starts
        ]
        view = self.post(
            "/meetings",
            json={"place": place, "slots": slots, "note": "Bring your questions."},
            key=f"meeting-{self.referral_id}",
        )
        return view["meetings"][-1]  # type: ignore[no-any-return]


def _days(days: int, hour: int = 12) -> datetime:
    day = (datetime.now(UTC) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)


def reload_until(page: Any, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"{page.url}: still no {what}"
        page.wait_for_timeout(1000)
        page.reload()


def tag(page: Any) -> str:
    return page.locator("#case-status .tag--status").inner_text().strip()


# One case from the first page to a further opinion, with an answer's document on the way:
# longer than the default 300 s on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_a_patient_reads_asks_meets_and_asks_again_on_a_phone(
    warsaw_phone: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    _stack, platform = running_platform
    _ = UK
    page = warsaw_phone

    # A case for Germany whose patient asks to choose the center (the destination step).
    page.goto(f"{web_url}/new/diagnosis")
    answer_questions(page, _, unique_email("after"))
    page.goto(f"{web_url}/new/destination?return=check")
    choose = page.get_by_label(_(CENTER_CHOICES["choose"]))
    expect(page.get_by_label(_(CENTER_CHOICES["automatic"]))).to_be_checked()
    choose.check()
    check_page(page)
    shoot(page, "after-01-destination-choice-uk")
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/new/check$"))
    expect(page.locator("main")).to_contain_text(_(CENTER_CHOICES["choose"]))
    create_case(page, _)
    page.goto(f"{web_url}/case/documents")
    upload(page, _, "pathology_report", PATHOLOGY_REPORT)
    expect(page.get_by_role("status")).to_be_visible()
    page.goto(f"{web_url}/case/consent")
    give_consent(page, _)
    reference = send_case(page, _)

    # Several centers can give the opinion: she chooses the second.
    page.goto(f"{web_url}/case/status")
    reload_until(page, lambda: tag(page) == _(CASE_STATUSES["choosing_center"]), "choice")
    check_page(page)
    page.get_by_role("link", name=_("Choose your cancer center")).click()
    expect(page).to_have_url(re.compile(r"/case/choose-center$"))
    options = page.locator("input[name=center_code]")
    assert options.count() >= 2
    for n in range(options.count()):
        expect(options.nth(n)).not_to_be_checked()  # nothing is chosen for her
    page.get_by_role("button", name=_("Choose this center")).click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#error-summary")).to_contain_text(_("Choose one of the cancer centers"))
    check_page(page)
    shoot(page, "after-02-choose-center-uk")
    second = options.nth(1)
    chosen_code = second.get_attribute("value")
    second.check()
    page.get_by_role("button", name=_("Choose this center")).click()
    expect(page).to_have_url(re.compile(r"/case/status$"))
    expect(page.locator("#flash")).to_be_visible()

    # The chosen center accepts, delivers its opinion and offers two times for the meeting.
    offer = _offer(platform, reference, timeout=TIMEOUT_S)
    assert offer["center"] == chosen_code
    center = Center(platform, offer)
    try:
        center.accept()
        center.deliver_opinion()
        first, later = _days(3), _days(4)
        center.offer_meeting([first, later])
    finally:
        center.close()

    # The opinion: its outcome in words, the document through the app.
    reload_until(page, lambda: tag(page) == _(CASE_STATUSES["opinion_delivered"]), "opinion")
    reload_until(page, lambda: page.locator("#meetings").count() > 0, "the meeting's times")
    check_page(page)
    shoot(page, "after-03-status-opinion-uk")
    page.get_by_role("link", name=_("Read your opinion")).click()
    expect(page).to_have_url(re.compile(r"/case/opinion$"))
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text(_(PATIENT_DIAGNOSIS_VERDICTS["refined"]))
    expect(outcome).to_contain_text(_(PATIENT_TREATMENT_VERDICTS["alternative_proposed"]))
    expect(outcome).to_contain_text("HER2 in situ hybridisation on block A2")
    for code in ("refined", "alternative_proposed", "not_assessed"):
        expect(outcome).not_to_contain_text(code)
    reload_until(page, lambda: page.locator("#opinion-documents a").count() > 0, "document")
    check_page(page)
    shoot(page, "after-04-opinion-uk")
    with page.expect_download() as downloaded:
        page.locator("#opinion-documents a").first.click()
    assert Path(downloaded.value.path()).read_bytes().startswith(b"%PDF-")

    # A follow-up question: an empty one is explained, then it is sent.
    page.get_by_role("link", name=_("Ask the center a question")).click()
    expect(page).to_have_url(re.compile(r"/case/opinion/question$"))
    check_page(page)
    page.get_by_role("button", name=_("Send the question")).click()
    expect(page.locator("#error-summary")).to_contain_text(_("Write your question"))
    check_page(page)
    question = "Can the surgery wait until after the summer holidays?"
    page.locator("#question").fill(question)
    shoot(page, "after-05-question-uk")
    page.get_by_role("button", name=_("Send the question")).click()
    expect(page).to_have_url(re.compile(r"/case/opinion$"))
    expect(page.locator("#flash")).to_contain_text(
        _("Your question was sent to the center. We will tell you when it answers.")
    )
    expect(page.locator("#follow-ups")).to_contain_text(question)
    check_page(page)

    # The center answers with a document: a download link beside its answer, apart from the
    # written opinion.
    plan = OPINION.read_bytes() + b"% radiotherapy plan\n"
    center = Center(platform, offer)
    try:
        center.answer_follow_up("Yes: the plan is attached.", "radiotherapy-plan.pdf", plan)
    finally:
        center.close()
    attached = page.locator("#follow-ups .answer-documents a")
    reload_until(page, lambda: attached.count() > 0, "the answer's document")
    expect(page.locator("#follow-ups .answer")).to_contain_text("Yes: the plan is attached.")
    expect(attached).to_have_count(1)
    expect(attached).to_contain_text(_("Download the center's document"))
    expect(page.locator("#follow-ups")).to_contain_text("radiotherapy-plan.pdf")
    expect(page.locator("#opinion-documents a")).to_have_count(1)  # still one written opinion
    check_page(page)
    # The answer with its document, as she sees it there (the page's top is after-04).
    page.locator("section[aria-labelledby=questions-title]").screenshot(
        path=str(SCREENSHOTS / "after-05b-answer-document-uk.png"), animations="disabled"
    )
    with page.expect_download() as downloaded:
        attached.first.click()
    assert Path(downloaded.value.path()).read_bytes() == plan

    # The meeting: the times on her clock (Warsaw's, from the browser) and the center's.
    page.locator("#meetings a").first.click()
    expect(page).to_have_url(re.compile(r"/case/meetings/[0-9a-f-]+\?tz=Europe%2FWarsaw$"))
    expect(page.locator("#patient-zone")).to_have_text(zone_name(ZONE, "uk"))
    expect(page.locator("input[name=time_zone]")).to_have_value(ZONE)
    slots = page.locator("input[name=slot_id]")
    expect(slots).to_have_count(2)
    mine = zoned_date_time(first, ZONE, "uk")
    expect(page.locator("main")).to_contain_text(mine)
    expect(page.locator("main")).to_contain_text(zoned_time(first, CENTER_ZONE, "uk"))
    check_page(page)
    shoot(page, "after-06-meeting-times-uk")
    page.get_by_role("button", name=_("Book this time")).click()
    expect(page.locator("#error-summary")).to_contain_text(_("Choose a time for the meeting"))
    check_page(page)
    slots.first.check()
    page.get_by_role("button", name=_("Book this time")).click()
    expect(page.locator("#flash")).to_be_visible()
    booked = _(PATIENT_MEETING_STATUSES["booked"])
    # Confirmed by the center's calendar a moment later: the page says so by itself.
    expect(page.locator("#meeting-status")).to_have_text(booked, timeout=LIVE_MS)
    expect(page.locator("#meeting-booked")).to_contain_text(mine)
    expect(page.locator("#join-link")).to_be_visible()
    check_page(page)
    shoot(page, "after-07-meeting-booked-uk")

    # Moved to the later time, then cancelled with a reason.
    page.reload()
    slots.nth(1).check()
    page.get_by_role("button", name=_("Move my meeting to this time")).click()
    later_words = zoned_date_time(later, ZONE, "uk")
    reload_until(
        page,
        lambda: later_words in (page.locator("#meeting-booked").all_inner_texts() or [""])[0],
        "the later time booked",
    )
    page.get_by_role("link", name=_("Cancel the meeting")).click()
    expect(page).to_have_url(re.compile(r"/cancel$"))
    check_page(page)
    page.get_by_role("button", name=_("Yes, cancel the meeting")).click()
    expect(page.locator("#error-summary")).to_contain_text(_("Choose why you cancel the meeting"))
    check_page(page)
    shoot(page, "after-08-meeting-cancel-uk")
    page.get_by_label(_(MEETING_CANCEL_REASONS["cannot_attend"])).check()
    page.get_by_role("button", name=_("Yes, cancel the meeting")).click()
    expect(page.locator("#meeting-status")).to_have_text(_(PATIENT_MEETING_STATUSES["cancelled"]))
    expect(page.locator("main")).to_contain_text(_("You cancelled the meeting."))
    check_page(page)

    # A further opinion: the reason, the consent to share as its own question, the check.
    page.goto(f"{web_url}/case/opinion")
    page.get_by_role("link", name=_("Ask for a further opinion")).click()
    expect(page).to_have_url(re.compile(r"/case/further-opinion$"))
    check_page(page)
    page.get_by_label(_(FURTHER_OPINION_REASONS["conflicting_opinions"])).check()
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case/further-opinion/sharing$"))
    share = page.locator("input[name=share]")
    expect(share.nth(0)).not_to_be_checked()
    expect(share.nth(1)).not_to_be_checked()
    expect(page.locator("#share-hint")).to_contain_text("second-opinion.pdf")
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page.locator("#error-summary")).to_contain_text(
        _("Choose whether the next center may read the opinion you already have")
    )
    check_page(page)
    shoot(page, "after-09-further-consent-uk")
    page.get_by_label(_("Yes, the next center may read the opinion I already have")).check()
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case/further-opinion/check$"))
    expect(page.locator("#further-answers")).to_contain_text(_("Shared with the next center"))
    check_page(page)
    shoot(page, "after-10-further-check-uk")
    page.get_by_role("button", name=_("Ask for a further opinion")).click()
    expect(page).to_have_url(re.compile(r"/case/status$"))
    expect(page.locator("#flash")).to_contain_text(
        _(
            "You asked for a further opinion. We are choosing another cancer center and will "
            "tell you."
        )
    )
    expect(page.locator("#timeline")).to_contain_text(
        _("You asked another cancer center for a further opinion."), timeout=LIVE_MS
    )
    check_page(page)
