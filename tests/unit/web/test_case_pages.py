"""The draft case: its task list, documents (upload, verdicts in words), consent, checklist,
sending it, and the confirmation with its reference."""

from __future__ import annotations

import re
from uuid import UUID

import pytest

from tests.unit.web.conftest import Browser, open_case
from tests.unit.web.fake_platform import FakePlatform, parse_multipart, problem

pytestmark = pytest.mark.unit


def only_case(fake: FakePlatform) -> UUID:
    [case_id] = fake.cases
    return case_id


async def test_the_task_list_says_what_is_done_and_what_is_not(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)

    page = await browser.get("/case")

    statuses = re.findall(r'class="tag tag--[a-z]+">([^<]+)<', page.text)
    assert statuses == [
        "Виконано",
        "Не розпочато",
        "Не розпочато",
        "Не розпочато",
        "Поки недоступно",
    ]
    fake.add_document(
        only_case(fake),
        kind="pathology_report",
        check="translation_required",
        language="ro",
        detail="written in ro; needs a translation into en or de",
    )
    page = await browser.get("/case")
    assert "Потребує вашої уваги" in page.text
    assert "1 документ завантажено" in page.text


async def test_an_upload_goes_to_records_with_the_case_token(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)

    response = await browser.post(
        "/case/documents",
        {"kind": "pathology_report", "translation_of": ""},
        files={"file": ("histology.pdf", b"%PDF-1.7 report", "application/pdf")},
    )

    assert response.status_code == 303
    [upload] = fake.requests_to("POST", r"records\.test/v1/cases/.+/documents$")
    assert upload.headers["authorization"].startswith("Bearer eyJ.case-token-")
    assert "x-api-key" not in upload.headers
    parts = parse_multipart(upload.headers["content-type"], upload.body)
    assert list(parts) == ["kind", "file"]  # the fields before the file, as records wants
    assert parts["kind"] == (None, b"pathology_report")
    assert parts["file"] == ("histology.pdf", b"%PDF-1.7 report")
    page = await browser.get("/case/documents")
    assert "histology.pdf" in page.text
    assert "Документ histology.pdf завантажено" in page.text


async def test_a_translation_names_its_original(browser: Browser, fake: FakePlatform) -> None:
    await open_case(browser)
    original = fake.add_document(only_case(fake), file_name="raport.pdf")

    await browser.post(
        "/case/documents",
        {"kind": "", "translation_of": original},
        files={"file": ("report-en.pdf", b"%PDF-1.7 en", "application/pdf")},
    )

    [upload] = fake.requests_to("POST", r"records\.test/v1/cases/.+/documents$")
    parts = parse_multipart(upload.headers["content-type"], upload.body)
    assert list(parts) == ["kind", "translation_of", "file"]
    assert parts["kind"][1] == b"translation"
    assert parts["translation_of"][1] == original.encode()


async def test_an_upload_without_a_file_or_a_kind_is_explained(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)

    page = await browser.post("/case/documents", {"kind": ""})

    assert page.status_code == 422
    assert '<a href="#kind">' in page.text and '<a href="#file">' in page.text
    assert fake.requests_to("POST", r"records\.test") == []


async def test_records_refusal_is_said_beside_the_file(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)
    fake.fail_next["POST /documents$"] = problem(415, "upload-unsupported-type", "not accepted")

    page = await browser.post(
        "/case/documents",
        {"kind": "other"},
        files={"file": ("a.exe", b"MZ", "application/x-msdownload")},
    )

    assert page.status_code == 422
    assert '<a href="#file">' in page.text
    assert "PDF, фото (JPG, PNG, TIFF)" in page.text
    assert '<option value="other" selected>' in page.text


async def test_verdicts_name_languages_in_the_page_language(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)
    case_id = only_case(fake)
    fake.add_document(
        case_id,
        check="translation_required",
        language="ro",
        detail="written in ro; needs a translation into en or de",
        file_name="raport.pdf",
    )
    fake.add_document(
        case_id, kind="discharge_summary", check="accepted", language="uk", file_name="vypyska.pdf"
    )

    ukrainian = await browser.get("/case/documents")
    await browser.client.get("/language/en?next=/case/documents")
    english = await browser.get("/case/documents")

    assert (
        "Мова документа: румунська. Центр читає такі мови: англійська або німецька."
        in ukrainian.text
    )
    assert "Прийнято. Мова документа: українська." in ukrainian.text
    assert (
        "Language of the document: Romanian. The center reads English or German: "
        "please add a translation." in english.text
    )
    assert " ro;" not in english.text


