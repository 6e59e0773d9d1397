"""The edge of the real APIs (`referrals_common.edge`) on the security suite's platform: rate
limits and lockout on intake, records and partners with their real authentication, failed
authentications audited in summary in each service's own `access_audit`, the body limit, and a
real `referrals-intake api` process (uvicorn as the service's CLI starts it) on loopback that
drops a slowloris connection and a trickling body.

Each test builds the service's app anew around the suite's runtime with limits of its own
(the suite's apps run the edge with limits nobody reaches), and calls from addresses of its
own (httpx's ASGI transport lets a test say which peer it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from devstack.process import free_port
from referrals_common.settings import RateLimitSettings
from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import STREAMED_UPLOADS
from referrals_records.main import create_app as create_records_app

from .test_authorization_matrix import app_routes
from .world import Patient, World, forge_api_key

pytestmark = pytest.mark.security

APP_FACTORIES: dict[str, Callable[..., FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}
ATTACKER, VICTIM, BYSTANDER = "198.51.100.66", "203.0.113.10", "192.0.2.44"
PROBLEM = "application/problem+json"


def edge_app(world: World, service: str, **limits: Any) -> FastAPI:
    """`service`'s API around the suite's runtime, with these rate limits (generous defaults)."""
    values: dict[str, Any] = {
        "per_client": "1000/minute",
        "per_ip": "1000/minute",
        "failed_authentications_per_ip": "1000/minute",
        "failed_authentications_per_credential": "1000/minute",
    }
    values.update(limits)
    rt = world.runtimes[service]
    settings = rt.settings.model_copy(update={"rate_limit": RateLimitSettings(**values)})
    runtime = dataclasses.replace(rt, settings=settings)
    app = APP_FACTORIES[service](runtime=runtime)
    app.state.runtime = runtime  # httpx's ASGI transport runs no lifespan
    return app


def caller(app: FastAPI, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 50000)),
        base_url="http://edge",
        timeout=60,
    )


async def audit_rows_after(world: World, service: str, after_id: int) -> list[dict[str, Any]]:
    async with world.runtimes[service].db.unit_of_work() as uow:
        rows = await uow.session.execute(
            text("select id, actor, action, outcome from access_audit where id > :i order by id"),
            {"i": after_id},
        )
        return [dict(r._mapping) for r in rows]


async def last_audit_id(world: World, service: str) -> int:
    async with world.runtimes[service].db.unit_of_work() as uow:
        return (
            await uow.session.execute(text("select coalesce(max(id), 0) from access_audit"))
        ).scalar_one()


def assert_problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith(f"/{slug}")


# ------------------------------------------------------------------------- rate limits


async def test_a_case_token_flooding_intake_gets_429_with_retry_after_while_others_are_served(
    world: World,
) -> None:
    app = edge_app(world, "intake", per_client="20/minute")
    main, other = world.main, world.other_patient
    async with caller(app, VICTIM) as api:
        statuses = [
            (await api.get(f"/v1/cases/{main.case_id}", headers=main.bearer)).status_code
            for _ in range(25)
        ]
        assert statuses == [200] * 20 + [429] * 5
        refused = await api.get(f"/v1/cases/{main.case_id}", headers=main.bearer)
        assert_problem(refused, 429, "too-many-requests")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another patient's case, from the same address, has requests of its own.
        other_case = await api.get(f"/v1/cases/{other.case_id}", headers=other.bearer)
        assert other_case.status_code == 200
        assert (await api.get("/health")).status_code == 200


async def test_an_anonymous_flood_is_limited_per_address(world: World) -> None:
    app = edge_app(world, "records", per_ip="15/minute")
    path = f"/v1/referrals/{world.main.referral_id}/documents"
    async with caller(app, ATTACKER) as attacker, caller(app, BYSTANDER) as bystander:
        statuses = [(await attacker.get(path)).status_code for _ in range(20)]
        assert statuses == [401] * 15 + [429] * 5
        assert "retry-after" in (await attacker.get(path)).headers
        # Another address is still answered, and a center with its key is still served.
        assert (await bystander.get(path)).status_code == 401
        served = await bystander.get(path, headers={"X-Api-Key": world.keys.center})
        assert served.status_code == 200, served.text


# ----------------------------------------------------------------------------- lockout


@pytest.mark.parametrize(
    ("service", "genuine", "path"),
    [
        ("intake", "front_end", "/v1/cases/{case}/access-token"),
        ("records", "center", "/v1/referrals/{referral}/documents"),
        ("partners", "center", "/v1/partner/referrals"),
    ],
)
async def test_repeated_bad_keys_lock_the_attacker_out_but_the_right_key_still_works(
    world: World, service: str, genuine: str, path: str
) -> None:
    app = edge_app(
        world,
        service,
        failed_authentications_per_ip="8/minute",
        failed_authentications_per_credential="5/minute",
    )
    key = getattr(world.keys, genuine)
    url = path.format(case=world.main.case_id, referral=world.main.referral_id)
    method = "POST" if "access-token" in path else "GET"
    before = await last_audit_id(world, service)
    async with caller(app, ATTACKER) as attacker, caller(app, VICTIM) as victim:
        # The victim's key id with secrets of the attacker's own.
        statuses = [
            (
                await attacker.request(method, url, headers={"X-Api-Key": forge_api_key(key)})
            ).status_code
            for _ in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        locked = await attacker.request(method, url, headers={"X-Api-Key": key})
        assert_problem(locked, 429, "too-many-failed-authentications")
        assert int(locked.headers["retry-after"]) >= 1
        # Malformed keys from the attacker's address: failures of the address itself.
        for _ in range(3):
            await attacker.request(method, url, headers={"X-Api-Key": "pfe_not-a-key"})
        anything = await attacker.request(method, url, headers={"X-Api-Key": "pfe_not-a-key"})
        assert_problem(anything, 429, "too-many-failed-authentications")
        # The rightful owner, from its own address, is not locked out.
        served = await victim.request(method, url, headers={"X-Api-Key": key})
        assert served.status_code == 200, served.text
    # Nothing was written per failed attempt.
    assert [
        r for r in await audit_rows_after(world, service, before) if r["outcome"] == "denied"
    ] == []


# ------------------------------------------------------------------- audit in summary


async def test_a_flood_of_500_bad_credentials_adds_a_bounded_number_of_audit_rows(
    world: World,
) -> None:
    app = edge_app(world, "partners")
    before = await last_audit_id(world, "partners")
    forged = forge_api_key(world.keys.center)
    async with app.router.lifespan_context(app), caller(app, ATTACKER) as attacker:
        for i in range(500):
            headers = [
                {"X-Api-Key": forged},
                {"X-Api-Key": "ccr_malformed"},
                {"Authorization": "Bearer not.a.token"},
                {"X-Api-Key": forge_api_key(world.keys.ops)},
            ][i % 4]
            url = (
                f"/v1/cases/{world.main.case_id}/routing"
                if "Authorization" in headers
                else "/v1/partner/referrals"
            )
            r = await attacker.get(url, headers=headers)
            assert r.status_code == 401, r.text
        # Nothing yet: the window is not over.
        assert await audit_rows_after(world, "partners", before) == []
    # The app's shutdown writes what it counted: one row per credential and address.
    rows = await audit_rows_after(world, "partners", before)
    assert 1 <= len(rows) <= 5, rows
    assert {r["outcome"] for r in rows} == {"denied"}
    counts = {r["actor"]: int(r["action"].split(" x")[1].split()[0]) for r in rows}
    assert sum(counts.values()) == 500
    assert counts[f"key:{forged.split('_')[1]}"] == 125
    assert all(r["action"].startswith("failed_authentication x") for r in rows)
    assert all(r["action"].endswith(f"from {ATTACKER}") for r in rows)


async def test_denied_calls_of_authenticated_callers_are_still_audited_one_by_one(
    world: World,
) -> None:
    app = edge_app(world, "records")
    before = await last_audit_id(world, "records")
    other = world.other_patient
    async with caller(app, VICTIM) as api:
        for _ in range(3):
            r = await api.get(f"/v1/cases/{world.main.case_id}/documents", headers=other.bearer)
            assert r.status_code == 404
    denied = [
        r for r in await audit_rows_after(world, "records", before) if r["outcome"] == "denied"
    ]
    assert len(denied) == 3


# ---------------------------------------------------------------------- body limits


async def test_an_oversized_json_body_gets_413_and_changes_nothing(world: World) -> None:
    app = edge_app(world, "intake")
    body = Patient.random().case_body()
    body["questions"] = ["x" * 1000] * 1500  # 1.5 MB of questions
    async with world.runtimes["intake"].db.unit_of_work() as uow:
        cases_before = (await uow.session.execute(text("select count(*) from cases"))).scalar()
    async with caller(app, VICTIM) as api:
        r = await api.post("/v1/cases", json=body, headers={"X-Api-Key": world.keys.front_end})
        assert_problem(r, 413, "content-too-large")

        async def chunked() -> Any:
            payload = httpx.Request("POST", "http://x", json=body).content
            for start in range(0, len(payload), 64 * 1024):
                yield payload[start : start + 64 * 1024]

        streamed = await api.post(
            "/v1/cases",
            content=chunked(),
            headers={"X-Api-Key": world.keys.front_end, "content-type": "application/json"},
        )
        assert_problem(streamed, 413, "content-too-large")
    async with world.runtimes["intake"].db.unit_of_work() as uow:
        cases_after = (await uow.session.execute(text("select count(*) from cases"))).scalar()
    assert cases_after == cases_before


def test_the_upload_routes_exempt_from_the_json_limit_are_records_real_uploads(
    world: World,
) -> None:
    app = edge_app(world, "records")
    routes = {f"{method} {path}" for method, path in app_routes(app)}
    assert set(STREAMED_UPLOADS) <= routes
    edge = app.state.edge
    assert edge.streams_body("POST", f"/v1/cases/{world.main.case_id}/documents")
    assert edge.streams_body("POST", f"/v1/referrals/{world.main.referral_id}/opinion")
    assert not edge.streams_body("POST", f"/v1/cases/{world.main.case_id}/documents/x/link")


# ------------------------------------------------------ slowloris on a real uvicorn


@contextlib.asynccontextmanager
async def intake_api_process(world: World, env: dict[str, str], log: Path) -> AsyncIterator[int]:
    """`referrals-intake api` as its CLI starts it (uvicorn), on a free loopback port."""
    port = free_port()
    intake = world.runtimes["intake"].settings
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "referrals_intake.cli", "api", "--port", str(port)),
            env={
                **os.environ,
                "REFERRALS_MIGRATE_ON_START": "false",
                "REFERRALS_INTAKE_POSTGRES__DSN": intake.postgres.dsn.get_secret_value(),
                "REFERRALS_TELEMETRY__LOG_LEVEL": "WARNING",
                "OTEL_TRACES_EXPORTER": "none",
                **env,
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/health", timeout=2)).status_code == 200:
                            break
                    if process.returncode is not None or time.monotonic() > deadline:
                        output = await asyncio.to_thread(log.read_text)
                        raise AssertionError(f"intake's API did not start: {output}")
                    await asyncio.sleep(0.2)
            yield port
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@dataclasses.dataclass
class Trickled:
    held: float
    """Seconds the server kept the connection open."""
    answer: bytes
    """What the server sent before closing."""
    reset: bool
    """The server reset the connection (closing with request bytes unread, the client may get
    the reset instead of the answer)."""


async def trickle(port: int, head: bytes, drip: bytes, every: float, give_up: float) -> Trickled:
    """Send `head`, then one byte of `drip` every `every` seconds until the server closes the
    connection (or `give_up` seconds pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer, reset = b"", False
    try:
        writer.write(head)
        await writer.drain()
        for byte in drip * 1000:
            if time.monotonic() - started > give_up:
                break
            with contextlib.suppress(TimeoutError):
                answer += await asyncio.wait_for(reader.read(65536), every)
            if reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
    except OSError:  # reset, or a broken pipe: the server is gone
        reset = True
    finally:
        held = time.monotonic() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return Trickled(held, answer, reset)


async def test_a_real_api_process_drops_slowloris_and_trickling_bodies(
    world: World, tmp_path: Path
) -> None:
    env = {
        # The header deadline is the default (10 s); a body is judged after 2 s here.
        "REFERRALS_HTTP__BODY_GRACE_SECONDS": "2",
        "REFERRALS_HTTP__BODY_MIN_BYTES_PER_SECOND": "1024",
    }
    async with intake_api_process(world, env, tmp_path / "intake-api.log") as port:
        # Headers, a byte every half second: held open as long as it trickled, before.
        slowloris = await trickle(
            port, b"GET /health HTTP/1.1\r\nHost: intake\r\n", b"X-Slow: y", 0.5, give_up=30
        )
        assert 8 < slowloris.held < 15, f"a slowloris connection was held {slowloris.held:.0f} s"
        assert slowloris.answer.startswith(b"HTTP/1.1 408"), slowloris
        assert b"request-timeout" in slowloris.answer

        # A body of 100 kB, a byte every half second.
        head = (
            b"POST /v1/cases HTTP/1.1\r\nHost: intake\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        body = await trickle(port, head, b'{"a": "' + b"y" * 100, 0.5, give_up=30)
        assert body.held < 8, f"a trickling body was held {body.held:.0f} s"
        assert body.reset or body.answer.startswith(b"HTTP/1.1 408"), body

        # The server still serves.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/health")).status_code == 200
