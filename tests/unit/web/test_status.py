"""After the case was sent: the status in words with the next step, the timeline newest first,
why this center, the center's request and the answer to it, withdrawing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from tests.unit.web.conftest import Browser
from tests.unit.web.fake_platform import FakePlatform, problem

pytestmark = pytest.mark.unit


async def signed_in(browser: Browser, fake: FakePlatform, case_id: UUID) -> None:
    """A session that may see `case_id` (as after signing in)."""
    from referrals_web.pages.common import current_session  # noqa: F401 - the same session type

    runtime = browser.client._transport.app.state.runtime  # type: ignore[attr-defined]
    session = runtime.sessions.new()
    token = await runtime.platform.access_token(case_id)
    session.open_case(case_id, token.token, token.expires_at)
    await runtime.sessions.save(session)
    browser.client.cookies.set("referrals_session", session.key, domain="web.test")


def spaced(text: str) -> str:
    """CLDR writes no-break spaces (U+00A0, U+202F) where a reader sees spaces."""
    return text.replace("\xa0", " ").replace("\u202f", " ")


def information_request(due: datetime) -> dict:
    return {
        "id": str(uuid4()),
        "center_code": "DE-HD-NCT",
        "status": "open",
        "reason": "We need to re-test HER2 on the original block.",
        "items": [
            {"kind": "pathology_review", "detail": "HER2 re-testing on the original block"},
            {"kind": "family_history", "detail": "cancers in first-degree relatives"},
        ],
        "due_at": due.isoformat(),
        "requested_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "answered_at": None,
        "answer": None,
        "document_ids": [],
        "shipments": [],
    }


@pytest.fixture
def case_with_request(fake: FakePlatform) -> tuple[UUID, dict]:
    request = information_request(datetime(2027, 1, 15, 10, 0, tzinfo=UTC))
    case_id = fake.add_case(
        status="information_requested",
        information_requests=[request],
        still_missing=["your family history: cancers in first-degree relatives"],
    )
    now = datetime.now(UTC)
    fake.timelines[case_id] = [
        {
            "at": (now - timedelta(days=2)).isoformat(),
            "from_status": "draft",
            "to_status": "submitted",
            "reason_code": "patient_submitted",
            "reason": "The case was submitted.",
            "next_step": None,
        },
        {
            "at": (now - timedelta(hours=1)).isoformat(),
            "from_status": "accepted",
            "to_status": "information_requested",
            "reason_code": "info_requested",
            "reason": "The cancer center needs more information.",
            "next_step": None,
        },
    ]
    fake.routing[case_id] = {
        "status": "info_requested",
        "center_name": "Sample Heidelberg Tumour Center",
        "center_country": "DE",
        "center_city": "Heidelberg",
        "why": "Chosen because it reviews C50 and reads English.",
        "answer_due_at": None,
        "expected_opinion_at": None,
    }
    return case_id, request


async def test_the_status_page_says_the_status_and_the_next_step(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)

    page = await browser.get("/case/status")

    assert page.status_code == 200
    assert re.search(r'<section id="case-status"[^>]*aria-live="polite"', page.text)
    assert 'id="timeline"' in page.text
    assert "Онкологічному центру потрібна додаткова інформація від вас" in page.text
    assert 'href="/case/information"' in page.text
    newest, oldest = page.text.index("запитав додаткову"), page.text.index("Ви надіслали справу")
    assert newest < oldest  # newest first
    assert "Heidelberg, Німеччина" in page.text
    assert '<p lang="en" id="routing-why">Chosen because' in page.text
    assert "hx-get" not in page.text  # no htmx without the vendored script


async def test_why_this_center_is_said_in_the_case_s_language_when_partners_explains_it(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    fake.routing[case_id] |= {
        "explanation": [
            "Центр переглядає випадки з кодом C50.",
            "Центр читає документи англійською.",
        ],
        "language": "uk",
    }
    await signed_in(browser, fake, case_id)

    page = await browser.get("/case/status")

    assert '<ul class="list list--bullet" id="routing-why" lang="uk">' in page.text
    assert "<li>Центр читає документи англійською.</li>" in page.text
    assert "Chosen because" not in page.text  # partners' English for operators is not shown


async def test_a_timeline_entry_in_words_the_app_does_not_know_says_its_language(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    fake.timelines[case_id].append(
        {
            "at": datetime.now(UTC).isoformat(),
            "from_status": "information_requested",
            "to_status": "accepted",
            "reason_code": "a_reason_this_app_has_no_words_for",
            "reason": "Центр продовжує роботу над вашою справою.",
            "next_step": None,
            "language": "uk",
        }
    )
    await signed_in(browser, fake, case_id)

    page = await browser.get("/case/status")

    assert '<span lang="uk">Центр продовжує роботу над вашою справою.</span>' in page.text


async def test_the_status_page_listens_to_the_app_s_stream_and_polls_nothing(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict], tmp_path
) -> None:
    case_id, _ = case_with_request
    (tmp_path / "htmx.min.js").write_text("/* htmx */")
    runtime = browser.client._transport.app.state.runtime  # type: ignore[attr-defined]
    runtime.settings.vendor_dir = tmp_path  # even with htmx there, nothing polls
    await signed_in(browser, fake, case_id)

    page = await browser.get("/case/status")

    assert '<script src="/static/live.js" defer></script>' in page.text
    # The two entries the page shows are not pushed again.
    assert 'data-live-events="/case/status/events?seen=2"' in page.text
    assert "hx-trigger" not in page.text and "every 5s" not in page.text
    script = await browser.client.get("/static/live.js")
    assert script.status_code == 200 and "new EventSource(" in script.text


def pushed(text: str) -> list[dict[str, str]]:
    """The Server-Sent Events of a finished stream, each as its fields."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            if name:
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
        if "event" in fields:
            events.append(fields)
    return events


