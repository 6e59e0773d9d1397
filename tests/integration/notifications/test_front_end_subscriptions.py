"""A front end's webhook subscription end to end over real Kafka and PostgreSQL: subscribed
through intake's API, applied by notifications, a test ping and a case's update delivered
signed to an endpoint on loopback (retried after its 503 with backoff), every attempt back in
intake's delivery log, and nothing sent once the front end unsubscribed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from devstack.process import free_port
from referrals_common.auth.api_keys import parse_api_key
from referrals_common.contracts import (
    CaseContactShared,
    CaseSubmitted,
    CaseWithdrawn,
    new_event,
    topics,
)
from referrals_common.crypto import SealedBox
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings
from referrals_common.webhooks import verify
from referrals_intake import consumers as intake_consumers
from referrals_intake.main import MIGRATIONS as INTAKE_MIGRATIONS
from referrals_intake.main import build_runtime as build_intake
from referrals_intake.main import create_app as intake_app
from referrals_notifications import consumers as notification_consumers
from referrals_notifications.bootstrap import build_runtime, build_sender
from referrals_notifications.config import NotificationsSettings
from referrals_notifications.main import MIGRATIONS as NOTIFICATIONS_MIGRATIONS
from referrals_notifications.main import run_sender_loop
from referrals_notifications.models import FrontEndWebhook
from tests.integration.intake.conftest import (
    NOTIFICATIONS_PRIVATE,
    NOTIFICATIONS_PUBLIC,
    intake_settings,
    new_client_key,
)
from tests.running import consuming, relaying

from ..conftest import publish

pytestmark = pytest.mark.integration


class Endpoint:
    """A front end's webhook endpoint on loopback: answers the `statuses` given in turn
    (then 204), keeps every request."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.address = ""
        """host:port, once served."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        status = self.statuses.pop(0) if self.statuses else 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def wait_for(predicate, timeout: float = 60.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            found = await predicate()
            if found:
                return found
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def platform(new_database, bootstrap: str, endpoint: Endpoint) -> AsyncIterator[dict]:
    """Intake (API, consumer, relay) and notifications (consumer, sender, relay), with the
    endpoint served on a loopback port both may call (an explicit allow-list entry)."""
    port = free_port()
    endpoint.address = f"127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(endpoint, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    allowed = [f"127.0.0.1:{port}"]
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)

    intake_dsn = await new_database("intake")
    await upgrade_async(intake_dsn, INTAKE_MIGRATIONS)
    intake_rt = build_intake(
        intake_settings(intake_dsn, bootstrap).model_copy(
            update={"outbound_allowed_targets": allowed}
        )
    )
    notifications_dsn = await new_database("notifications")
    await upgrade_async(notifications_dsn, NOTIFICATIONS_MIGRATIONS)
    settings = NotificationsSettings(
        postgres=PostgresSettings(dsn=notifications_dsn),
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        contact_private_key=NOTIFICATIONS_PRIVATE,
        outbound_allowed_targets=allowed,
        quick_attempts=2,
        quick_backoff_seconds=0.05,
        round_backoff_seconds=0.5,
        sender_interval_seconds=0.1,
    )
    rt = build_runtime(settings)
    sender = build_sender(settings, rt.db)
    stop = asyncio.Event()
    app = intake_app(runtime=intake_rt)
    app.state.runtime = intake_rt
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            relaying(intake_rt.settings.postgres.asyncpg_dsn(), bootstrap)
        )
        await stack.enter_async_context(relaying(settings.postgres.asyncpg_dsn(), bootstrap))
        await stack.enter_async_context(
            consuming(
                bootstrap,
                lambda dead: notification_consumers.build_consumer(rt.notifications, rt.db, dead),
                *notification_consumers.SUBSCRIBED_TOPICS,
            )
        )
        await stack.enter_async_context(
            consuming(
                bootstrap,
                lambda dead: intake_consumers.build_consumer(intake_rt.intake, intake_rt.db, dead),
                *intake_consumers.SUBSCRIBED_TOPICS,
            )
        )
        sending = asyncio.create_task(run_sender_loop(sender, 0.1, stop))
        api = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
        )
        try:
            yield {"api": api, "intake": intake_rt, "notifications": rt}
        finally:
            stop.set()
            await sending
            await rt.db.dispose()
            await intake_rt.db.dispose()
            server.should_exit = True
            await serving


async def test_a_ping_is_delivered_signed_after_a_retry_and_logged(new_database, local_stack):
    endpoint = Endpoint(503)
    async with platform(new_database, local_stack.kafka_bootstrap, endpoint) as world:
        api = world["api"]
        key = await new_client_key(world["intake"])
        headers = {"X-Api-Key": key}
        hook = f"http://{endpoint.address}/hooks"
        subscribed = await api.put("/v1/front-end/webhook", json={"url": hook}, headers=headers)
        assert subscribed.status_code == 201, subscribed.text
        secret = subscribed.json()["signing_secret"]

        ping = await api.post("/v1/front-end/webhook/ping", headers=headers)
        assert ping.status_code == 202

        async def two_calls() -> bool:
            return len(endpoint.calls) >= 2

        await wait_for(two_calls)
        sent_headers, body = endpoint.calls[1]
        verify(
            secret,
            body,
            sent_headers.get("x-referrals-timestamp"),
            sent_headers.get("x-referrals-signature"),
        )
        assert json.loads(body) == {
            "type": "referrals.webhook.ping.v1",
            "ping_id": ping.json()["ping_id"],
            "front_end": parse_api_key(key).key_id,
            "occurred_at": json.loads(body)["occurred_at"],
        }

        async def logged() -> list[dict] | None:
            found = await api.get("/v1/front-end/webhook/deliveries", headers=headers)
            return found.json() if len(found.json()) >= 2 else None

        log = await wait_for(logged)
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in log] == [
        (2, 204, "delivered"),
        (1, 503, "retrying"),
    ]
    assert {a["delivery_id"] for a in log} == {ping.json()["ping_id"]}
    assert log[1]["next_attempt_at"] is not None and log[1]["error_code"] == "webhook_http_error"
    assert all(a["event"] == "ping" and a["case_id"] is None for a in log)


async def test_a_case_update_goes_to_the_subscribed_endpoint_until_it_unsubscribes(
    new_database, local_stack
):
    endpoint = Endpoint()
    bootstrap = local_stack.kafka_bootstrap
    async with platform(new_database, bootstrap, endpoint) as world:
        api = world["api"]
        key = await new_client_key(world["intake"])
        front_end = parse_api_key(key).key_id
        headers = {"X-Api-Key": key}
        hook = f"http://{endpoint.address}/hooks"
        secret = (
            await api.put("/v1/front-end/webhook", json={"url": hook}, headers=headers)
        ).json()["signing_secret"]
        # Notifications has the subscription once a ping arrives.
        await api.post("/v1/front-end/webhook/ping", headers=headers)

        async def pinged() -> bool:
            return bool(endpoint.calls)

        await wait_for(pinged)

        case_id = uuid.uuid4()
        contact = SealedBox(public_key_b64=NOTIFICATIONS_PUBLIC).seal_json(
            {"email": None, "phone": None, "preferred_channel": "email"}, bound_to=str(case_id)
        )
        await publish(
            bootstrap,
            new_event(
                CaseContactShared(
                    case_id=case_id, sealed_contact=contact, locale="uk", front_end=front_end
                )
            ),
            new_event(
                CaseSubmitted(
                    case_id=case_id,
                    clinical={
                        "icd10": "C50.9",
                        "age_group": "adult",
                        "reasons": ["choose_treatment"],
                    },
                    destination={"preference": "countries", "countries": ["DE"]},
                    locale="uk",
                    processing_consent_version="2026-01",
                    cross_border_consent_version="2026-01",
                    submitted_at=datetime.now(UTC),
                )
            ),
        )

        async def delivered() -> bool:
            return any(b'"case_submitted"' in body for _, body in endpoint.calls)

        await wait_for(delivered)
        sent_headers, body = next(c for c in endpoint.calls if b'"case_submitted"' in c[1])
        assert sent_headers["x-referrals-event"] == "case_submitted"
        verify(
            secret,
            body,
            sent_headers.get("x-referrals-timestamp"),
            sent_headers.get("x-referrals-signature"),
        )
        assert json.loads(body)["case_id"] == str(case_id)

        async def logged() -> list[dict] | None:
            found = (await api.get("/v1/front-end/webhook/deliveries", headers=headers)).json()
            return found if any(a["event"] == "case_submitted" for a in found) else None

        attempts = await wait_for(logged)
        [attempt] = [a for a in attempts if a["event"] != "ping"]
        assert (attempt["case_id"], attempt["event"], attempt["status_code"]) == (
            str(case_id),
            "case_submitted",
            204,
        )

        assert (await api.delete("/v1/front-end/webhook", headers=headers)).status_code == 204

        async def removed() -> bool:
            async with world["notifications"].db.unit_of_work() as uow:
                row = await uow.session.get(FrontEndWebhook, front_end)
                return row is not None and row.url is None

        await wait_for(removed)
        calls = len(endpoint.calls)
        await publish(bootstrap, new_event(CaseWithdrawn(case_id=case_id, reason=None)))
        await asyncio.sleep(5)
        assert len(endpoint.calls) == calls, "a webhook went out after the front end unsubscribed"
