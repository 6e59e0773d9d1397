"""The sample center's polite calls: which answers and errors are retried, how long it waits
(`Retry-After` honoured), that it stops, that each retry is a `retry` line on stdout, and that an
error ends one offer, not the process. Over `httpx.MockTransport`: no network."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from devstack.sample_center import (
    Politeness,
    Retry,
    SampleCenters,
    polite_request,
    retry_after,
)

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"


def problem(status: int, slug: str, retry: str | None = None, **extra: Any) -> httpx.Response:
    headers = {"Retry-After": retry} if retry is not None else {}
    body = {"type": f"https://referrals.example/problems/{slug}", "status": status, **extra}
    return httpx.Response(
        status, content=json.dumps(body), headers={**headers, "content-type": PROBLEM}
    )


Answer = httpx.Response | Exception


def scripted(*answers: Answer) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client whose calls get `answers` in turn (an exception is raised), then 200s."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if queue else httpx.Response(200, json={"ok": True})
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://api"), seen


class Sleeps:
    """A fake `sleep` that records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def call(client: httpx.AsyncClient, **options: Any) -> tuple[httpx.Response, Sleeps]:
    sleeps = Sleeps()
    response = await polite_request(
        client, "GET", "/v1/referrals/r/documents", sleep=sleeps, **options
    )
    return response, sleeps


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_busy_or_unreachable_upstream_is_retried(status: int) -> None:
    client, seen = scripted(httpx.Response(status), httpx.Response(status))
    response, sleeps = await call(client)
    assert response.status_code == 200
    assert len(seen) == 3 and len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_connection_errors_and_timeouts_are_retried(error: Exception) -> None:
    client, seen = scripted(error)
    response, sleeps = await call(client)
    assert response.status_code == 200 and len(seen) == 2 and len(sleeps.waits) == 1


async def test_a_409_problem_with_retry_after_is_retried_after_that_long() -> None:
    client, seen = scripted(
        problem(409, "referral-not-known-yet", retry="2"),
        problem(409, "referral-not-known-yet", retry="2"),
    )
    response, sleeps = await call(client)
    assert response.status_code == 200 and len(seen) == 3
    assert sleeps.waits == [2.0, 2.0]


@pytest.mark.parametrize(
    "answer",
    [
        problem(409, "conflict", referral_status="accepted"),  # a state conflict: final
        httpx.Response(409, text="busy", headers={"Retry-After": "2"}),  # not a problem
        problem(404, "not-found"),
        problem(401, "unauthorized"),
        problem(422, "validation-failed"),
        problem(400, "bad-request"),
        httpx.Response(500),
        httpx.Response(501),
        httpx.Response(200),
        httpx.Response(201),
    ],
    ids=lambda r: f"{r.status_code}-{r.headers.get('content-type', '')}",
)
async def test_other_answers_are_returned_at_once(answer: httpx.Response) -> None:
    client, seen = scripted(answer)
    response, sleeps = await call(client)
    assert response is not None and response.status_code == answer.status_code
    assert len(seen) == 1 and sleeps.waits == []


async def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    client, seen = scripted(httpx.UnsupportedProtocol("ftp is not http"))
    with pytest.raises(httpx.UnsupportedProtocol):
        await call(client)
    assert len(seen) == 1


async def test_retry_after_is_honoured_on_a_503_too_and_as_a_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, _ = scripted(
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": later}),
    )
    _, sleeps = await call(client)
    assert sleeps.waits[0] == 7.0
    assert 25.0 <= sleeps.waits[1] <= 30.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0", 0.0), (" 12 ", 12.0), ("soon", None), ("-3", None), ("", None)],
)
def test_retry_after_values(header: str, seconds: float | None) -> None:
    headers = {"Retry-After": header} if header else {}
    assert retry_after(httpx.Response(409, headers=headers)) == seconds


async def test_without_retry_after_the_backoff_grows_and_stays_capped() -> None:
    client, _ = scripted(*[httpx.Response(503) for _ in range(8)])
    _, sleeps = await call(client, politeness=Politeness(backoff_initial=1.0, backoff_max=4.0))
    assert len(sleeps.waits) == 8
    assert all(0 <= w <= 4.0 for w in sleeps.waits)
    assert all(w <= 2 ** (n - 1) for n, w in enumerate(sleeps.waits, start=1))


async def test_a_wait_that_would_end_past_the_budget_is_not_started() -> None:
    """The budget bounds the call: asked to wait longer than it has left, it stops and hands
    the last answer to the caller, who judges it."""
    client, seen = scripted(problem(409, "opinion-not-stored", retry="5"))
    response, sleeps = await call(client, politeness=Politeness(budget=3.0))
    assert response.status_code == 409 and len(seen) == 1 and sleeps.waits == []