async def test_an_entry_the_page_has_not_shown_is_pushed_as_the_rendered_regions(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)
    fake.cases[case_id]["status"] = "accepted"
    fake.timelines[case_id].append(
        {
            "at": datetime.now(UTC).isoformat(),
            "from_status": "information_requested",
            "to_status": "accepted",
            "reason_code": "info_provided",
            "reason": "The information was sent to the center.",
            "next_step": None,
        }
    )

    stream = await browser.client.get("/case/status/events?seen=2")

    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = pushed(stream.text)
    assert [e["event"] for e in events] == ["status", "timeline"]  # the third entry only
    assert events[1]["id"] == "3"
    assert "<html" not in events[0]["data"] and "tag--status" in events[0]["data"]
    assert "Ви надіслали справу" in events[1]["data"]
    [upstream] = fake.requests_to("GET", r"/events$")
    assert upstream.headers["authorization"].startswith("Bearer ")
    assert "last-event-id" not in upstream.headers


async def test_a_reconnecting_browser_resumes_after_the_last_event_it_got(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)

    stream = await browser.client.get("/case/status/events?seen=0", headers={"Last-Event-ID": "1"})

    [upstream] = fake.requests_to("GET", r"/events$")
    assert upstream.headers["last-event-id"] == "1"
    assert [e.get("id") for e in pushed(stream.text)] == [None, "2"]


async def test_a_refused_token_is_renewed_and_the_stream_opened_again(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)
    fake.tokens.clear()  # intake refuses the token the session holds

    stream = await browser.client.get("/case/status/events?seen=1")

    assert len(fake.requests_to("GET", r"/events$")) == 2
    assert [e["event"] for e in pushed(stream.text)] == ["status", "timeline"]


async def test_without_a_case_in_the_session_there_is_no_stream(browser: Browser) -> None:
    stream = await browser.client.get("/case/status/events")

    assert not stream.headers.get("content-type", "").startswith("text/event-stream")


