"""The case's live timeline (`GET /v1/cases/{id}/events`, Server-Sent Events) on real PostgreSQL,
served by uvicorn and read by a real HTTP client: the entries so far, then each new one as it is
committed (PostgreSQL LISTEN/NOTIFY, no polling), resumed after `Last-Event-ID`, heartbeats, the
token's case only, and a cap on concurrent streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from devstack.process import free_port
from referrals_intake.bootstrap import build_runtime
from referrals_intake.main import create_app

from .conftest import intake_settings, new_client_key, open_case

pytestmark = pytest.mark.integration


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comment: str | None = None

    def json(self) -> dict:
        return json.loads("\n".join(self.data))


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """The stream's events and comments as they arrive (the text/event-stream grammar)."""
    current = Event()
    async for line in response.aiter_lines():
        if line == "":
            if current.data or current.id or current.event:
                yield current
            current = Event()
        elif line.startswith(":"):
            yield Event(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current.data.append(value)
            elif name in ("id", "event"):
                setattr(current, name, value)


async def next_event(stream: AsyncIterator[Event], timeout: float = 10) -> Event:
    """The next event that is not a comment."""
    async with asyncio.timeout(timeout):
        async for event in stream:
            if event.comment is None:
                return event
    raise AssertionError("the stream ended")


@contextlib.asynccontextmanager
async def serving(app) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served(intake_dsn, kafka_bootstrap) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    settings = intake_settings(intake_dsn, kafka_bootstrap).model_copy(
        update={"case_stream_heartbeat_seconds": 0.3, "case_streams_per_case": 2}
    )
    rt = build_runtime(settings)
    app = create_app(runtime=rt)
    try:
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=15) as client:
            yield client, rt
    finally:
        await rt.case_events.close()
        await rt.db.dispose()


async def test_the_stream_sends_the_timeline_then_each_entry_as_it_is_committed(served):
    client, rt = served
    key = await new_client_key(rt)
    case_id, headers = await open_case(client, key)
    url = f"/v1/cases/{case_id}/events"

    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        stream = events(response)
        first = await next_event(stream)
        assert first.event == "timeline_entry"
        assert first.json()["to_status"] == "draft" and first.json()["id"] == int(first.id)
        assert rt.case_events.streams == 1

        started = time.perf_counter()
        withdrawn = await client.post(
            f"/v1/cases/{case_id}/withdraw", headers=headers, json={"reason": "patient_request"}
        )
        assert withdrawn.status_code == 200
        second = await next_event(stream, timeout=5)
        latency = time.perf_counter() - started

    entry = second.json()
    assert (entry["from_status"], entry["to_status"]) == ("draft", "withdrawn")
    assert int(second.id) > int(first.id)
    assert latency < 2, f"the entry took {latency:.2f} s to arrive"
    # The stream's end frees its place, and the listening connection with the last one.
    async with asyncio.timeout(5):
        while rt.case_events.streams:
            await asyncio.sleep(0.05)


async def test_a_reconnect_with_last_event_id_resumes_after_the_entry_seen(served):
    client, rt = served
    case_id, headers = await open_case(client, await new_client_key(rt))
    timeline = (await client.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
    assert len(timeline) == 1
    async with client.stream("GET", f"/v1/cases/{case_id}/events", headers=headers) as response:
        first = await next_event(events(response))
    await client.post(f"/v1/cases/{case_id}/withdraw", headers=headers, json={})

    resumed = {**headers, "Last-Event-ID": first.id}
    async with client.stream("GET", f"/v1/cases/{case_id}/events", headers=resumed) as response:
        after = await next_event(events(response))

    assert after.json()["to_status"] == "withdrawn"  # not the draft entry again


async def test_heartbeats_keep_a_quiet_stream_open(served):
    client, rt = served
    case_id, headers = await open_case(client, await new_client_key(rt))

    comments = []
    async with client.stream("GET", f"/v1/cases/{case_id}/events", headers=headers) as response:
        async with asyncio.timeout(5):
            async for event in events(response):
                if event.comment is not None:
                    comments.append(event.comment)
                    if len(comments) == 2:
                        break

    assert comments[0].startswith("ping")


async def test_another_cases_token_gets_404_and_no_stream(served):
    client, rt = served
    key = await new_client_key(rt)
    mine, _ = await open_case(client, key)
    _, other_headers = await open_case(client, key)

    response = await client.get(f"/v1/cases/{mine}/events", headers=other_headers)
    anonymous = await client.get(f"/v1/cases/{mine}/events")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert anonymous.status_code == 401
    assert rt.case_events.streams == 0


async def test_a_bad_last_event_id_is_a_problem(served):
    client, rt = served
    case_id, headers = await open_case(client, await new_client_key(rt))

    response = await client.get(
        f"/v1/cases/{case_id}/events", headers={**headers, "Last-Event-ID": "x; drop"}
    )

    assert response.status_code == 422
    assert rt.case_events.streams == 0
    # Digits, but past any id a timeline entry can have (its column is an integer): a problem,
    # not a database error (schemathesis found 6072581067 answered with a 500).
    for too_large in ("2147483648", "6072581067", "12345678901"):
        response = await client.get(
            f"/v1/cases/{case_id}/events", headers={**headers, "Last-Event-ID": too_large}
        )
        assert response.status_code == 422, too_large
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["pointer"] == "#/header/Last-Event-ID"
    assert rt.case_events.streams == 0


async def test_streams_past_the_cap_for_one_case_are_refused_with_retry_after(served):
    client, rt = served
    case_id, headers = await open_case(client, await new_client_key(rt))
    url = f"/v1/cases/{case_id}/events"

    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):  # the cap in this test
            response = await stack.enter_async_context(client.stream("GET", url, headers=headers))
            assert response.status_code == 200
        refused = await client.get(url, headers=headers)

        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["type"].endswith("/too-many-streams")
        assert rt.case_events.streams == 2
