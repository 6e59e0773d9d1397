"""The patient's whole journey in a real browser, against the real platform.

1. On a phone, in Ukrainian: the start page, every question of a new case (the diagnosis code
   through the field and its suggestions), check your answers, the task list, an English
   pathology report uploaded and accepted, both consents, the checklist, sending the case, the
   confirmation with its reference and the status page with its timeline; axe-core on every page
   and nothing wider than the screen. Screenshots: docs/screenshots/patient-0N-*-uk.png.
2. Bad input keeps what was typed: a wrong e-mail address (error summary linked to the field,
   the other answers kept) and a file of a type records refuses (a clear message, nothing lost).
3. The status page is live: a center accepts the case through the partner API and the status
   region says so without a reload.
4. The keyboard only, on a laptop in English: every question of a new case, to "Create my case".
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from devstack.mailsink import list_messages
from referrals_intake.consent_texts import ConsentText, text_of
from referrals_web.i18n import language_name, translations
from referrals_web.pages.case import UPLOAD_MESSAGES
from referrals_web.vocabulary import CASE_STATUSES, case_reference
from tests.browser.support import SCREENSHOTS, axe_check

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[2] / "deploy/local/src/devstack/samples"
PATHOLOGY_REPORT = SAMPLES / "pathology_report_en.pdf"
UK: Callable[[str], str] = translations("uk").gettext
EN: Callable[[str], str] = translations("en").gettext
REFERENCE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{4}$")
VERDICT_TIMEOUT_S = 90
LIVE_TIMEOUT_MS = 20_000
SCREENSHOT_MAX_BYTES = 300_000


# ------------------------------------------------------------------------------ helpers


def unique_email(label: str) -> str:
    """An address of this test run only: its e-mails are told apart from other runs'."""
    return f"patient-{label}-{uuid.uuid4().hex[:10]}@example.org"


def check_page(page: Any) -> None:
    """What every page must be: no serious or critical axe-core violation, and nothing wider
    than the screen (a phone would scroll sideways)."""
    axe_check(page)
    overflow = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth, found = [];
            const hidden = (e) => e.closest('.visually-hidden, .skip-link');
            for (const e of document.querySelectorAll('body *')) {
              if (!hidden(e) && e.getClientRects().length
                  && e.getBoundingClientRect().right > width + 1) {
                found.push(`<${e.tagName.toLowerCase()}> ${e.textContent.trim().slice(0, 60)}`);
              }
            }
            const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (texts.nextNode()) {  // words that run past their box and off the screen
              const text = texts.currentNode;
              if (!text.textContent.trim() || hidden(text.parentElement)) continue;
              const range = document.createRange();
              range.selectNodeContents(text);
              if ([...range.getClientRects()].some(r => r.right > width + 1)) {
                found.push(`text: ${text.textContent.trim().slice(0, 60)}`);
              }
            }
            return found;
        }"""
    )
    assert not overflow, f"{page.url}: wider than the screen:\n" + "\n".join(overflow[:10])


def shoot(page: Any, name: str) -> Path:
    """The top of the page as the patient sees it on the screen, as docs/screenshots/<name>.png
    (the visible part only: each file stays small enough to keep in the repository)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    size = path.stat().st_size
    assert size < SCREENSHOT_MAX_BYTES, f"{path.name} is {size} bytes"
    return path


def continue_(page: Any, _: Callable[[str], str], next_path: str) -> None:
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(next_path) + r"$"))


