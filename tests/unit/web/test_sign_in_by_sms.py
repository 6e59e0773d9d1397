"""Signing in with the phone number given on a case: the code goes by text message (in the
page's language, one SMS part, nothing about the case), and every "no" (a wrong number, a
spent hour, a provider that refuses, no SMS account at all) looks exactly like a "yes" from
outside."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from uuid import UUID

import pytest

from referrals_common.sms import SmsError, SmsFailure
from referrals_web.bootstrap import Runtime, memory_runtime
from referrals_web.config import WebSettings
from referrals_web.rendering import Renderer
from referrals_web.sms import code_text
from referrals_web.vocabulary import case_reference
from tests.unit.web.conftest import Browser, RecordingMailer
from tests.unit.web.fake_platform import API_KEY, INTAKE, PARTNERS, RECORDS, FakePlatform

pytestmark = pytest.mark.unit

PHONE = "+380501234567"
CSRF = re.compile(r'name="csrf_token" value="[^"]+"')


@dataclass
class SentText:
    to: str
    code: str
    locale: str
    minutes: int


@dataclass
class RecordingTexter:
    sent: list[SentText] = field(default_factory=list)
    refuse: SmsError | None = None

    async def send_code(self, to: str, code: str, *, locale: str, minutes: int) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(SentText(to, code, locale, minutes))


def settings() -> WebSettings:
    return WebSettings(
        intake_url=INTAKE,
        records_url=RECORDS,
        partners_url=PARTNERS,
        front_end_api_key=API_KEY,
        environment="test",
        session_secret="a-real-test-session-key-0123456789",
        postgres={"dsn": "postgresql://web:test-pw-7f3k@127.0.0.1:1/web"},
    )


@pytest.fixture
def texter() -> RecordingTexter:
    return RecordingTexter()


@pytest.fixture
def runtime(
    fake: FakePlatform,
    mailer: RecordingMailer,
    texter: RecordingTexter,
    renderer: Renderer,
    clean_env: None,
) -> Runtime:
    return memory_runtime(
        settings(), transport=fake.transport, mailer=mailer, texter=texter, renderer=renderer
    )


async def remember(browser: Browser, fake: FakePlatform, contact: dict[str, object]) -> UUID:
    case_id = fake.add_case(status="submitted", contact=contact)
    runtime = browser.client._transport.app.state.runtime  # type: ignore[attr-defined]
    await runtime.directory.remember(case_id, case_reference(case_id))
    return case_id


def page_text(html: str) -> str:
    """A page without what differs on every request (the CSRF token)."""
    return CSRF.sub("", html)


async def test_a_phone_that_matches_gets_the_code_by_text_and_signs_in(
    browser: Browser, fake: FakePlatform, mailer: RecordingMailer, texter: RecordingTexter
) -> None:
    case_id = await remember(
        browser,
        fake,
        {"email": "olena@example.org", "phone": PHONE, "preferred_channel": "email"},
    )

    asked = await browser.post(
        "/sign-in", {"reference": case_reference(case_id), "contact": "050 123 45 67"}
    )

    assert asked.status_code == 303 and asked.headers["location"] == "/sign-in/code"
    [sent] = texter.sent
    assert sent.to == PHONE and sent.locale == "uk" and re.fullmatch(r"\d{6}", sent.code)
    assert mailer.sent == []  # the phone was typed: the text, not the e-mail
    page = await browser.get("/sign-in/code")
    assert "SMS" in page.text or "текстов" in page.text
    signed = await browser.post("/sign-in/code", {"code": sent.code, "action": "check"})
    assert signed.status_code == 303 and signed.headers["location"] == "/case"


async def test_a_phone_only_case_gets_the_code_by_text(
    browser: Browser, fake: FakePlatform, mailer: RecordingMailer, texter: RecordingTexter
) -> None:
    case_id = await remember(
        browser, fake, {"email": None, "phone": PHONE, "preferred_channel": "sms"}
    )
    await browser.post("/sign-in", {"reference": str(case_id), "contact": "+380 50 123 45 67"})
    assert [t.to for t in texter.sent] == [PHONE] and mailer.sent == []


async def test_a_wrong_phone_gets_the_same_pages_and_no_text(
    browser: Browser, fake: FakePlatform, mailer: RecordingMailer, texter: RecordingTexter
) -> None:
    case_id = await remember(
        browser, fake, {"email": None, "phone": PHONE, "preferred_channel": "sms"}
    )
    reference = case_reference(case_id)

    right = await browser.post("/sign-in", {"reference": reference, "contact": PHONE})
    right_page = await browser.get("/sign-in/code")
    texter.sent.clear()
    wrong = await browser.post("/sign-in", {"reference": reference, "contact": "+380671112233"})
    wrong_page = await browser.get("/sign-in/code")
    nobody = await browser.post("/sign-in", {"reference": "ABCD-1234", "contact": PHONE})
    nobody_page = await browser.get("/sign-in/code")

    assert right.status_code == wrong.status_code == nobody.status_code == 303
    assert right.headers["location"] == wrong.headers["location"] == nobody.headers["location"]
    assert page_text(right_page.text) == page_text(wrong_page.text) == page_text(nobody_page.text)
    assert texter.sent == [] and mailer.sent == []
    resent = await browser.post("/sign-in/code", {"action": "resend"})
    assert resent.status_code == 200 and texter.sent == []


async def test_an_email_still_gets_the_code_by_email_when_texts_are_on(
    browser: Browser, fake: FakePlatform, mailer: RecordingMailer, texter: RecordingTexter
) -> None:
    case_id = await remember(
        browser,
        fake,
        {"email": "olena@example.org", "phone": PHONE, "preferred_channel": "sms"},
    )
    await browser.post("/sign-in", {"reference": str(case_id), "contact": "olena@example.org"})
    assert [m.to for m in mailer.sent] == ["olena@example.org"] and texter.sent == []


async def test_a_wrong_code_from_a_text_points_to_the_text_message(
    browser: Browser, fake: FakePlatform, texter: RecordingTexter
) -> None:
    case_id = await remember(browser, fake, {"email": None, "phone": PHONE})
    await browser.post("/sign-in", {"reference": str(case_id), "contact": PHONE})
    [sent] = texter.sent
    wrong = "000000" if sent.code != "000000" else "111111"
    page = await browser.post("/sign-in/code", {"code": wrong, "action": "check"})
    assert page.status_code == 422
    assert "Код неправильний" in page.text and "SMS" in page.text


async def test_codes_for_one_case_stop_after_the_hourly_limit_and_the_page_says_the_same(
    browser: Browser, fake: FakePlatform, texter: RecordingTexter
) -> None:
    case_id = await remember(browser, fake, {"email": None, "phone": PHONE})
    await browser.post("/sign-in", {"reference": str(case_id), "contact": PHONE})
    first = await browser.get("/sign-in/code")
    for _ in range(6):
        page = await browser.post("/sign-in/code", {"action": "resend"})
        assert page.status_code == 200
    assert len(texter.sent) == 5  # login_codes_per_hour
    last = await browser.post("/sign-in", {"reference": str(case_id), "contact": PHONE})
    assert last.status_code == 303 and len(texter.sent) == 5
    assert page_text((await browser.get("/sign-in/code")).text) == page_text(first.text)


async def test_a_provider_that_refuses_changes_nothing_on_the_page(
    browser: Browser, fake: FakePlatform, texter: RecordingTexter, mailer: RecordingMailer
) -> None:
    case_id = await remember(browser, fake, {"email": "olena@example.org", "phone": PHONE})
    texter.refuse = SmsError(SmsFailure.UNAVAILABLE, "answered 503", transient=True)
    asked = await browser.post("/sign-in", {"reference": str(case_id), "contact": PHONE})
    assert asked.status_code == 303 and asked.headers["location"] == "/sign-in/code"
    assert mailer.sent == []  # no silent switch to another channel than the one typed


def test_the_text_says_the_code_and_nothing_about_the_case() -> None:
    for locale, part in (("uk", 70), ("en", 160)):  # one SMS part: UCS-2 70, GSM-7 160
        text = code_text("482913", locale=locale, minutes=10)
        assert "482913" in text and "10" in text
        assert len(text) <= part, (locale, len(text), text)
    assert code_text("482913", locale="uk", minutes=10) != code_text(
        "482913", locale="en", minutes=10
    )


# ----------------------------------------------------------------- no SMS account configured


@pytest.fixture
def runtime_without_sms(
    fake: FakePlatform, mailer: RecordingMailer, renderer: Renderer, clean_env: None
) -> Runtime:
    return memory_runtime(settings(), transport=fake.transport, mailer=mailer, renderer=renderer)


async def test_without_an_sms_account_a_phone_only_case_is_told_to_ask_the_clinic(
    runtime_without_sms: Runtime, fake: FakePlatform, mailer: RecordingMailer
) -> None:
    import httpx

    from referrals_web.main import create_app

    assert runtime_without_sms.texter is None
    app = create_app(runtime=runtime_without_sms)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://web.test") as client:
        browser = Browser(client)
        start = await browser.get("/sign-in")
        assert "clinic" in start.text or "клінік" in start.text
        phone_only = await remember(browser, fake, {"email": None, "phone": PHONE})
        both = await remember(browser, fake, {"email": "olena@example.org", "phone": PHONE})

        await browser.post("/sign-in", {"reference": str(phone_only), "contact": PHONE})
        phone_only_page = await browser.get("/sign-in/code")
        assert mailer.sent == []
        assert "клінік" in phone_only_page.text  # ask the clinic
        await browser.post("/sign-in", {"reference": "ABCD-1234", "contact": PHONE})
        assert page_text((await browser.get("/sign-in/code")).text) == page_text(
            phone_only_page.text
        )
        # A case with an e-mail address too still gets its code there, as before texts.
        await browser.post("/sign-in", {"reference": str(both), "contact": PHONE})
        assert [m.to for m in mailer.sent] == ["olena@example.org"]
    await runtime_without_sms.platform.close()
