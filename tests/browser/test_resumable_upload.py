"""A dropped upload resumed, in a real browser against the real platform: on a phone in
Ukrainian, a 20 MB imaging study goes to records in three parts through the web app; the
connection drops while part 2 is on its way (the request is cut once); the page says so, asks
where to resume and sends part 2 again, then part 3; the document is stored once and shown with
its verdict. axe-core: 0 serious or critical while the progress is shown and after."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.support import axe_check
from tests.browser.test_patient_journey import UK, answer_questions, create_case, shoot

pytestmark = pytest.mark.browser

MIB = 1024 * 1024
PARTS_TIMEOUT_MS = 180_000  # 8 MB parts through the app and records, on a busy 2-core machine
PART_PATH = re.compile(r"/case/uploads/[0-9a-f-]+/parts/(\d+)$")


def dicom_study(size: int) -> bytes:
    start = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
    return start + os.urandom(size - len(start))


def test_a_dropped_upload_resumes_from_where_it_stopped(phone: Any, web_url: str) -> None:
    _ = UK
    page = phone
    page.goto(f"{web_url}/new/diagnosis")
    answer_questions(page, _, f"patient-resume-{uuid.uuid4().hex[:10]}@example.org")
    create_case(page, _)
    page.goto(f"{web_url}/case/documents")
    axe_check(page)

    sent: list[int] = []
    cut: list[int] = []

    def drop_part_2_once(route: Any) -> None:
        number = int(PART_PATH.search(route.request.url)[1])  # type: ignore[index]
        sent.append(number)
        if number == 2 and not cut:
            cut.append(number)
            route.abort("connectionreset")  # the connection drops mid-upload
        else:
            route.continue_()

    page.route(PART_PATH, drop_part_2_once)
    name = "КТ_грудної_клітки.dcm"
    page.get_by_label(_("What is this document?")).select_option("imaging_study")
    page.get_by_label(_("Choose the file")).set_input_files(
        {"name": name, "mimeType": "application/dicom", "buffer": dicom_study(20 * MIB)}
    )
    page.get_by_role("button", name=_("Upload the document")).click()

    # The page says the connection was lost, with the progress still shown, labelled.
    progress = page.get_by_label(_("Uploading"))
    expect(progress).to_be_visible()
    expect(page.locator("#upload-progress-text")).to_have_text(
        _("The connection was lost. The upload goes on from where it stopped…"),
        timeout=PARTS_TIMEOUT_MS,
    )
    assert page.locator("#upload-progress-text").get_attribute("aria-live") == "polite"
    assert int(progress.get_attribute("value") or "0") >= 30  # part 1 of 3 is in
    axe_check(page)
    shoot(page, "patient-upload-resuming-uk")

    # Resumed, completed: the documents page again, with its notice and the document.
    notice = _("Your document %(name)s was uploaded. We check it when you send your case.")
    expect(page.get_by_role("status")).to_have_text(
        notice % {"name": name}, timeout=PARTS_TIMEOUT_MS
    )
    expect(page).to_have_url(re.compile(r"/case/documents$"))
    document = page.locator(".document", has_text=name)
    expect(document).to_have_count(1)
    expect(document.locator(".document__verdict")).to_have_text(
        _("Received. We check it when you send your case.")
    )
    assert sent == [1, 2, 2, 3], sent  # part 2 again after the drop, nothing else twice
    axe_check(page)
