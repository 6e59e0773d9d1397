"""The web application wired to a fake of the platform's APIs and sessions kept in memory: the
pages run for real (templates, catalogs, CSRF, sessions), with no network and no database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from referrals_web.bootstrap import Runtime, memory_runtime
from referrals_web.config import WebSettings
from referrals_web.main import create_app
from referrals_web.rendering import Renderer
from referrals_web.repository import StaffMember
from referrals_web.staff import add_staff
from tests.unit.web.fake_platform import (
    API_KEY,
    CENTER,
    CENTER_KEY,
    INTAKE,
    PARTNERS,
    RECORDS,
    FakePlatform,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class SentCode:
    to: str
    code: str
    locale: str
    purpose: str = "case"


@dataclass
class RecordingMailer:
    sent: list[SentCode] = field(default_factory=list)

    async def send_code(
        self, to: str, code: str, *, locale: str, minutes: int, purpose: str = "case"
    ) -> None:
        self.sent.append(SentCode(to, code, locale, purpose))


@pytest.fixture
def fake() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer()  # compiling every template twice takes half a second: once per run


@pytest.fixture
def runtime(
    fake: FakePlatform, mailer: RecordingMailer, renderer: Renderer, clean_env: None
) -> Runtime:
    settings = WebSettings(
        intake_url=INTAKE,
        records_url=RECORDS,
        partners_url=PARTNERS,
        front_end_api_key=API_KEY,
        environment="test",
        session_secret="a-real-test-session-key-0123456789",
        postgres={"dsn": "postgresql://web:test-pw-7f3k@127.0.0.1:1/web"},
    )
    return memory_runtime(settings, transport=fake.transport, mailer=mailer, renderer=renderer)


class Browser:
    """A visitor: one cookie jar, forms posted with the page's own CSRF token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.pages: list[httpx.Response] = []

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.get(url, **kwargs)
        self.pages.append(response)
        return response

    async def csrf(self, url: str = "/") -> str:
        page = await self.get(url)
        found = CSRF.search(page.text)
        assert found, f"no CSRF token on {url}"
        return found[1]

    async def post(
        self,
        url: str,
        data: dict[str, Any] | None = None,
        *,
        page: str | None = None,
        files: Any = None,
        **kwargs: Any,
    ) -> httpx.Response:
        token = await self.csrf(page or url.split("?")[0])
        response = await self.client.post(
            url, data={"csrf_token": token, **(data or {})}, files=files, **kwargs
        )
        self.pages.append(response)
        return response


@pytest.fixture
async def browser(runtime: Runtime) -> AsyncIterator[Browser]:
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://web.test") as client:
        yield Browser(client)
    await runtime.platform.close()


ANSWERS = {
    "diagnosis": {"icd10": "c509", "diagnosis_text": "Invasive ductal carcinoma"},
    "stage": {"tnm": "cT2N1M0", "stage_group": "iib"},
    "reasons": {"reasons": ["confirm_diagnosis_or_stage", "choose_treatment"]},
    "questions": {"question_1": "Is surgery possible after chemotherapy?", "question_2": ""},
    "destination": {"destination": "countries", "country_1": "DE", "country_2": "AT"},
    "date-of-birth": {"dob_day": "12", "dob_month": "4", "dob_year": "1979"},
    "contact": {
        "email": "olena@example.org",
        "phone": "050 123 45 67",
        "preferred_channel": "email",
    },
}


async def fill_new_case(browser: Browser, answers: dict[str, dict[str, Any]] | None = None) -> None:
    """Answer every question page (each answer is posted as a browser would)."""
    for slug, values in (answers or ANSWERS).items():
        response = await browser.post(f"/new/{slug}", values)
        assert response.status_code == 303, (slug, response.text[:2000])


async def open_case(browser: Browser) -> httpx.Response:
    await fill_new_case(browser)
    return await browser.post("/new/check")


# ------------------------------------------------------------------------ the center console

STAFF_EMAIL = "dr.weber@center-a.example"
OTHER_STAFF_EMAIL = "dr.nowak@center-b.example"


async def add_staff_member(
    runtime: Runtime, email: str = STAFF_EMAIL, center: str = CENTER, key: str | None = CENTER_KEY
) -> StaffMember:
    member, _ = await add_staff(
        runtime.staff,
        runtime.center_keys,
        email=email,
        name="Dr. Anna Weber" if center == CENTER else "Dr. Jan Nowak",
        center_code=center,
        key=key,
    )
    return member


async def sign_in_staff(
    browser: Browser, mailer: RecordingMailer, email: str = STAFF_EMAIL
) -> None:
    """Sign in to the console as a staff member would: the address, then the e-mailed code."""
    asked = await browser.post("/center/sign-in", {"email": email})
    assert asked.status_code == 303, asked.text[:2000]
    code = next(sent.code for sent in reversed(mailer.sent) if sent.to == email.casefold())
    signed = await browser.post("/center/sign-in/code", {"code": code, "action": "check"})
    assert signed.status_code == 303 and signed.headers["location"] == "/center", signed.text


@pytest.fixture
async def staff_browser(browser: Browser, runtime: Runtime, mailer: RecordingMailer) -> Browser:
    """A browser signed in to the console as a staff member of `CENTER`."""
    await add_staff_member(runtime)
    await sign_in_staff(browser, mailer)
    return browser
