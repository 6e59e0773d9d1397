"""The ops screen (/ops): an operator signs in with a code e-mailed to their work address, in a
session of the ops screen's own (its cookie, its CSRF tokens), finds a case by the reference the
patient sees, reads its timeline with links into the trace viewer, sees what is past a deadline
and the dead letters, and replays one after a confirmation, once however often the form is
sent. The operator key stays on the server; a center's staff cannot enter, nor an operator the
console. Partners' ops API is faked here (httpx MockTransport); tests/browser covers the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from referrals_web.bootstrap import Runtime, memory_runtime
from referrals_web.config import WebSettings
from referrals_web.main import create_app
from referrals_web.rendering import Renderer
from referrals_web.staff import add_operator
from tests.unit.web.conftest import (
    STAFF_EMAIL,
    Browser,
    RecordingMailer,
    add_staff_member,
    sign_in_staff,
)
from tests.unit.web.fake_platform import API_KEY, INTAKE, PARTNERS, RECORDS, problem

pytestmark = pytest.mark.unit

OPS_KEY = "ops_webtestOPS0_OperatorKeyNeverInHtml0003"
OPERATOR = "kateryna@ops.example"
CASE = "3f0f6c7d-2b1a-4c3d-9e8f-0123456789ab"
TOPIC = "referrals.cases.v1"
LETTER = {
    "topic": TOPIC,
    "partition": 2,
    "offset": 17,
    "event_id": str(uuid4()),
    "event_type": "referrals.case.withdrawn.v1",
    "case_id": CASE,
    "consumer": "partners",
    "error_type": "ValueError",
    "error": "the database was away",
    "failed_at": "2026-12-06T08:00:00+00:00",
    "trace_url": "http://viewer.test/zipkin/traces/abc",
    "replays": [],
}
TIMELINE = {
    "case_id": CASE,
    "routing_status": "offered",
    "trace_viewer": "ok",
    "dead_letters": "ok",
    "root_trace_url": f"http://viewer.test/zipkin/traces/{CASE.replace('-', '')}",
    "spans": 42,
    "traces": 5,
    "services": ["intake", "partners"],
    "entries": [
        {
            "at": "2026-12-06T07:59:00+00:00",
            "source": "trace",
            "kind": "server",
            "service": "intake",
            "name": "post /v1/cases",
            "event_type": None,
            "status": "201",
            "error": False,
            "detail": None,
            "trace_id": "aa" * 16,
            "trace_url": f"http://viewer.test/zipkin/traces/{'aa' * 16}",
        },
        {
            "at": "2026-12-06T08:00:00+00:00",
            "source": "dead_letter",
            "kind": "dead_letter",
            "service": "partners",
            "name": f"dead letter on {TOPIC}.dlq",
            "event_type": "referrals.case.withdrawn.v1",
            "status": "ValueError",
            "error": True,
            "detail": "the database was away",
            "trace_id": None,
            "trace_url": None,
        },
    ],
}


class FakeOps:
    """Partners' ops API and intake's case list, as far as the ops screen calls them."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.replays: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if str(request.url).startswith(INTAKE) and path == "/v1/cases":
            assert request.headers["x-api-key"] == API_KEY
            found = request.url.params["reference"].replace("-", "").lower() == CASE[:8]
            items = [{"id": CASE, "status": "referred", "created_at": LETTER["failed_at"]}]
            return httpx.Response(200, json={"items": items if found else [], "next": None})
        assert str(request.url).startswith(PARTNERS), request.url
        if request.headers.get("x-api-key") != OPS_KEY:
            return problem(401, "unauthorized")
        if path == "/v1/ops/overdue":
            overdue = {
                "case_id": CASE,
                "what": "opinion",
                "due_at": "2026-12-01T00:00:00+00:00",
                "overdue_seconds": 400000,
                "center_code": "sample-center-a",
                "referral_id": str(uuid4()),
            }
            return httpx.Response(200, json=[overdue])
        if path == "/v1/ops/dead-letters":
            return httpx.Response(
                200, json=[{"topic": TOPIC, "dead_letter_topic": f"{TOPIC}.dlq", "count": 1}]
            )
        if path == f"/v1/ops/dead-letters/{TOPIC}":
            replays = [{"replayed_at": LETTER["failed_at"], "operator": "ops:k"}] * len(
                set(self.replays)
            )
            return httpx.Response(200, json=[{**LETTER, "replays": replays}])
        if path == f"/v1/ops/dead-letters/{TOPIC}/2/17/replay" and request.method == "POST":
            self.replays.append(request.headers["idempotency-key"])
            return httpx.Response(200, json=LETTER)
        if path == f"/v1/ops/cases/{CASE}/timeline":
            return httpx.Response(200, json=TIMELINE)
        if path.startswith("/v1/ops/cases/"):
            return problem(404, "not-found", "Nothing is known of this case.")
        return problem(404, "not-found")