def answer_questions(
    page: Any, _: Callable[[str], str], email: str, *, check: bool = False, shots: bool = False
) -> None:
    """From the diagnosis page to "Check your answers", answering every question; with `check`
    axe-core checks each page, with `shots` the diagnosis page is photographed."""
    look = check_page if check else (lambda page: None)
    expect(page).to_have_url(re.compile(r"/new/diagnosis$"))
    look(page)
    code = page.get_by_label(_("Diagnosis code (ICD-10)"))
    live = page.locator("script[src='/static/vendor/htmx.min.js']").count() > 0
    if live:
        page.wait_for_function("() => Boolean(window.htmx)")
    code.press_sequentially("C50", delay=60)
    if live:
        # htmx fills the field's suggestions as the patient types; C50.4 is among them.
        expect(page.locator('#icd10-suggestions option[value="C50.4"]')).to_be_attached()
    code.fill("C50.4")  # what choosing C50.4 from the suggestions puts in the field
    page.get_by_label(_("The diagnosis in words (optional)")).fill(
        "Invasive ductal carcinoma of the left breast, G2"
    )
    if shots:
        shoot(page, "patient-02-diagnosis-uk")
    continue_(page, _, "/new/stage")

    look(page)
    page.get_by_label(_("TNM stage")).fill("cT2N1M0")
    continue_(page, _, "/new/reasons")

    look(page)
    page.get_by_label(_("Help to choose between treatments")).check()
    page.get_by_label(_("Confirm the diagnosis or the stage")).check()
    continue_(page, _, "/new/questions")

    look(page)
    page.get_by_label(_("Question %(number)s") % {"number": 1}).fill(
        "Is breast-conserving surgery possible after neoadjuvant therapy?"
    )
    continue_(page, _, "/new/destination")

    look(page)
    page.get_by_label(_("A cancer center in the countries I choose")).check()
    page.get_by_label(_("Country %(number)s") % {"number": 1}).select_option("DE")
    continue_(page, _, "/new/date-of-birth")

    look(page)
    page.get_by_label(_("Day")).fill("12")
    page.get_by_label(_("Month")).fill("4")
    page.get_by_label(_("Year")).fill("1979")
    continue_(page, _, "/new/contact")

    look(page)
    page.get_by_label(_("E-mail address")).fill(email)
    continue_(page, _, "/new/check")


def create_case(page: Any, _: Callable[[str], str]) -> str:
    """On "Check your answers": create the case; returns its reference from the task list."""
    page.get_by_role("button", name=_("Create my case")).click()
    expect(page).to_have_url(re.compile(r"/case$"))
    reference = page.locator(".caption .reference").inner_text().strip()
    assert REFERENCE.match(reference), reference
    return reference


def upload(page: Any, _: Callable[[str], str], kind: str, path: Path | dict[str, Any]) -> None:
    """On the documents page: choose the kind and the file, and upload it."""
    page.get_by_label(_("What is this document?")).select_option(kind)
    page.get_by_label(_("Choose the file")).set_input_files(
        str(path) if isinstance(path, Path) else path
    )
    page.get_by_role("button", name=_("Upload the document")).click()


def wait_accepted(page: Any, _: Callable[[str], str], file_name: str, locale: str) -> None:
    """Reload the page until the document's verdict says it was accepted (a sent case's
    documents are judged as soon as the center's languages are known: within seconds)."""
    words = _("Accepted. Language of the document: %(language)s.") % {
        "language": language_name("en", locale)
    }
    document = page.locator(".document", has_text=file_name)
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    while True:
        expect(document).to_be_visible()
        verdict = document.locator(".document__verdict").inner_text().strip()
        if verdict == words:
            break
        assert verdict in (_("Being checked. This usually takes a few minutes."), ""), verdict
        assert time.monotonic() < deadline, f"{file_name} still not accepted: {verdict!r}"
        page.wait_for_timeout(1000)
        page.reload()
    expect(document).to_have_class(re.compile(r"\bdocument--ok\b"))


def consent_text(kind: str, version: str) -> ConsentText:
    text = text_of(kind, version)
    assert text is not None, f"no published {kind} consent text {version}"
    return text


def give_consent(page: Any, _: Callable[[str], str]) -> None:
    # The page shows intake's published consent texts, in the page's language.
    locale = page.locator("html").get_attribute("lang")
    processing = consent_text("processing", "2026-01").texts[locale].agreement
    abroad = consent_text("cross_border", "2026-01").texts[locale].agreement
    page.get_by_label(processing).check()
    page.get_by_label(abroad).check()
    page.get_by_role("button", name=_("Save my consent")).click()
    expect(page).to_have_url(re.compile(r"/case$"))