async def test_a_call_that_keeps_failing_stops_at_its_budget_with_the_last_error() -> None:
    client, seen = scripted(*[httpx.ConnectError("refused") for _ in range(1000)])
    started = datetime.now(UTC)
    with pytest.raises(httpx.ConnectError):
        await polite_request(
            client,
            "GET",
            "/v1/x",
            politeness=Politeness(budget=0.5, backoff_initial=0.02, backoff_max=0.05),
        )
    assert (datetime.now(UTC) - started).total_seconds() < 2.0
    assert 2 <= len(seen) < 1000


async def test_each_retry_is_a_json_line_on_stdout_without_the_query(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _ = scripted(problem(409, "referral-not-known-yet", retry="2"), httpx.ReadTimeout("t"))
    noted: list[Retry] = []
    await polite_request(
        client,
        "GET",
        "/bucket/cases/c/documents/d?X-Amz-Signature=secret",
        log={"center": "charite-berlin", "case_id": "c"},
        on_retry=noted.append,
        sleep=Sleeps(),
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["action"], x["cause"], x["attempt"]) for x in lines] == [
        ("retry", "409 referral-not-known-yet", 1),
        ("retry", "ReadTimeout", 2),
    ]
    first = lines[0]
    assert first["call"] == "GET /bucket/cases/c/documents/d"
    assert first["wait_seconds"] == 2.0
    assert first["center"] == "charite-berlin" and first["case_id"] == "c" and "at" in first
    assert "secret" not in json.dumps(lines)
    assert (noted[0].cause, noted[0].wait) == ("409 referral-not-known-yet", 2.0)
    assert noted[0].response is not None and noted[1].response is None


# ------------------------------------------------------------- one offer, not the process


def sample_centers(
    partners: Callable[[httpx.Request], httpx.Response],
    records: Callable[[httpx.Request], httpx.Response],
) -> SampleCenters:
    """The sample centers without a platform: their three HTTP clients over mock transports."""
    centers = SampleCenters.__new__(SampleCenters)
    centers.keys = {"charite-berlin": "ccr_test"}
    centers.partners = httpx.AsyncClient(
        transport=httpx.MockTransport(partners), base_url="http://partners"
    )
    centers.records = httpx.AsyncClient(
        transport=httpx.MockTransport(records), base_url="http://records"
    )
    centers.downloads = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"%PDF-1.7 ..."))
    )
    centers.decline_first = False
    centers.cases_seen = set()
    return centers


def offer(referral_id: str) -> dict[str, Any]:
    document_id = str(uuid.uuid4())
    return {
        "id": str(uuid.uuid4()),
        "type": "referrals.referral.offered.v1",
        "data": {
            "case_id": str(uuid.uuid4()),
            "referral_id": referral_id,
            "documents": [
                {
                    "document_id": document_id,
                    "fetch_via": f"/v1/referrals/{referral_id}/documents/{document_id}",
                }
            ],
        },
    }


async def test_an_offer_that_fails_is_logged_and_the_next_one_is_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doomed, fine = str(uuid.uuid4()), str(uuid.uuid4())
    not_known_yet: set[str] = set()
    not_stored: set[str] = set()

    def partners(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/accept"):
            if doomed in request.url.path:
                return problem(404, "not-found", detail="There is no referral for this center.")
            return httpx.Response(200, json={})
        if fine not in not_stored:  # the delivery: partners has not seen the opinion yet
            not_stored.add(fine)
            return problem(409, "opinion-not-stored", retry="0")
        return httpx.Response(200, json={})

    def records(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"id": str(uuid.uuid4())})
        if fine not in not_known_yet:  # records has not read the grant yet
            not_known_yet.add(fine)
            return problem(409, "referral-not-known-yet", retry="0")
        return httpx.Response(200, json={"url": "http://minio/bucket/object?X-Amz-Signature=s"})

    centers = sample_centers(partners, records)
    await centers.on_offer("charite-berlin", offer(doomed))
    await centers.on_offer("charite-berlin", offer(fine))
    actions = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["action"], a.get("referral_id")) for a in actions] == [
        ("offer received", doomed),
        ("offer failed", doomed),
        ("offer received", fine),
        ("accepted", None),
        ("retry", fine),
        ("retry", fine),
        ("opinion delivered", None),
    ]
    assert "404" in actions[1]["error"] and "no referral" in actions[1]["error"]
    assert [a["cause"] for a in actions if a["action"] == "retry"] == [
        "409 referral-not-known-yet",
        "409 opinion-not-stored",
    ]