@pytest.fixture
def ops() -> FakeOps:
    return FakeOps()


def settings(ops_key: str) -> WebSettings:
    return WebSettings(
        intake_url=INTAKE,
        records_url=RECORDS,
        partners_url=PARTNERS,
        front_end_api_key=API_KEY,
        ops_api_key=ops_key,
        environment="test",
        session_secret="a-real-test-session-key-0123456789",
        postgres={"dsn": "postgresql://web:test-pw-7f3k@127.0.0.1:1/web"},
    )


@pytest.fixture
def ops_runtime(
    ops: FakeOps, mailer: RecordingMailer, renderer: Renderer, clean_env: None
) -> Runtime:
    return memory_runtime(
        settings(OPS_KEY),
        transport=httpx.MockTransport(ops.handle),
        mailer=mailer,
        renderer=renderer,
    )


@pytest.fixture
async def visitor(ops_runtime: Runtime) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=create_app(runtime=ops_runtime))
    async with httpx.AsyncClient(transport=transport, base_url="https://web.test") as client:
        yield Browser(client)
    await ops_runtime.platform.close()


async def sign_in_operator(browser: Browser, runtime: Runtime, mailer: RecordingMailer) -> None:
    await add_operator(runtime.staff, email=OPERATOR, name="Kateryna Ops")
    asked = await browser.post("/ops/sign-in", {"email": OPERATOR.upper()})
    assert asked.status_code == 303 and asked.headers["location"] == "/ops/sign-in/code"
    sent = mailer.sent[-1]
    assert (sent.to, sent.purpose, sent.locale) == (OPERATOR, "ops", "en")
    signed = await browser.post("/ops/sign-in/code", {"code": sent.code, "action": "check"})
    assert signed.status_code == 303 and signed.headers["location"] == "/ops", signed.text
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("referrals_ops=") and "Path=/ops" in cookie and "HttpOnly" in cookie


async def test_an_operator_signs_in_and_sees_what_is_late_and_the_dead_letters(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer, ops: FakeOps
) -> None:
    assert (await visitor.get("/ops")).headers["location"] == "/ops/sign-in"
    await sign_in_operator(visitor, ops_runtime, mailer)

    overview = await visitor.get("/ops")

    assert overview.status_code == 200
    assert "Kateryna Ops" in overview.text
    assert "The opinion is later than the center said" in overview.text
    assert f'href="/ops/cases/{CASE}"' in overview.text
    assert f'href="/ops/dead-letters/{TOPIC}"' in overview.text
    assert all(r.headers.get("x-api-key") == OPS_KEY for r in ops.seen)
    assert OPS_KEY not in "".join(p.text + str(p.headers) for p in visitor.pages)
    actions = [a.action for a in await ops_runtime.ops_audit.recent(10)]
    assert actions == ["sign_in"]


async def test_a_case_is_found_by_its_reference_and_its_timeline_links_to_the_traces(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer
) -> None:
    await sign_in_operator(visitor, ops_runtime, mailer)

    found = await visitor.get("/ops/find", params={"q": "3f0f-6C7D"})
    assert found.status_code == 303 and found.headers["location"] == f"/ops/cases/{CASE}"
    page = await visitor.get(found.headers["location"])

    assert page.status_code == 200
    assert "3F0F-6C7D" in page.text and "post /v1/cases" in page.text
    assert TIMELINE["root_trace_url"] in page.text
    assert f"http://viewer.test/zipkin/traces/{'aa' * 16}" in page.text
    assert 'class="row--error"' in page.text and ">Error<" in page.text
    # Newest first: the dead letter before the request that opened the case.
    assert page.text.index("dead letter on") < page.text.index("post /v1/cases")
    audit = await ops_runtime.ops_audit.recent(10)
    assert [(a.action, a.target) for a in audit[:2]] == [
        ("view_timeline", CASE),
        ("find_case", "3f0f-6C7D"),
    ]