async def test_the_request_page_says_what_why_and_by_when(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)

    page = await browser.get("/case/information")

    assert "We need to re-test HER2 on the original block." in page.text
    assert "Сам біопсійний матеріал (скельця або блоки), надісланий кур'єром" in page.text
    assert "HER2 re-testing on the original block" in page.text
    assert "Ваш сімейний анамнез" in page.text
    assert "15 січня 2027 р., 12:00" in spaced(page.text)  # Kyiv time, in Ukrainian
    await browser.client.get("/language/en?next=/case/information")
    english = await browser.get("/case/information")
    assert "15 January 2027, 12:00" in spaced(english.text)


async def test_the_answer_goes_to_intake_with_the_shipment(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, request = case_with_request
    await signed_in(browser, fake, case_id)
    shipment = await browser.post(
        "/case/information/shipment",
        {
            "material": "slides_and_blocks",
            "carrier": "DHL Express",
            "tracking_number": "JD0146 0000 1",
            "sent_day": "1",
            "sent_month": "12",
            "sent_year": "2026",
        },
    )
    assert shipment.status_code == 303

    fake.fail_next["POST /answer$"] = problem(
        409, "documents-being-checked", "being checked", retry_after=5
    )
    waiting = await browser.post(
        "/case/information", {"answer": "Mother: breast cancer at 52.", "action": "send"}
    )
    assert waiting.status_code == 409
    assert "Ваші документи ще перевіряються. Спробуйте ще раз за мить" in waiting.text
    assert "Mother: breast cancer at 52." in waiting.text

    sent = await browser.post(
        "/case/information", {"answer": "Mother: breast cancer at 52.", "action": "send"}
    )

    assert sent.status_code == 303
    first, second = fake.requests_to("POST", r"/answer$")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert f"/information-requests/{request['id']}/answer" in second.url
    assert second.json() == {
        "answer": "Mother: breast cancer at 52.",
        "shipments": [
            {
                "material": "slides_and_blocks",
                "carrier": "DHL Express",
                "tracking_number": "JD0146 0000 1",
                "sent_on": "2026-12-01",
            }
        ],
    }


async def test_a_shipment_with_a_bad_tracking_number_is_explained(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)

    page = await browser.post(
        "/case/information/shipment",
        {
            "material": "slides",
            "carrier": "DHL",
            "tracking_number": "#!",
            "sent_day": "1",
            "sent_month": "12",
            "sent_year": "2026",
        },
    )

    assert page.status_code == 422
    assert '<a href="#tracking_number">' in page.text
    assert 'value="DHL"' in page.text


async def test_withdrawing_asks_first_then_withdraws(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)

    confirm = await browser.get("/case/withdraw")
    assert "Так, відкликати справу" in confirm.text
    assert fake.requests_to("POST", r"/withdraw$") == []

    done = await browser.post("/case/withdraw", {"reason": "duplicate"})

    assert done.status_code == 303
    [withdraw] = fake.requests_to("POST", r"/withdraw$")
    assert withdraw.json() == {"reason": "duplicate"}
    assert fake.cases[case_id]["status"] == "withdrawn"


async def test_an_expired_case_token_is_renewed_with_the_front_end_key(
    browser: Browser, fake: FakePlatform, case_with_request: tuple[UUID, dict]
) -> None:
    case_id, _ = case_with_request
    await signed_in(browser, fake, case_id)
    fake.tokens.clear()  # every token the app holds is now refused

    page = await browser.get("/case/status")

    assert page.status_code == 200
    assert len(fake.requests_to("POST", r"/access-token$")) == 2  # signing in, then the renewal


async def test_case_pages_without_a_case_lead_to_signing_in(browser: Browser) -> None:
    page = await browser.get("/case/status")
    assert page.status_code == 303
    assert page.headers["location"] == "/sign-in"
