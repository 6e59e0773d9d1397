"""Signing in again without a password: the same answer whether or not the details match, a
code by e-mail that works 10 minutes and 5 tries, once."""

from __future__ import annotations

import pytest

from referrals_web.vocabulary import case_reference
from tests.unit.web.conftest import Browser, RecordingMailer
from tests.unit.web.fake_platform import FakePlatform

pytestmark = pytest.mark.unit


@pytest.fixture
async def known_case(fake: FakePlatform, browser: Browser):  # type: ignore[no-untyped-def]
    case_id = fake.add_case(status="submitted")
    runtime = browser.client._transport.app.state.runtime  # type: ignore[attr-defined]
    await runtime.directory.remember(case_id, case_reference(case_id))
    return case_id


async def test_matching_details_get_a_code_by_email(
    browser: Browser, fake: FakePlatform, mailer: RecordingMailer, known_case
) -> None:  # type: ignore[no-untyped-def]
    asked = await browser.post(
        "/sign-in",
        {"reference": case_reference(known_case).lower(), "contact": "Olena@Example.org"},
    )

    assert asked.status_code == 303 and asked.headers["location"] == "/sign-in/code"
    [sent] = mailer.sent
    assert sent.to == "olena@example.org" and len(sent.code) == 6 and sent.code.isdigit()

    page = await browser.post("/sign-in/code", {"code": sent.code, "action": "check"})

    assert page.status_code == 303 and page.headers["location"] == "/case"
    status = await browser.client.get("/case", follow_redirects=True)
    assert status.status_code == 200 and "Ваша справа" in status.text
    again = await browser.post("/sign-in/code", {"code": sent.code, "action": "check"}, page="/")
    assert again.status_code == 303 and again.headers["location"] == "/sign-in"  # used once


async def test_details_that_match_nothing_get_the_same_answer_and_no_email(
    browser: Browser, mailer: RecordingMailer, known_case
) -> None:  # type: ignore[no-untyped-def]
    asked = await browser.post(
        "/sign-in", {"reference": case_reference(known_case), "contact": "someone@else.org"}
    )
    unknown = await browser.post(
        "/sign-in", {"reference": "ABCD-1234", "contact": "olena@example.org"}
    )

    assert asked.status_code == unknown.status_code == 303
    assert mailer.sent == []
    page = await browser.get("/sign-in/code")
    assert "Якщо введені дані відповідають справі" in page.text


async def test_a_wrong_code_is_said_plainly_and_tries_run_out(
    browser: Browser, mailer: RecordingMailer, known_case
) -> None:  # type: ignore[no-untyped-def]
    await browser.post("/sign-in", {"reference": str(known_case), "contact": "olena@example.org"})
    [sent] = mailer.sent
    wrong = "000000" if sent.code != "000000" else "111111"

    for _ in range(5):
        page = await browser.post("/sign-in/code", {"code": wrong, "action": "check"})
        assert page.status_code == 422
        assert "Код неправильний" in page.text or "Забагато спроб" in page.text
    locked = await browser.post("/sign-in/code", {"code": sent.code, "action": "check"})

    assert locked.status_code == 422
    assert "Забагато спроб" in locked.text


async def test_a_new_code_can_be_asked_for_without_typing_again(
    browser: Browser, mailer: RecordingMailer, known_case
) -> None:  # type: ignore[no-untyped-def]
    await browser.post("/sign-in", {"reference": str(known_case), "contact": "olena@example.org"})

    page = await browser.post("/sign-in/code", {"action": "resend"})

    assert page.status_code == 200
    assert len(mailer.sent) == 2
    form = await browser.get("/sign-in")
    assert f'value="{known_case}"' in form.text  # what was typed is kept


async def test_the_sign_in_form_explains_what_is_missing(browser: Browser) -> None:
    page = await browser.post("/sign-in", {"reference": "", "contact": ""})

    assert page.status_code == 422
    assert '<a href="#reference">' in page.text and '<a href="#contact">' in page.text