def send_case(page: Any, _: Callable[[str], str]) -> str:
    """From the task list: check the case, send it; returns the confirmation's reference."""
    page.get_by_role("link", name=_("Send your case")).click()
    expect(page).to_have_url(re.compile(r"/case/submit$"))
    page.get_by_role("button", name=_("Send my case")).click()
    expect(page).to_have_url(re.compile(r"/case/submitted$"))
    reference = page.locator("#case-reference").inner_text().strip()
    assert REFERENCE.match(reference), reference
    return reference


def submitted_case(page: Any, web_url: str, email: str) -> str:
    """A sent case (for Germany, one accepted English pathology report, both consents), made
    through the pages in Ukrainian without stopping to check them; returns its reference."""
    _ = UK
    page.goto(f"{web_url}/new/diagnosis")
    answer_questions(page, _, email)
    create_case(page, _)
    page.goto(f"{web_url}/case/documents")
    upload(page, _, "pathology_report", PATHOLOGY_REPORT)
    expect(page.get_by_role("status")).to_be_visible()
    page.goto(f"{web_url}/case/consent")
    give_consent(page, _)
    return send_case(page, _)


def tag_text(page: Any) -> str:
    return page.locator("#case-status .tag--status").inner_text().strip()


# ------------------------------------------------------------------------------ 1. the journey


