"""The partner front end's API key and the case's access token stay on the server: no page, no
fragment, no redirect, no header shows them to the browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.web.conftest import Browser, open_case
from tests.unit.web.fake_platform import API_KEY, FakePlatform
from tests.unit.web.test_status import information_request

pytestmark = pytest.mark.unit


async def test_no_page_shows_the_api_key_or_a_case_token(
    browser: Browser, fake: FakePlatform
) -> None:
    await browser.get("/")
    await browser.get("/icd10/suggestions?icd10=C50")
    await open_case(browser)
    [case_id] = fake.cases
    fake.add_document(case_id, check="accepted", language="en")
    for url in ("/case", "/case/documents", "/case/consent", "/case/preparation", "/case/submit"):
        await browser.get(url)
    await browser.post("/case/consent", {"processing": "yes", "cross_border": "yes"})
    await browser.post("/case/submit")
    await browser.get("/case/submitted")
    fake.cases[case_id]["status"] = "information_requested"
    fake.cases[case_id]["information_requests"] = [
        information_request(datetime.now(UTC) + timedelta(days=10))
    ]
    for url in (
        "/case/status",
        "/case/status/live?part=status",
        "/case/status/live?part=timeline",
        "/case/information",
        "/case/information/shipment",
        "/case/withdraw",
        "/sign-in",
        "/no-such-page",
    ):
        await browser.get(url)
    await browser.client.post("/case/consent", data={})  # refused: no CSRF token

    tokens = [t for t in fake.tokens]
    assert tokens, "the fake issued no token: nothing was checked"
    assert len(browser.pages) > 20
    for page in browser.pages:
        shown = page.text + " ".join(f"{k}: {v}" for k, v in page.headers.items())
        assert API_KEY not in shown, page.url
        assert "SECRETTOKEN" not in shown, page.url
        assert all(token not in shown for token in tokens), page.url
        assert "Bearer" not in page.text, page.url


async def test_the_session_keeps_the_token_and_the_answers_sealed(
    browser: Browser, fake: FakePlatform
) -> None:
    await open_case(browser)
    store = browser.client._transport.app.state.runtime.sessions.store  # type: ignore[attr-defined]

    [row] = store.rows.values()

    assert row.case_token_sealed and b"SECRETTOKEN" not in row.case_token_sealed
    assert row.data_sealed and b"olena@example.org" not in row.data_sealed
    assert browser.client.cookies["referrals_session"] not in row.id  # keyed by its hash
