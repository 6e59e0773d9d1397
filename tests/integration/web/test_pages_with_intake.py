"""The pages against the real intake API (in-process, on real PostgreSQL): the requests the
web application builds are the ones intake takes, and intake's refusals land beside the right
field. Records and partners stay faked here (their uploads need MinIO and Kafka's events)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from referrals_common.migrations import upgrade_async
from referrals_intake.main import MIGRATIONS as INTAKE_MIGRATIONS
from referrals_intake.main import build_runtime as build_intake
from referrals_intake.main import create_app as create_intake
from referrals_web.bootstrap import memory_runtime
from referrals_web.config import WebSettings
from referrals_web.main import create_app
from tests.integration.intake.conftest import intake_settings, new_client_key
from tests.unit.web.conftest import ANSWERS, Browser, RecordingMailer, fill_new_case
from tests.unit.web.fake_platform import INTAKE, PARTNERS, RECORDS, FakePlatform

pytestmark = pytest.mark.integration


class Platform(httpx.AsyncBaseTransport):
    """intake.test to the real intake app; records and partners to the fake."""

    def __init__(self, intake: httpx.AsyncBaseTransport, fake: FakePlatform) -> None:
        self.intake, self.fake = intake, fake.transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "intake.test":
            return await self.intake.handle_async_request(request)
        return await self.fake.handle_async_request(request)


@pytest.fixture
async def browser(new_database, kafka_bootstrap) -> AsyncIterator[Browser]:  # type: ignore[no-untyped-def]
    dsn = await new_database("intake")
    await upgrade_async(dsn, INTAKE_MIGRATIONS)
    intake = build_intake(intake_settings(dsn, kafka_bootstrap))
    intake_app = create_intake(runtime=intake)
    intake_app.state.runtime = intake
    key = await new_client_key(intake)
    fake = FakePlatform()
    settings = WebSettings(
        intake_url=INTAKE, records_url=RECORDS, partners_url=PARTNERS, front_end_api_key=key
    )
    transport = Platform(httpx.ASGITransport(app=intake_app), fake)
    web = memory_runtime(settings, transport=transport, mailer=RecordingMailer())
    app = create_app(runtime=web)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://web.test"
    ) as client:
        yield Browser(client)
    await web.close()
    await intake.db.dispose()


async def test_a_case_opened_through_the_pages_is_a_draft_at_intake(browser: Browser) -> None:
    await fill_new_case(browser)
    created = await browser.post("/new/check")
    assert created.status_code == 303, created.text

    consent = await browser.post("/case/consent", {"processing": "yes", "cross_border": "yes"})
    checklist = await browser.post(
        "/case/preparation",
        {"rows": "3", "medicine_0": "Tamoxifen", "dose_0": "20 mg daily", "allergies": "none"},
    )
    refused = await browser.post("/case/submit")

    assert consent.status_code == checklist.status_code == 303
    assert refused.status_code == 422  # no document stored yet: intake says so
    assert '<a href="/case/documents">' in refused.text
    assert "Надайте згоду" not in refused.text  # both consents were recorded
    answers = await browser.get("/case/submit")
    assert "C50.9" in answers.text and "12 квітня 1979" in answers.text


async def test_intakes_refusal_of_a_phone_lands_on_the_contact_page(browser: Browser) -> None:
    answers = dict(ANSWERS)
    answers["contact"] = {"email": "", "phone": "+380001234567", "preferred_channel": "sms"}
    await fill_new_case(browser, answers)

    page = await browser.post("/new/check")

    assert page.status_code == 422
    assert '<a href="#phone">' in page.text
    assert re.search(r'id="phone" name="phone" type="tel" value="\+380001234567"', page.text)


async def test_a_change_after_opening_edits_the_draft(browser: Browser) -> None:
    await fill_new_case(browser)
    await browser.post("/new/check")

    changed = await browser.post("/new/stage", {"tnm": "pT1cN0M0", "stage_group": "IA"})
    page = await browser.get("/case/submit")

    assert changed.status_code == 303 and changed.headers["location"] == "/case/submit"
    assert "pT1cN0M0, IA" in page.text