def test_a_patient_sends_a_case_on_a_phone_in_ukrainian(
    phone: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, _platform = running_platform
    _ = UK
    page = phone
    email = unique_email("journey")

    page.goto(f"{web_url}/")
    expect(page.locator("html")).to_have_attribute("lang", "uk")
    check_page(page)
    shoot(page, "patient-01-start-uk")
    start = page.get_by_role("button", name=_("Start now"))
    expect(start).to_have_text("Почати")
    start.click()

    answer_questions(page, _, email, check=True, shots=True)
    check_page(page)
    answers = page.locator(".summary-list")
    for shown in ("C50.4", "cT2N1M0", email, "Німеччина"):
        expect(answers).to_contain_text(shown)
    expect(answers).to_contain_text(_("Help to choose between treatments"))
    # Seven questions, the destination's with two answers (where, and who chooses the center).
    expect(answers.get_by_role("link", name=re.compile(_("Change")))).to_have_count(8)
    shoot(page, "patient-03-check-uk")
    reference = create_case(page, _)

    check_page(page)
    tasks = page.locator(".task-list")
    expect(tasks.locator(".tag--done")).to_have_count(1)  # the answers
    shoot(page, "patient-04-task-list-uk")

    page.get_by_role("link", name=_("Documents"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case/documents$"))
    check_page(page)
    expect(page.locator("#documents")).to_contain_text(_("No documents yet."))
    upload(page, _, "pathology_report", PATHOLOGY_REPORT)
    notice = _("Your document %(name)s was uploaded. We check it when you send your case.") % {
        "name": PATHOLOGY_REPORT.name
    }
    expect(page.get_by_role("status")).to_have_text(notice)
    expect(page.get_by_role("status")).to_be_in_viewport()  # not left scrolled off the top
    expect(page).to_have_url(re.compile(r"/case/documents$"))
    # In a draft a document is read at once but judged when the case is sent: the page says so.
    document = page.locator("#documents .document", has_text=PATHOLOGY_REPORT.name)
    expect(document.locator(".document__verdict")).to_have_text(
        _("Received. We check it when you send your case.")
    )
    expect(document.locator(".document__kind")).to_have_text(
        _("Pathology, biopsy or immunohistochemistry report")
    )
    check_page(page)
    shoot(page, "patient-05-documents-uk")
    page.get_by_role("link", name=_("Back to your case")).click()

    expect(page).to_have_url(re.compile(r"/case$"))
    check_page(page)
    expect(page.locator("#task-documents-status")).to_have_text(_("Done"))
    page.get_by_role("link", name=_("Consent"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case/consent$"))
    check_page(page)
    give_consent(page, _)
    expect(page.locator("#task-consent-status")).to_have_text(_("Done"))

    page.get_by_role("link", name=_("Family history, medicines and allergies")).click()
    expect(page).to_have_url(re.compile(r"/case/preparation$"))
    check_page(page)
    page.get_by_label(_("Cancer in your family")).fill("Мама: рак грудної залози у 52 роки")
    page.get_by_role("button", name=_("Save"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/case$"))
    check_page(page)
    expect(page.locator("#task-preparation-status")).to_have_text(_("Done"))

    page.get_by_role("link", name=_("Send your case")).click()
    expect(page).to_have_url(re.compile(r"/case/submit$"))
    check_page(page)
    expect(page.locator("main")).to_contain_text(PATHOLOGY_REPORT.name)
    page.get_by_role("button", name=_("Send my case")).click()

    expect(page).to_have_url(re.compile(r"/case/submitted$"))
    check_page(page)
    expect(page.locator("#case-reference")).to_have_text(reference)
    expect(page.get_by_role("heading", level=1)).to_have_text(_("Your case was sent"))
    shoot(page, "patient-06-confirmation-uk")

    page.get_by_role("link", name=_("Follow your case")).click()
    expect(page).to_have_url(re.compile(r"/case/status$"))
    check_page(page)
    in_words = {UK(words) for words in CASE_STATUSES.values()} - {UK(CASE_STATUSES["draft"])}
    status = tag_text(page)
    assert status in in_words, f"the status is not in words: {status!r}"
    timeline = page.locator("#timeline")
    expect(timeline.locator(".timeline__item").first).to_be_visible()
    expect(timeline).to_contain_text(_("You sent the case."))
    expect(page.locator("#case-status")).to_have_attribute("aria-live", "polite")
    # The language check now knows the center's languages: the English report is accepted.
    wait_accepted(page, _, PATHOLOGY_REPORT.name, "uk")
    check_page(page)
    shoot(page, "patient-07-status-uk")

    # The patient is told by e-mail too, in Ukrainian, with the same reference.
    deadline = time.monotonic() + 60
    while not (mails := _mails(Path(stack.mail_dir), email, reference)):
        assert time.monotonic() < deadline, f"no e-mail to {email} about {reference}"
        time.sleep(0.5)
    assert re.search("[А-Яа-яІіЇїЄєҐґ]", mails[0].subject), mails[0].subject


def _mails(directory: Path, email: str, reference: str) -> list[Any]:
    return [m for m in list_messages(directory) if email in m.recipients and reference in m.subject]


# ------------------------------------------------------------------------ 2. bad input kept


def test_bad_input_is_explained_and_nothing_typed_is_lost(phone: Any, web_url: str) -> None:
    _ = UK
    page = phone
    page.goto(f"{web_url}/new/diagnosis")
    email = unique_email("typo")
    answer_questions(page, _, "placeholder@example.org")

    # Back to the contact page from "Check your answers", with a mistake in the address.
    page.goto(f"{web_url}/new/contact?return=check")
    page.get_by_label(_("E-mail address")).fill("olena.kovalenko-at-ukr.net")
    page.get_by_label(_("Mobile phone number")).fill("+380 50 123 45 67")
    page.get_by_role("button", name=_("Continue"), exact=True).click()

    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile("^" + re.escape(_("Error:"))))
    message = _("Enter an e-mail address in the right format, like name@example.com")
    link = summary.get_by_role("link", name=message)
    expect(link).to_have_attribute("href", "#email")
    field = page.get_by_label(_("E-mail address"))
    expect(field).to_have_value("olena.kovalenko-at-ukr.net")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile(r"\bemail-error\b"))
    expect(page.locator("#email-error")).to_contain_text(message)
    expect(page.get_by_label(_("Mobile phone number"))).to_have_value("+380 50 123 45 67")
    expect(page.get_by_label(_("E-mail"), exact=True)).to_be_checked()
    check_page(page)
    shoot(page, "patient-08-error-uk")
    link.click()
    expect(page).to_have_url(re.compile(r"#email$"))
    expect(field).to_be_in_viewport()

    field.fill(email)
    page.get_by_role("button", name=_("Continue"), exact=True).click()
    expect(page).to_have_url(re.compile(r"/new/check$"))
    answers = page.locator(".summary-list")
    for kept in ("C50.4", "cT2N1M0", email, "+380501234567", "Німеччина"):
        expect(answers).to_contain_text(kept)
    create_case(page, _)

    # A good document, then a program by mistake: refused in words, the good one still there.
    page.goto(f"{web_url}/case/documents")
    upload(page, _, "pathology_report", PATHOLOGY_REPORT)
    expect(page.get_by_role("status")).to_be_visible()
    program = {
        "name": "scan.exe",
        "mimeType": "application/octet-stream",
        "buffer": b"MZ\x90\x00\x03\x00\x00\x00" + os.urandom(4096),
    }
    upload(page, _, "pathology_report", program)
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    refused = _(UPLOAD_MESSAGES["upload-unsupported-type"])
    expect(summary.get_by_role("link", name=refused)).to_have_attribute("href", "#file")
    expect(page.locator("#file-error")).to_contain_text(refused)
    expect(page.get_by_label(_("What is this document?"))).to_have_value("pathology_report")
    documents = page.locator("#documents .document")
    expect(documents).to_have_count(1)
    expect(documents).to_contain_text(PATHOLOGY_REPORT.name)
    expect(page.locator("#documents")).not_to_contain_text("scan.exe")
    check_page(page)


# ------------------------------------------------------------------------ 3. live status


def test_the_status_page_follows_the_case_without_a_reload(
    phone: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    """Pushed, not polled: the page opens one Server-Sent Events stream from the app (fed by
    intake's stream of the case) and asks for nothing else while the center accepts."""
    _stack, platform = running_platform
    page = phone
    reference = submitted_case(page, web_url, unique_email("live"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.url.startswith(web_url) else None)
    # The browser's EventSource connects to the app's stream of the case.
    with page.expect_request(lambda r: "/case/status/events" in r.url, timeout=30_000):
        page.goto(f"{web_url}/case/status")
    expect(page.locator("script[src='/static/live.js']")).to_be_attached()
    expect(page.locator("#case-status")).to_have_attribute("data-live-events", re.compile("."))
    check_page(page)

    referred = UK(CASE_STATUSES["referred"])
    accepted = UK(CASE_STATUSES["accepted"])
    offer = _offer(platform, reference, timeout=120)
    # The region may still show an earlier status: it catches up by itself, no reload.
    page.evaluate("() => { window.__sameDocument = true; }")
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    expect(page.locator("#case-status .tag--status")).to_have_text(referred, timeout=30_000)
    requests.clear()

    due = datetime.now(UTC) + timedelta(days=10)
    answer = httpx.post(
        f"{platform.apis['partners']}/v1/partner/referrals/{offer['id']}/accept",
        json={"expected_opinion_at": due.isoformat()},
        headers={"X-Api-Key": offer["key"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    expect(page.locator("#case-status .tag--status")).to_have_text(
        accepted, timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("#timeline")).to_contain_text(
        UK("The cancer center accepted the case."), timeout=LIVE_TIMEOUT_MS
    )
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    assert not navigations, f"the page navigated: {navigations}"
    # Nothing was polled: the news came down the open stream (a reconnect of it at most).
    assert all("/case/status/events" in url for url in requests), requests
    expect(page).to_have_url(re.compile(r"/case/status$"))
    check_page(page)


def _offer(platform: Any, reference: str, *, timeout: float) -> dict[str, Any]:
    """The offer of the case with `reference`, as its center sees it, with that center's key."""
    keys: dict[str, str] = platform.keys()["centers"]
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=platform.apis["partners"], timeout=10) as client:
        while True:
            for code, key in sorted(keys.items()):
                listed = client.get(
                    "/v1/partner/referrals",
                    params={"status": "offered"},
                    headers={"X-Api-Key": key},
                )
                assert listed.status_code == 200, listed.text
                for referral in listed.json():
                    if case_reference(uuid.UUID(referral["case_id"])) == reference:
                        return {**referral, "key": key, "center": code}
            assert time.monotonic() < deadline, f"no center was offered case {reference}"
            time.sleep(1)


# ------------------------------------------------------------------------ 4. keyboard only


def test_a_new_case_can_be_made_with_the_keyboard_only(desktop: Any, web_url: str) -> None:
    _ = EN
    page = desktop
    keys = page.keyboard
    page.goto(f"{web_url}/")
    expect(page.locator("html")).to_have_attribute("lang", "uk")  # Ukrainian first, always

    def tab_to(target: Any, *, backwards: bool = False, limit: int = 60) -> None:
        """Tab (or Shift+Tab) until `target` has the focus, and check the focus is visible."""
        handle = target.element_handle()
        for _i in range(limit):
            if page.evaluate("(e) => document.activeElement === e", handle):
                break
            keys.press("Shift+Tab" if backwards else "Tab")
        else:
            pytest.fail(f"{target} never got the focus with {'Shift+' * backwards}Tab")
        shown = page.evaluate(
            """(e) => {
                const s = getComputedStyle(e);
                return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)
                    || s.boxShadow !== 'none' || s.backgroundColor === 'rgb(255, 221, 0)';
            }""",
            handle,
        )
        tag = page.evaluate("(e) => e.type", handle)
        if tag not in ("radio", "checkbox"):  # their focus ring is drawn on the label
            assert shown, f"no visible focus on {target}"

    tab_to(page.get_by_role("link", name=UK("Skip to main content")))
    tab_to(page.get_by_role("link", name="English"))
    keys.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    tab_to(page.get_by_role("button", name=_("Start now")))
    keys.press("Enter")
    expect(page).to_have_url(re.compile(r"/new/diagnosis$"))

    def submit(next_path: str) -> None:
        tab_to(page.get_by_role("button", name=_("Continue"), exact=True))
        keys.press("Enter")
        expect(page).to_have_url(re.compile(re.escape(next_path) + r"$"))

    code = page.get_by_label(_("Diagnosis code (ICD-10)"))
    tab_to(code)
    keys.type("c50.4")
    submit("/new/stage")

    tab_to(page.get_by_label(_("TNM stage")))
    keys.type("cT2N1M0")
    keys.press("Enter")  # a text field sends its form
    expect(page).to_have_url(re.compile(r"/new/reasons$"))

    tab_to(page.get_by_label(_("Help to choose between treatments")))
    keys.press("Space")
    expect(page.get_by_label(_("Help to choose between treatments"))).to_be_checked()
    submit("/new/questions")

    tab_to(page.get_by_label(_("Question %(number)s") % {"number": 2}))
    tab_to(page.get_by_label(_("Question %(number)s") % {"number": 1}), backwards=True)
    keys.type("Which treatment would you recommend?")
    submit("/new/destination")

    tab_to(page.get_by_label(_("A cancer center in Ukraine")))
    keys.press("ArrowDown")  # the group's next choice: abroad
    keys.press("ArrowDown")  # … and the countries I choose
    expect(page.get_by_label(_("A cancer center in the countries I choose"))).to_be_checked()
    country = page.get_by_label(_("Country %(number)s") % {"number": 1})
    tab_to(country)
    keys.type("Germany")
    expect(country).to_have_value("DE")
    submit("/new/date-of-birth")

    tab_to(page.get_by_label(_("Day")))
    keys.type("12")
    keys.press("Tab")
    keys.type("4")
    keys.press("Tab")
    keys.type("1979")
    expect(page.get_by_label(_("Year"))).to_have_value("1979")
    submit("/new/contact")

    email = unique_email("keyboard")
    tab_to(page.get_by_label(_("E-mail address")))
    keys.type(email)
    submit("/new/check")

    check_page(page)
    expect(page.locator(".summary-list")).to_contain_text(email)
    expect(page.locator(".summary-list")).to_contain_text("C50.4")
    tab_to(page.get_by_role("button", name=_("Create my case")))
    keys.press("Enter")
    expect(page).to_have_url(re.compile(r"/case$"))
    expect(page.locator(".caption .reference")).to_have_text(REFERENCE)
    # The task list's first part, reached from the top of the page by the keyboard.
    tab_to(page.get_by_role("link", name=_("Documents"), exact=True))
    keys.press("Enter")
    expect(page).to_have_url(re.compile(r"/case/documents$"))
