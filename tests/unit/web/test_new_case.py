"""The new case, one question per page: what reaches intake, one case per form, errors beside
their fields with what was typed kept, the language switch and CSRF."""

from __future__ import annotations

import re

import pytest

from tests.unit.web.conftest import ANSWERS, Browser, fill_new_case, open_case
from tests.unit.web.fake_platform import API_KEY, FakePlatform, problem

pytestmark = pytest.mark.unit


async def test_the_pages_build_intakes_create_request(browser: Browser, fake: FakePlatform) -> None:
    response = await open_case(browser)

    assert response.status_code == 303
    assert response.headers["location"] == "/case"
    [create] = fake.requests_to("POST", r"/v1/cases$")
    assert create.headers["x-api-key"] == API_KEY
    assert len(create.headers["idempotency-key"]) >= 8
    assert create.json() == {
        "locale": "uk",
        "diagnosis": {"icd10": "C50.9", "text": "Invasive ductal carcinoma"},
        "stage": {"tnm": "cT2N1M0", "group": "IIB"},
        "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
        "questions": ["Is surgery possible after chemotherapy?"],
        "destination": {"preference": "countries", "countries": ["DE", "AT"]},
        "patient_chooses_center": False,
        "date_of_birth": "1979-04-12",
        "contact": {
            "preferred_channel": "email",
            "email": "olena@example.org",
            "phone": "+380501234567",
        },
    }
    task_list = await browser.get("/case")
    assert task_list.status_code == 200
    assert "Ваша справа" in task_list.text


async def test_a_double_click_on_create_opens_one_case(
    browser: Browser, fake: FakePlatform
) -> None:
    await fill_new_case(browser)
    token = await browser.csrf("/new/check")

    first = await browser.client.post("/new/check", data={"csrf_token": token})
    second = await browser.client.post("/new/check", data={"csrf_token": token})

    assert first.status_code == second.status_code == 303
    assert len(fake.cases) == 1
    keys = {s.headers.get("idempotency-key") for s in fake.requests_to("POST", r"/v1/cases$")}
    assert len(keys) == 1


async def test_concurrent_twins_carry_the_same_idempotency_key(
    browser: Browser, fake: FakePlatform
) -> None:
    import asyncio

    await fill_new_case(browser)
    token = await browser.csrf("/new/check")
    await asyncio.gather(
        browser.client.post("/new/check", data={"csrf_token": token}),
        browser.client.post("/new/check", data={"csrf_token": token}),
    )

    assert len(fake.cases) == 1


async def test_check_your_answers_shows_every_answer_with_change_links(browser: Browser) -> None:
    await fill_new_case(browser)

    page = await browser.get("/new/check")

    assert "C50.9" in page.text
    assert "Німеччина" in page.text and "Австрія" in page.text
    assert "12 квітня 1979" in page.text
    for slug in ANSWERS:
        assert f'href="/new/{slug}?return=check"' in page.text


async def test_a_wrong_answer_is_summarised_linked_to_its_field_and_kept(browser: Browser) -> None:
    page = await browser.post("/new/diagnosis", {"icd10": "J45", "diagnosis_text": "asthma?"})

    assert page.status_code == 422
    assert 'class="error-summary"' in page.text
    assert '<a href="#icd10">' in page.text
    assert 'id="icd10-error"' in page.text
    assert 'value="J45"' in page.text
    assert "asthma?" in page.text
    assert page.text.count("не код пухлини") == 2  # in the summary and beside the field
    assert "<title>Помилка:" in page.text


async def test_an_intake_refusal_lands_beside_the_field_it_points_at(
    browser: Browser, fake: FakePlatform
) -> None:
    await fill_new_case(browser)
    fake.fail_next["POST /v1/cases$"] = problem(
        422,
        "validation-error",
        "The request is not valid.",
        errors=[
            {
                "pointer": "/contact/email",
                "location": "body",
                "message": "value is not a valid email address",
                "code": "value_error",
            }
        ],
    )

    page = await browser.post("/new/check")

    assert page.status_code == 422
    assert '<a href="#email">' in page.text
    assert 'id="email-error"' in page.text
    assert 'value="olena@example.org"' in page.text
    assert 'value="050 123 45 67"' in page.text
    assert 'action="/new/contact?return=check"' in page.text
    assert len(fake.cases) == 0


async def test_the_date_of_birth_error_links_to_the_day(browser: Browser) -> None:
    page = await browser.post(
        "/new/date-of-birth", {"dob_day": "31", "dob_month": "2", "dob_year": "1980"}
    )

    assert page.status_code == 422
    assert '<a href="#dob_day">' in page.text
    assert 'value="31"' in page.text


async def test_contact_needs_an_email_or_a_phone(browser: Browser) -> None:
    page = await browser.post(
        "/new/contact", {"email": "", "phone": "", "preferred_channel": "email"}
    )

    assert page.status_code == 422
    assert '<a href="#email">' in page.text


async def test_the_language_switch_keeps_the_page(browser: Browser) -> None:
    page = await browser.get("/new/stage")
    switch = re.search(r'href="([^"]+)" hreflang="en"', page.text)
    assert switch is not None
    assert '<html lang="uk">' in page.text

    moved = await browser.client.get(switch[1].replace("&amp;", "&"))
    assert moved.status_code == 303
    assert moved.headers["location"] == "/new/stage"
    english = await browser.get("/new/stage")

    assert '<html lang="en">' in english.text
    assert "What is the stage? (optional)" in english.text
    assert 'hreflang="uk"' in english.text


async def test_country_names_follow_the_page_language(browser: Browser) -> None:
    ukrainian = await browser.get("/new/destination")
    assert ">Німеччина<" in ukrainian.text
    await browser.client.get("/language/en?next=/new/destination")
    english = await browser.get("/new/destination")
    assert ">Germany<" in english.text


async def test_a_form_without_its_csrf_token_is_refused(
    browser: Browser, fake: FakePlatform
) -> None:
    await browser.get("/")
    refused = await browser.client.post("/new/diagnosis", data={"icd10": "C50.9"})
    forged = await browser.client.post(
        "/new/diagnosis", data={"icd10": "C50.9", "csrf_token": "0" * 64}
    )

    assert refused.status_code == forged.status_code == 403
    assert fake.seen == []


async def test_icd10_suggestions_search_codes_and_titles(browser: Browser) -> None:
    by_code = await browser.get("/icd10/suggestions?icd10=C34")
    by_word = await browser.get("/icd10/suggestions?icd10=breast")

    assert '<option value="C34.1">' in by_code.text
    assert '<option value="C50.9">' in by_word.text


async def test_each_question_page_has_a_label_for_each_field(browser: Browser) -> None:
    for slug in ANSWERS:
        page = await browser.get(f"/new/{slug}")
        ids = set(re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', page.text))
        labelled = set(re.findall(r'<label[^>]* for="([^"]+)"', page.text))
        assert ids - {"csrf_token"} <= labelled, slug
