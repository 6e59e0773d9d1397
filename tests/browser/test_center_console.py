"""A cancer center's doctor does the center's whole job in the browser, on the real platform.

A partner front end opens and submits a case through intake's and records' APIs; routing offers
it to a center. That center's staff member (the one `devstack` makes, or one made now with the
web app's CLI when routing chose another center) signs in to the console on a laptop with the
code the mail sink received, opens the offer, reads a document, accepts, asks the patient for
information (first with a due date partners refuses: its problem is shown on the form with
everything typed kept), the patient answers through intake's API, and the doctor uploads and
delivers the written opinion with its outcome: a large PDF that goes in parts through the web app
to records' resumable opinion upload, with a progress bar, and resumes after the connection drops
while part 2 is on its way; the case becomes `opinion_delivered`. The patient asks a follow-up
question through intake's API and the doctor answers it with documents: a file records refuses is
named on the form with the answer's words and the stored document kept, then the answer goes with
two documents, which reach the patient's case at intake. Then the doctor offers times for the
consultation meeting.

axe-core on every console page (0 serious or critical); screenshots of the main pages in
docs/screenshots/center-0N-*.png.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from devstack.demo import CASE, CONSENT_VERSION, sample
from devstack.mailsink import list_messages
from devstack.platform import WEB_ENV_FILE
from referrals_web.i18n import translations
from referrals_web.vocabulary import REFERRAL_STATUSES, case_reference
from tests.browser.test_patient_journey import SAMPLES, _offer, check_page, shoot

pytestmark = pytest.mark.browser

EN: Callable[[str], str] = translations("en").gettext
OPINION = SAMPLES / "opinion_en.pdf"
HER2_REVIEW = SAMPLES / "her2_review_en.pdf"
TIMEOUT_S = 120
MIB = 1024 * 1024
PARTS_TIMEOUT_MS = 180_000  # 8 MB parts through the app and records, on a busy 2-core machine
OPINION_PART = re.compile(r"/center/referrals/[0-9a-f-]+/opinion/uploads/[0-9a-f-]+/parts/(\d+)$")


def large_pdf(size: int) -> bytes:
    """The sample opinion grown to `size` bytes: the padding is a PDF comment, and an
    incremental-update trailer after it points at the original cross-reference table (records
    checks a PDF's header and trailer)."""
    base = OPINION.read_bytes()
    where = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", base)
    assert where, "the sample opinion ends with its trailer"
    tail = b"\nstartxref\n" + where[1] + b"\n%%EOF\n"
    padding = os.urandom(size - len(base) - len(tail) - 2)
    return base + b"\n%" + padding.replace(b"\n", b" ").replace(b"\r", b" ") + tail


# ------------------------------------------------------------------ the patient's side (API)


class FrontEnd:
    """The partner front end, through intake's and records' public APIs (synchronous)."""

    def __init__(self, platform: Any) -> None:
        self.key = str(platform.keys()["front_end"])
        self.intake = httpx.Client(base_url=platform.apis["intake"], timeout=30)
        self.records = httpx.Client(base_url=platform.apis["records"], timeout=60)
        self.case_id = ""

    def close(self) -> None:
        self.intake.close()
        self.records.close()

    def token(self) -> dict[str, str]:
        """A fresh case access token (they are short-lived; the test runs for minutes)."""
        response = self.intake.post(
            f"/v1/cases/{self.case_id}/access-token", headers={"X-Api-Key": self.key}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def open_and_submit(self) -> str:
        """The demo's case (C50.4, for Germany) with an English pathology report, submitted."""
        created = self.intake.post(
            "/v1/cases",
            json={**CASE, "contact": {"email": f"patient-{uuid.uuid4().hex[:8]}@example.org"}},
            headers={"X-Api-Key": self.key, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert created.status_code == 201, created.text
        self.case_id = created.json()["case"]["id"]
        auth = self.token()
        for kind in ("processing", "cross_border"):
            given = self.intake.put(
                f"/v1/cases/{self.case_id}/consents/{kind}",
                json={"version": CONSENT_VERSION},
                headers=auth,
            )
            assert given.status_code == 200, given.text
        report = "pathology_report_en.pdf"
        uploaded = self.records.post(
            f"/v1/cases/{self.case_id}/documents",
            data={"kind": "pathology_report"},
            files={"file": (report, sample(report), "application/pdf")},
            headers=auth,
        )
        assert uploaded.status_code == 201, uploaded.text
        self.wait(lambda case: len(case["documents"]) == 1, "the document at intake")
        submitted = self.intake.post(
            f"/v1/cases/{self.case_id}/submit",
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert submitted.status_code == 200, submitted.text
        return self.case_id

    def read(self) -> dict[str, Any]:
        response = self.intake.get(f"/v1/cases/{self.case_id}", headers=self.token())
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(self, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while not done(case := self.read()):
            assert time.monotonic() < deadline, f"{what}: the case is {case['status']}"
            time.sleep(0.5)
        return case

    def ask(self, question: str) -> None:
        """A follow-up question on the opinion, through intake's API."""
        asked = self.intake.post(
            f"/v1/cases/{self.case_id}/follow-up-questions",
            json={"question": question},
            headers={**self.token(), "Idempotency-Key": str(uuid.uuid4())},
        )
        assert asked.status_code in (200, 201), asked.text

    def answer(self, words: str) -> None:
        """The patient's answer to the center's open request, in words."""
        case = self.wait(
            lambda c: any(r["status"] == "open" for r in c.get("information_requests") or []),
            "the center's request at intake",
        )
        request = next(r for r in case["information_requests"] if r["status"] == "open")
        path = f"/v1/cases/{self.case_id}/information-requests/{request['id']}/answer"
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            sent = self.intake.post(
                path,
                json={"answer": words},
                headers={**self.token(), "Idempotency-Key": f"answer-{request['id']}"},
            )
            if sent.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(float(sent.headers.get("retry-after", "1")))
        assert sent.status_code == 200, sent.text


# ------------------------------------------------------------------------------ helpers


def staff_of(center: str, platform: Any) -> str:
    """The e-mail of a console staff member of `center`: devstack's, or one made now with the
    web app's CLI (the center's key in the environment, as an operator would give it)."""
    if platform.staff.get("center") == center:
        return str(platform.staff["email"])
    email = f"doctor@{center}.localhost"
    env = json.loads((Path(platform.root) / WEB_ENV_FILE).read_text())
    env["REFERRALS_WEB_CENTER_KEY"] = platform.keys()["centers"][center]
    argv = [sys.executable, "-m", "referrals_web", "staff", "add", "--email", email]
    made = subprocess.run(
        [*argv, "--center", center, "--name", "Dr. Test Reviewer"],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert env["REFERRALS_WEB_CENTER_KEY"] not in made.stdout + made.stderr
    return email


def console_code(mail_dir: str, email: str, since: datetime) -> str:
    """The newest console sign-in code the mail sink received for `email` since `since`."""
    subject = EN("Your sign-in code for the center console")
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
        assert time.monotonic() < deadline, f"no console code for {email} in the mail sink"
        time.sleep(0.3)


def fill_day(page: Any, prefix: str, day: datetime) -> None:
    page.locator(f"#{prefix}_day").fill(str(day.day))
    page.locator(f"#{prefix}_month").fill(str(day.month))
    page.locator(f"#{prefix}_year").fill(str(day.year))


def status_of(page: Any) -> str:
    return page.locator("#referral-status .tag--status").inner_text().strip()


def reload_until(page: Any, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"{page.url}: still no {what}"
        page.wait_for_timeout(1000)
        page.reload()


# ------------------------------------------------------------------------- the whole job


# The whole job, with a 17 MB opinion in parts through two hops and a follow-up answer's
# documents, outlasts the default 300 s on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_a_center_doctor_does_the_whole_job_in_the_browser(
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
        email = staff_of(offer["center"], platform)
        began = datetime.now(UTC) - timedelta(seconds=1)

        # Sign in: no session, so the console sends the doctor to its sign-in page.
        page.goto(f"{web_url}/center")
        expect(page).to_have_url(re.compile(r"/center/sign-in$"))
        expect(page.locator("html")).to_have_attribute("lang", "en")
        check_page(page)
        shoot(page, "center-01-sign-in")
        page.get_by_label(_("Work e-mail address")).fill(email)
        page.get_by_role("button", name=_("Send me a code")).click()
        expect(page).to_have_url(re.compile(r"/center/sign-in/code$"))
        check_page(page)
        page.get_by_label(_("Code")).fill(console_code(stack.mail_dir, email, began))
        page.get_by_role("button", name=_("Sign in"), exact=True).click()

        # The inbox: the offer with its deadline, soonest first.
        expect(page).to_have_url(re.compile(r"/center$"))
        check_page(page)
        offers = page.locator("#offers")
        row = offers.locator("tr", has_text=reference)
        expect(row).to_be_visible()
        expect(row).to_contain_text("C50.4")
        expect(row).to_contain_text("UTC")
        shoot(page, "center-02-inbox")
        row.get_by_role("link", name=reference).click()

        # The referral: the case without contact data, its documents once records has them.
        expect(page).to_have_url(re.compile(rf"/center/referrals/{offer['id']}$"))
        expect(page.locator("#referral-status")).to_contain_text(_(REFERRAL_STATUSES["offered"]))
        expect(page.locator("#questions")).to_contain_text(CASE["questions"][0])
        main = page.locator("main")
        for private in ("olena", "@example.org", "+380", "1979"):
            expect(main).not_to_contain_text(private)
        reload_until(page, lambda: page.locator("#documents").count() > 0, "documents")
        check_page(page)
        shoot(page, "center-03-referral")
        document = page.locator("#documents .document-row").first
        expect(document).to_contain_text("pathology-report-1.pdf")
        with page.expect_download() as downloaded:
            document.get_by_role("link", name=re.compile(_("Download"))).click()
        assert Path(downloaded.value.path()).read_bytes().startswith(b"%PDF-")

        # Accept, with the day the opinion is expected.
        page.get_by_role("link", name=_("Accept the referral")).click()
        expect(page).to_have_url(re.compile(r"/accept$"))
        check_page(page)
        shoot(page, "center-04-accept")
        fill_day(page, "opinion", datetime.now(UTC) + timedelta(days=10))
        page.get_by_role("button", name=_("Accept the referral")).click()
        expect(page.locator("#flash")).to_contain_text(_("You accepted the referral."))
        assert status_of(page) == _(REFERRAL_STATUSES["accepted"])
        check_page(page)

        # Ask for information: a due date partners refuses first, kept with everything typed.
        page.get_by_role("link", name=_("Ask the patient for information")).click()
        check_page(page)
        item = page.locator("#item-1")
        item.get_by_label(_("Kind")).select_option("question")
        detail = "Did the tumour grow during the last cycle of chemotherapy?"
        item.get_by_label(_("What exactly")).fill(detail)
        reason = "Our tumour board needs to know the response to chemotherapy."
        page.get_by_label(_("Why your center needs it")).fill(reason)
        fill_day(page, "due", datetime.now(UTC) + timedelta(days=120))
        page.get_by_role("button", name=_("Send the request to the patient")).click()
        summary = page.locator("#error-summary")
        expect(summary).to_be_visible()
        expect(summary).to_be_focused()
        expect(summary).to_contain_text("within 90 days")
        expect(summary.get_by_role("link")).to_have_attribute("href", "#due_day")
        expect(page.locator("#due_at-error")).to_contain_text("within 90 days")
        expect(item.get_by_label(_("Kind"))).to_have_value("question")
        expect(item.get_by_label(_("What exactly"))).to_have_value(detail)
        expect(page.get_by_label(_("Why your center needs it"))).to_have_value(reason)
        expect(page).to_have_title(re.compile("^" + re.escape(_("Error:"))))
        check_page(page)
        shoot(page, "center-05-request-refused")
        fill_day(page, "due", datetime.now(UTC) + timedelta(days=3))
        page.get_by_role("button", name=_("Send the request to the patient")).click()
        expect(page.locator("#flash")).to_contain_text(_("Your request was sent."))
        assert status_of(page) == _(REFERRAL_STATUSES["info_requested"])
        check_page(page)

        # The patient answers through intake's API; the referral is the center's again.
        answer = "No, the tumour shrank: the last ultrasound measured 18 mm."
        front.answer(answer)
        reload_until(page, lambda: status_of(page) == _(REFERRAL_STATUSES["accepted"]), "answer")
        expect(page.locator(".answer")).to_contain_text(answer)
        check_page(page)
        shoot(page, "center-06-answered")

        # The written opinion with its outcome, delivered: a large PDF, in parts; the
        # connection drops while part 2 is on its way, and the upload goes on from there.
        page.get_by_role("link", name=_("Upload and deliver the opinion")).click()
        expect(page).to_have_url(re.compile(r"/opinion$"))
        check_page(page)
        sent: list[int] = []

        def drop_part_2_once(route: Any) -> None:
            number = int(OPINION_PART.search(route.request.url)[1])  # type: ignore[index]
            sent.append(number)
            if number == 2 and sent.count(2) == 1:
                route.abort("connectionreset")
            else:
                route.continue_()

        page.route(OPINION_PART, drop_part_2_once)
        page.get_by_label(_("The written opinion (PDF)")).set_input_files(
            {"name": "opinion.pdf", "mimeType": "application/pdf", "buffer": large_pdf(17 * MIB)}
        )
        page.get_by_label(_("Refined: the same disease, described more precisely")).check()
        page.get_by_label(_("The refined or changed diagnosis (ICD-10)")).fill("C50.4")
        page.locator("fieldset", has_text=_("The stage")).get_by_label(_("Confirmed")).check()
        page.get_by_label(_("We propose another treatment")).check()
        page.get_by_label(_("Further tests you recommend (optional)")).fill(
            "HER2 in situ hybridisation on block A2"
        )
        page.get_by_label(_("The opinion mentions clinical-trial options")).check()
        shoot(page, "center-07-opinion")
        page.get_by_role("button", name=_("Deliver the opinion to the patient")).click()
        progress = page.get_by_label(_("Uploading"))
        expect(progress).to_be_visible()
        expect(page.locator("#upload-progress-text")).to_have_text(
            _("The connection was lost. The upload goes on from where it stopped…"),
            timeout=PARTS_TIMEOUT_MS,
        )
        assert int(progress.get_attribute("value") or "0") >= 40  # part 1 of 3 is in
        check_page(page)
        shoot(page, "center-07b-opinion-resuming")
        expect(page.locator("#flash")).to_contain_text(
            _("Your opinion was delivered."), timeout=PARTS_TIMEOUT_MS
        )
        assert sent == [1, 2, 2, 3], sent  # part 2 again after the drop, nothing else twice
        page.unroute(OPINION_PART)
        assert status_of(page) == _(REFERRAL_STATUSES["completed"])
        expect(page.locator("#outcome")).to_contain_text(_("We propose another treatment"))
        expect(page.locator("#console-actions")).to_contain_text(_("Delivered the opinion"))
        check_page(page)
        shoot(page, "center-08-delivered")

        case = front.wait(lambda c: c["status"] == "opinion_delivered", "the opinion")
        assert case["opinion_outcome"]["treatment"] == "alternative_proposed"

        # A follow-up question, answered with documents: a file records refuses is named, with
        # the words and the document already stored kept; then the answer goes with two.
        front.ask("Is radiotherapy still needed after the surgery you propose?")
        link = page.get_by_role("link", name=_("Answer this question"))
        reload_until(page, lambda: link.count() > 0, "follow-up question")
        link.click()
        expect(page).to_have_url(re.compile(r"/follow-up/[0-9a-f-]+$"))
        check_page(page)
        words = "Yes, after surgery: see the attached HER2 review and the radiotherapy plan."
        page.get_by_label(_("Your answer")).fill(words)
        files = page.get_by_label(_("Documents for the patient (optional)"))
        files.set_input_files(
            [
                {
                    "name": "her2-review.pdf",
                    "mimeType": "application/pdf",
                    "buffer": HER2_REVIEW.read_bytes(),
                },
                {
                    "name": "macro.exe",
                    "mimeType": "application/octet-stream",
                    "buffer": b"MZ\x90\x00" + os.urandom(2048),
                },
            ]
        )
        page.get_by_role("button", name=_("Send the answer")).click()
        summary = page.locator("#error-summary")
        expect(summary).to_be_focused()
        expect(summary).to_contain_text("macro.exe")
        expect(page.get_by_label(_("Your answer"))).to_have_value(words)
        expect(page.locator("#attached-files")).to_contain_text("her2-review.pdf")
        check_page(page)
        shoot(page, "center-12-follow-up-file-refused")
        plan = OPINION.read_bytes() + b"% radiotherapy plan\n"
        files.set_input_files(
            {"name": "radiotherapy-plan.pdf", "mimeType": "application/pdf", "buffer": plan}
        )
        page.get_by_role("button", name=_("Send the answer")).click()
        flash = page.locator("#flash")
        wait = _(
            "The platform is still checking your documents. Wait a minute, then send the "
            "answer again: your words and documents are kept."
        )
        still = page.locator("#error-summary", has_text=wait)
        expect(flash.or_(still)).to_be_visible(timeout=60_000)
        if still.count():  # partners had not yet heard of the documents: send again
            page.get_by_role("button", name=_("Send the answer")).click()
        expect(flash).to_contain_text(_("Your answer was sent."))
        expect(page.locator("#follow-ups .answer-documents")).to_have_text(
            _("%(count)s documents went to the patient with your answer.") % {"count": 2}
        )
        check_page(page)
        shoot(page, "center-13-follow-up-answered")
        case = front.wait(
            lambda c: any(q.get("answer") for q in c.get("follow_up_questions") or []),
            "the answer at intake",
        )
        assert len(case["follow_up_questions"][0]["document_ids"]) == 2

        # Times for the consultation meeting at which the doctors explain the opinion.
        page.get_by_role("link", name=_("Offer times for the consultation meeting")).click()
        expect(page).to_have_url(re.compile(r"/meeting$"))
        check_page(page)
        page.get_by_label(_("By video call")).check()
        page.get_by_label(_("The video call's link (for a video call)")).fill(
            "https://meet.example.org/tumour-board-7"
        )
        page.get_by_label(_("Time zone of the times below")).select_option("Europe/Berlin")
        slot = page.locator("#slot-1")
        when = datetime.now(UTC) + timedelta(days=4)
        slot.get_by_label(_("Day")).fill(str(when.day))
        slot.get_by_label(_("Month")).fill(str(when.month))
        slot.get_by_label(_("Year")).fill(str(when.year))
        slot.get_by_label(_("Starts at")).fill("14:30")
        shoot(page, "center-09-meeting")
        page.get_by_role("button", name=_("Send the times to the patient")).click()
        expect(page.locator("#flash")).to_contain_text(_("The times were sent."))
        expect(page.locator("#meetings")).to_contain_text(
            _("Times offered: waiting for the patient to choose")
        )
        check_page(page)

        page.goto(f"{web_url}/center")
        expect(page.locator("#closed")).to_contain_text(reference)
        check_page(page)
    finally:
        front.close()
