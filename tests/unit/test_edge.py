"""The edge of every HTTP API: rate limits per caller and per address, lockout after failed
authentications (per address, and per credential *and* address), failed authentications audited
in summary, and body limits, on an app built by `create_service_app` (in-process, no I/O)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Request, Security
from fastapi.security import APIKeyHeader
from starlette.datastructures import Headers

from referrals_common.api.problems import PROBLEM_MEDIA_TYPE, Unauthorized
from referrals_common.auth.api_keys import generate_api_key, parse_api_key
from referrals_common.edge import (
    FailedAuthentications,
    FailureSummary,
    RateLimits,
    authenticated,
    authentication_failed,
    claimed_credential,
)
from referrals_common.service_app import create_service_app
from referrals_common.settings import HttpSettings, RateLimitSettings, ServiceSettings

pytestmark = pytest.mark.unit

ATTACKER, VICTIM, BYSTANDER = "198.51.100.66", "203.0.113.10", "192.0.2.44"


def tight(**overrides: object) -> RateLimitSettings:
    values: dict[str, object] = {
        "per_client": "5/minute",
        "per_ip": "5/minute",
        "failed_authentications_per_ip": "8/minute",
        "failed_authentications_per_credential": "3/minute",
    }
    values.update(overrides)
    return RateLimitSettings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- RateLimits


def test_a_client_over_its_rate_waits_while_another_client_is_served():
    limits = RateLimits(tight())
    assert [limits.spend_client("key:aaaaaaaaaaaa") for _ in range(5)] == [None] * 5
    wait = limits.spend_client("key:aaaaaaaaaaaa")
    assert wait is not None
    assert 1 <= wait <= 60
    assert limits.client_exhausted("key:aaaaaaaaaaaa") is not None
    assert limits.spend_client("key:bbbbbbbbbbbb") is None


def test_testing_a_credential_spends_nothing():
    limits = RateLimits(tight())
    for _ in range(20):
        assert limits.client_exhausted("key:aaaaaaaaaaaa") is None
        assert limits.ip_exhausted(VICTIM) is None
    assert limits.spend_client("key:aaaaaaaaaaaa") is None


def test_failed_authentications_lock_out_the_address_until_the_window_passes():
    limits = RateLimits(tight(failed_authentications_per_ip="3/second"))
    for _ in range(3):
        assert limits.locked_out(ATTACKER) is None
        limits.failed(ATTACKER)
    assert limits.locked_out(ATTACKER) == 1
    assert limits.locked_out(BYSTANDER) is None
    time.sleep(1.05)
    assert limits.locked_out(ATTACKER) is None


def test_hammering_a_victims_key_id_locks_it_out_for_the_attackers_address_only():
    limits = RateLimits(tight())
    victim_key = "key:VictimKey001"
    for _ in range(3):
        limits.failed(ATTACKER, victim_key)
    assert limits.locked_out(ATTACKER, victim_key) is not None
    assert limits.locked_out(ATTACKER, "key:OtherKey0001") is None  # the address is not (yet)
    assert limits.locked_out(VICTIM, victim_key) is None


def test_disabled_limits_never_refuse():
    limits = RateLimits(tight(enabled=False))
    for _ in range(50):
        assert limits.spend_client("key:aaaaaaaaaaaa") is None
        assert limits.spend_ip(ATTACKER) is None
        limits.failed(ATTACKER, "key:aaaaaaaaaaaa")
    assert limits.locked_out(ATTACKER, "key:aaaaaaaaaaaa") is None


def test_limits_in_another_notation_are_refused_at_start_up():
    with pytest.raises(ValueError, match="per_client"):
        RateLimitSettings(per_client="lots")


# --------------------------------------------------------------- FailedAuthentications


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sink:
    rows: list[FailureSummary] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, summaries: Sequence[FailureSummary]) -> None:
        if self.fail:
            raise ConnectionError("the database is away")
        self.rows.extend(summaries)


async def test_a_flood_of_failures_is_one_summary_per_actor_address_and_window():
    clock, sink = Clock(), Sink()
    tally = FailedAuthentications(60, clock=clock)
    tally.sink = sink
    for _ in range(500):
        tally.add("center:VictimKey001", ATTACKER)
    tally.add("case-token:invalid", BYSTANDER)
    assert not tally.due
    assert await tally.flush() == 0  # the window is not over: nothing is written yet
    clock.now += 61
    assert tally.due
    assert await tally.flush() == 2
    by_actor = {row.actor: row for row in sink.rows}
    assert by_actor["center:VictimKey001"].count == 500
    assert by_actor["center:VictimKey001"].action == f"failed_authentication x500 from {ATTACKER}"
    assert by_actor["case-token:invalid"].count == 1


async def test_made_up_key_ids_from_one_address_fold_into_one_row():
    clock, sink = Clock(), Sink()
    tally = FailedAuthentications(60, max_actors_per_source=5, clock=clock)
    tally.sink = sink
    for i in range(400):
        tally.add(f"client:Made{i:08d}", ATTACKER)
    assert await tally.flush(everything=True) == 6
    assert sum(row.count for row in sink.rows) == 400
    assert ("client:*", ATTACKER) in {(row.actor, row.source) for row in sink.rows}


async def test_many_addresses_stay_within_the_entry_bound():
    tally = FailedAuthentications(60, max_entries=50, clock=Clock())
    for i in range(1000):
        tally.add("case-token:invalid", f"10.0.{i // 250}.{i % 250}")
    summaries = tally.take(everything=True)
    assert len(summaries) <= 51
    assert sum(s.count for s in summaries) == 1000


async def test_summaries_a_sink_could_not_write_are_written_at_the_next_flush():
    sink = Sink(fail=True)
    tally = FailedAuthentications(60, clock=Clock())
    tally.sink = sink
    tally.add("key:malformed", ATTACKER)
    assert await tally.flush(everything=True) == 0
    sink.fail = False
    assert await tally.flush() == 1
    assert sink.rows[0].count == 1


# ------------------------------------------------------------------ claimed credential


def _token(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'EdDSA'})}.{part(claims)}.c2lnbmF0dXJl"


def test_the_claimed_credential_is_the_key_id_or_the_tokens_case_never_the_secret():
    key = generate_api_key("pfe")
    assert claimed_credential(Headers({"x-api-key": key.display})) == f"key:{key.key_id}"
    token = _token({"sub": "3f2c0a4e-0000-4000-8000-000000000001"})
    assert (
        claimed_credential(Headers({"authorization": f"Bearer {token}"}))
        == "case:3f2c0a4e-0000-4000-8000-000000000001"
    )
    for garbage in ({"x-api-key": "not a key"}, {"authorization": "Bearer x.y.z"}, {}):
        assert claimed_credential(Headers(garbage)) is None


# ------------------------------------------------------------------------ the middleware


@dataclass
class StubRuntime:
    settings: ServiceSettings


@dataclass
class Calls:
    echo: int = 0
    audited: list[FailureSummary] = field(default_factory=list)


api_key = APIKeyHeader(name="X-Api-Key", auto_error=False)


def edge_app(settings: ServiceSettings, calls: Calls, good_key: str):
    router = APIRouter(prefix="/v1")

    async def sink(summaries: Sequence[FailureSummary]) -> None:
        calls.audited.extend(summaries)

    @router.get("/me")
    async def me(request: Request, key: Annotated[str | None, Security(api_key)]) -> dict:
        if key != good_key:
            await authentication_failed(request, actor="client:someone", sink=sink)
            raise Unauthorized("The API key is not valid.")
        authenticated(request, f"key:{parse_api_key(key).key_id}")
        return {"ok": True}

    @router.post("/echo")
    async def echo(body: dict) -> dict:
        calls.echo += 1
        return {"keys": len(body)}

    @router.post("/uploads/{upload_id}")
    async def upload(upload_id: str, request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    app = create_service_app(
        title="edge",
        description="edge tests",
        router=router,
        build_runtime=lambda: None,
        runtime=StubRuntime(settings),
        service="edge-tests",
        streamed_bodies=["POST /v1/uploads/{upload_id}"],
    )
    app.state.runtime = StubRuntime(settings)  # httpx's ASGI transport runs no lifespan
    return app


def client(app, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://edge"
    )


@pytest.fixture
def good_key() -> str:
    return generate_api_key("pfe").display


async def test_an_anonymous_flood_gets_429_with_retry_after_and_health_stays_open(good_key):
    app = edge_app(ServiceSettings(rate_limit=tight()), Calls(), good_key)
    async with client(app, ATTACKER) as attacker, client(app, BYSTANDER) as bystander:
        statuses = [(await attacker.post("/v1/echo", json={})).status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        refused = await attacker.post("/v1/echo", json={})
        assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert refused.json()["type"].endswith("/too-many-requests")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await attacker.get("/health")).status_code == 200
        assert (await attacker.get("/metrics")).status_code == 200
        assert (await bystander.post("/v1/echo", json={})).status_code == 200


async def test_an_authenticated_client_is_limited_by_its_own_rate_not_its_address(good_key):
    app = edge_app(ServiceSettings(rate_limit=tight(per_client="3/minute")), Calls(), good_key)
    other = generate_api_key("pfe").display
    async with client(app, VICTIM) as api:
        ok = [(await api.get("/v1/me", headers={"X-Api-Key": good_key})).status_code]
        ok += [(await api.get("/v1/me", headers={"X-Api-Key": good_key})).status_code]
        ok += [(await api.get("/v1/me", headers={"X-Api-Key": good_key})).status_code]
        assert ok == [200, 200, 200]
        over = await api.get("/v1/me", headers={"X-Api-Key": good_key})
        assert over.status_code == 429
        assert "retry-after" in over.headers
        # The address spent none of its own requests on the authenticated calls.
        assert (await api.post("/v1/echo", json={})).status_code == 200
        # Another key of the same shape from the same address is not that client.
        assert (await api.get("/v1/me", headers={"X-Api-Key": other})).status_code == 401


async def test_forged_keys_naming_a_victim_lock_out_the_attacker_not_the_victim(good_key):
    calls = Calls()
    app = edge_app(ServiceSettings(rate_limit=tight()), calls, good_key)
    prefix, key_id, _ = good_key.split("_")
    forged = f"{prefix}_{key_id}_{'A' * 43}"
    async with client(app, ATTACKER) as attacker, client(app, VICTIM) as victim:
        statuses = [
            (await attacker.get("/v1/me", headers={"X-Api-Key": forged})).status_code
            for _ in range(6)
        ]
        assert statuses == [401, 401, 401, 429, 429, 429]
        locked = await attacker.get("/v1/me", headers={"X-Api-Key": good_key})
        assert locked.status_code == 429  # the key id is locked out for this address
        assert locked.json()["type"].endswith("/too-many-failed-authentications")
        assert (await victim.get("/v1/me", headers={"X-Api-Key": good_key})).status_code == 200
    app.state.edge.failures.window_seconds = 0  # the window is over
    assert await app.state.edge.flush() >= 1
    failed = [s for s in calls.audited if s.kind == "failed_authentication"]
    assert [(s.actor, s.source, s.count) for s in failed] == [("client:someone", ATTACKER, 3)]


async def test_an_oversized_json_body_is_refused_before_the_handler_runs(good_key):
    calls = Calls()
    settings = ServiceSettings(http=HttpSettings(max_body_bytes=1024))
    app = edge_app(settings, calls, good_key)
    big = {"text": "x" * 4096}
    async with client(app, VICTIM) as api:
        declared = await api.post("/v1/echo", json=big)
        assert declared.status_code == 413
        assert declared.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert declared.json()["type"].endswith("/content-too-large")

        async def chunks():
            for _ in range(8):
                yield b'{"text": "' + b"x" * 400 + b'", '

        streamed = await api.post(
            "/v1/echo", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert calls.echo == 0
        # A streamed upload route keeps its own limits: the edge lets it through.
        upload = await api.post("/v1/uploads/u1", content=b"y" * 10_000)
        assert upload.status_code == 200
        assert upload.json() == {"size": 10_000}
        assert (await api.post("/v1/echo", json={"small": 1})).status_code == 200


async def test_a_stalled_body_is_cut_off_with_408(good_key):
    settings = ServiceSettings(http=HttpSettings(body_idle_timeout_seconds=0.3))
    app = edge_app(settings, Calls(), good_key)

    async def stalls():
        yield b"y" * 100
        await asyncio.sleep(2)
        yield b"y" * 100

    async with client(app, VICTIM) as api:
        started = time.monotonic()
        r = await api.post("/v1/uploads/u2", content=stalls())
        assert r.status_code == 408
        assert r.json()["type"].endswith("/request-timeout")
        assert time.monotonic() - started < 1.5


async def test_a_trickling_body_is_cut_off_with_408(good_key):
    settings = ServiceSettings(
        http=HttpSettings(body_min_bytes_per_second=1000, body_grace_seconds=0.3)
    )
    app = edge_app(settings, Calls(), good_key)

    async def trickles():
        for _ in range(100):
            yield b"y" * 10
            await asyncio.sleep(0.05)

    async with client(app, VICTIM) as api:
        started = time.monotonic()
        r = await api.post("/v1/uploads/u3", content=trickles())
        assert r.status_code == 408
        assert time.monotonic() - started < 2


def test_a_request_starts_no_thread_and_expired_entries_are_still_swept(monkeypatch):
    """The library's memory storage started a timer thread after almost every request (one
    whenever the last, of 10 ms, had ended); here its sweep runs in the caller's thread, at
    most once a second, and still gives expired windows' memory back."""
    import threading

    from referrals_common.edge import ratelimit

    limits = RateLimits(tight(per_client="100/second", failed_authentications_per_ip="3/second"))
    storage = limits._windows.storage
    started: list[object] = []
    original = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    monkeypatch.setattr(ratelimit._SweptInline, "SWEEP_EVERY_S", 0.2)
    for n in range(30):
        limits.spend_client(f"key:client{n:07d}")
        limits.failed(ATTACKER)
        time.sleep(0.012)  # requests more than the library's 10 ms timer apart
    assert started == []
    held = {key for key, entries in storage.events.items() if entries}
    assert len(held) == 31  # each window's entries, none expired yet
    time.sleep(1.1)  # every entry has left its window (1 s)
    limits.spend_client("key:another0001")
    held = {key for key, entries in storage.events.items() if entries}
    assert held == {"LIMITER/client/key:another0001/100/1/second"}
    assert started == []