async def test_the_limits_are_said_before_choosing_a_file(browser: Browser) -> None:
    await open_case(browser)
    page = await browser.get("/case/documents")
    assert page.text.index("PDF — до 100 МБ") < page.text.index('type="file"')


async def test_consent_records_both_consents_for_a_case_going_abroad(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)

    refused = await browser.post("/case/consent", {"processing": "yes"})
    assert refused.status_code == 422
    assert '<a href="#cross_border">' in refused.text
    assert 'id="processing" name="processing" type="checkbox" value="yes" checked' in refused.text

    done = await browser.post("/case/consent", {"processing": "yes", "cross_border": "yes"})

    assert done.status_code == 303
    kinds = [s.url.rsplit("/", 1)[1] for s in fake.requests_to("PUT", r"/consents/")]
    assert kinds == ["processing", "cross_border"]
    assert all(s.json() == {"version": "2026-01"} for s in fake.requests_to("PUT", r"/consents/"))


async def test_the_checklist_is_sent_as_a_whole(browser: Browser, fake: FakePlatform) -> None:
    await open_case(browser)

    half = await browser.post(
        "/case/preparation", {"rows": "3", "medicine_0": "Tamoxifen", "dose_0": ""}
    )
    assert half.status_code == 422
    assert '<a href="#dose_0">' in half.text and 'value="Tamoxifen"' in half.text

    more = await browser.post(
        "/case/preparation", {"rows": "3", "action": "add", "medicine_0": "Tamoxifen"}
    )
    assert 'id="medicine_3"' in more.text and 'value="Tamoxifen"' in more.text

    saved = await browser.post(
        "/case/preparation",
        {
            "rows": "3",
            "family_history": "mother: breast cancer at 52",
            "medicine_0": "Tamoxifen",
            "dose_0": "20 mg once a day",
            "allergies": "penicillin\n\nlatex",
            "action": "save",
        },
    )
    assert saved.status_code == 303
    [put] = fake.requests_to("PUT", r"/preparation$")
    assert put.json() == {
        "family_history": "mother: breast cancer at 52",
        "medications": [{"medicine": "Tamoxifen", "dose": "20 mg once a day"}],
        "allergies": ["penicillin", "latex"],
    }


async def test_a_refused_submission_lists_what_is_missing(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)

    page = await browser.post("/case/submit")

    assert page.status_code == 422
    assert 'class="error-summary"' in page.text
    assert '<a href="/case/documents">Додайте патогістологічний висновок' in page.text
    assert '<a href="/case/consent">Надайте згоду на обробку' in page.text


async def test_a_sent_case_shows_its_reference_and_what_happens_next(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)
    case_id = only_case(fake)
    fake.add_document(case_id)
    await browser.post("/case/consent", {"processing": "yes", "cross_border": "yes"})
    token = await browser.csrf("/case/submit")

    first = await browser.client.post("/case/submit", data={"csrf_token": token})
    again = await browser.client.post("/case/submit", data={"csrf_token": token})

    assert first.status_code == again.status_code == 303
    keys = {s.headers["idempotency-key"] for s in fake.requests_to("POST", r"/submit$")}
    assert len(keys) == 1
    page = await browser.get("/case/submitted")
    reference = case_id.hex[:8].upper()
    assert f"{reference[:4]}-{reference[4:]}" in page.text
    assert "Що буде далі" in page.text


async def test_a_download_streams_the_document_from_records(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)
    doc = fake.add_document(only_case(fake), file_name="висновок.pdf")

    response = await browser.get(f"/case/documents/{doc}/download")

    assert response.status_code == 200
    assert response.content == b"%PDF-1.7 fake"
    assert "attachment" in response.headers["content-disposition"]