@pytest.mark.parametrize(
    ("typed", "status", "message"),
    [
        ("", 422, "reference or its id"),
        ("not a case", 422, "Enter a reference like 3F0F-6C7D"),
        ("AAAA-BBBB", 404, "No case has the reference AAAA-BBBB"),
    ],
)
async def test_what_cannot_be_a_case_is_said_on_the_form(
    visitor: Browser,
    ops_runtime: Runtime,
    mailer: RecordingMailer,
    typed: str,
    status: int,
    message: str,
) -> None:
    await sign_in_operator(visitor, ops_runtime, mailer)
    page = await visitor.get("/ops/find", params={"q": typed})
    assert page.status_code == status
    assert 'id="error-summary"' in page.text, page.text[page.text.find("<main") :][:1500]
    assert message in page.text


async def test_an_unknown_case_id_is_said_plainly(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer
) -> None:
    await sign_in_operator(visitor, ops_runtime, mailer)
    page = await visitor.get(f"/ops/cases/{uuid4()}")
    assert page.status_code == 404 and "Nothing is known of this case" in page.text


async def test_a_dead_letter_is_replayed_after_a_confirmation_and_once_per_click(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer, ops: FakeOps
) -> None:
    await sign_in_operator(visitor, ops_runtime, mailer)
    listed = await visitor.get(f"/ops/dead-letters/{TOPIC}")
    replay = f"/ops/dead-letters/{TOPIC}/2/17/replay"
    assert f'href="{replay}"' in listed.text and "the database was away" in listed.text
    confirm = await visitor.get(replay)
    assert confirm.status_code == 200 and "Send it back" in confirm.text
    assert ops.replays == []  # nothing is sent before the confirmation

    first = await visitor.post(replay, {"replays": "0"})
    again = await visitor.post(replay, {"replays": "0"})  # a double click, a retry

    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == f"/ops/dead-letters/{TOPIC}"
    assert len(ops.replays) == 2 and len(set(ops.replays)) == 1
    shown = await visitor.get(first.headers["location"])
    assert "was sent back to referrals.cases.v1" in shown.text
    later = await visitor.post(replay, {"replays": "1"})  # a new replay, on purpose
    assert later.status_code == 303 and len(set(ops.replays)) == 2
    audit = await ops_runtime.ops_audit.recent(10)
    assert [a.target for a in audit if a.action == "replay_dead_letter"] == [f"{TOPIC} 2:17"] * 3


async def test_a_replay_without_the_pages_csrf_token_is_refused(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer, ops: FakeOps
) -> None:
    await sign_in_operator(visitor, ops_runtime, mailer)
    refused = await visitor.client.post(f"/ops/dead-letters/{TOPIC}/2/17/replay", data={})
    assert refused.status_code == 403 and ops.replays == []


async def test_center_staff_and_operators_keep_to_their_own_screens(
    visitor: Browser, ops_runtime: Runtime, mailer: RecordingMailer
) -> None:
    await add_staff_member(ops_runtime)
    await visitor.post("/ops/sign-in", {"email": STAFF_EMAIL})
    assert mailer.sent == []  # a center's staff member gets no ops code
    await sign_in_operator(visitor, ops_runtime, mailer)
    await visitor.post("/center/sign-in", {"email": OPERATOR})
    assert [s.purpose for s in mailer.sent] == ["ops"]  # nor an operator a console code
    console = await visitor.get("/center")
    assert console.status_code == 303 and console.headers["location"] == "/center/sign-in"
    await sign_in_staff(visitor, mailer)
    assert (await visitor.get("/ops")).status_code == 200  # each realm keeps its own session


async def test_without_an_operator_key_the_screen_says_so(
    mailer: RecordingMailer, renderer: Renderer, clean_env: None, ops: FakeOps
) -> None:
    runtime = memory_runtime(
        settings(""), transport=httpx.MockTransport(ops.handle), mailer=mailer, renderer=renderer
    )
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="https://web.test") as client:
        browser = Browser(client)
        await sign_in_operator(browser, runtime, mailer)
        page = await browser.get("/ops")
    assert page.status_code == 503 and "operator key" in page.text
    assert ops.seen == []
