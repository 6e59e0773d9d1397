"""A front end's webhook subscription through intake's API (real PostgreSQL): subscribe with the
secret shown once and sealed for notifications, move, re-key, unsubscribe, ping, read the
delivery log; refused addresses, Idempotency-Key, and every "no" to another front end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy import text

from referrals_common.auth.api_keys import parse_api_key
from referrals_common.contracts import front_end_key
from referrals_common.contracts.notifications import WebhookAttempted
from referrals_common.crypto import SealedBox
from referrals_common.outbound import OutboundPolicy
from referrals_intake import webhooks
from tests.public_dns import with_example_dns

from .conftest import NOTIFICATIONS_PRIVATE, new_client_key, open_case, unique_key

pytestmark = pytest.mark.integration

HOOK = "https://hooks.kyiv-clinic.example.org/referrals"


@pytest.fixture(autouse=True)
def example_dns(runtime) -> None:
    runtime.outbound = with_example_dns(runtime.outbound)


async def subscription_events(runtime, client_key: str) -> list[dict]:
    """The outbox's events keyed by the front end's stream key, oldest first."""
    key = str(front_end_key(parse_api_key(client_key).key_id))
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            text("select payload from outbox where aggregate_id = :key order by seq"), {"key": key}
        )
        return [row.payload for row in rows]


def opened(event: dict, front_end: str) -> str:
    box = SealedBox(private_key_b64=NOTIFICATIONS_PRIVATE)
    return box.open_json(event["data"]["sealed_secret"], bound_to=front_end)["secret"]


async def test_subscribing_shows_the_secret_once_and_seals_it_for_notifications(
    api, api_key, runtime
):
    headers = {"X-Api-Key": api_key, "Idempotency-Key": unique_key()}
    front_end = parse_api_key(api_key).key_id

    created = await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)
    shown = await api.get("/v1/front-end/webhook", headers={"X-Api-Key": api_key})

    assert created.status_code == 201, created.text
    secret = created.json()["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert shown.status_code == 200
    assert shown.json()["url"] == HOOK and shown.json()["signing_secret"] is None
    [event] = await subscription_events(runtime, api_key)
    assert event["type"] == "referrals.webhook.subscription_changed.v1"
    assert event["data"]["front_end"] == front_end and event["data"]["version"] == 1
    assert secret not in str(event)  # sealed: only notifications' key opens it
    assert opened(event, front_end) == secret


async def test_moving_keeps_the_secret_and_rotating_issues_a_new_one(api, api_key, runtime):
    headers = {"X-Api-Key": api_key}
    first = (await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)).json()
    moved = await api.put("/v1/front-end/webhook", json={"url": HOOK + "/v2"}, headers=headers)
    rotated = await api.put(
        "/v1/front-end/webhook", json={"url": HOOK + "/v2", "rotate_secret": True}, headers=headers
    )

    assert moved.status_code == 200 and moved.json()["signing_secret"] is None
    assert rotated.status_code == 200
    assert rotated.json()["signing_secret"] not in (None, first["signing_secret"])
    _, move, rotate = await subscription_events(runtime, api_key)
    assert (move["data"]["version"], move["data"]["sealed_secret"]) == (2, None)
    assert move["data"]["url"] == HOOK + "/v2"
    front_end = parse_api_key(api_key).key_id
    assert opened(rotate, front_end) == rotated.json()["signing_secret"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://localhost/hook",
        "https://no-such-host.invalid/hook",
    ],
)
async def test_an_address_that_is_not_public_is_refused_and_nothing_changes(
    api, api_key, runtime, url
):
    refused = await api.put(
        "/v1/front-end/webhook", json={"url": url}, headers={"X-Api-Key": api_key}
    )

    assert refused.status_code == 422
    assert refused.json()["type"].endswith("/webhook-url-refused")
    shown = await api.get("/v1/front-end/webhook", headers={"X-Api-Key": api_key})
    assert shown.status_code == 404
    assert await subscription_events(runtime, api_key) == []


async def test_plain_http_is_refused_outside_development(api, api_key, runtime):
    runtime.outbound = with_example_dns(OutboundPolicy.for_environment("production"))

    refused = await api.put(
        "/v1/front-end/webhook",
        json={"url": "http://hooks.kyiv-clinic.example.org/referrals"},
        headers={"X-Api-Key": api_key},
    )

    assert refused.status_code == 422
    assert "https" in refused.json()["detail"].lower()


async def test_the_same_idempotency_key_replays_without_the_secret(api, api_key, runtime):
    headers = {"X-Api-Key": api_key, "Idempotency-Key": unique_key()}
    first = await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)
    again = await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)
    other = await api.put("/v1/front-end/webhook", json={"url": HOOK + "/x"}, headers=headers)

    assert first.status_code == 201
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["signing_secret"] is None and again.json()["url"] == HOOK
    assert other.status_code == 422  # the key with another request
    assert len(await subscription_events(runtime, api_key)) == 1


async def test_unsubscribing_stops_the_webhooks(api, api_key, runtime):
    headers = {"X-Api-Key": api_key}
    await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)

    gone = await api.delete("/v1/front-end/webhook", headers=headers)
    again = await api.delete("/v1/front-end/webhook", headers=headers)

    assert gone.status_code == 204 and again.status_code == 404
    assert (await api.get("/v1/front-end/webhook", headers=headers)).status_code == 404
    _, removed = await subscription_events(runtime, api_key)
    assert (removed["data"]["url"], removed["data"]["version"]) == (None, 2)
    # Subscribing again is a new subscription, with a new secret.
    back = await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)
    assert back.status_code == 201 and back.json()["signing_secret"]


async def test_a_ping_asks_notifications_for_a_test_delivery(api, api_key, runtime):
    headers = {"X-Api-Key": api_key}
    none_yet = await api.post("/v1/front-end/webhook/ping", headers=headers)
    await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers=headers)
    key = {**headers, "Idempotency-Key": unique_key()}

    ping = await api.post("/v1/front-end/webhook/ping", headers=key)
    replay = await api.post("/v1/front-end/webhook/ping", headers=key)

    assert none_yet.status_code == 404
    assert ping.status_code == 202
    assert replay.json() == ping.json() and replay.headers["idempotent-replayed"] == "true"
    events = await subscription_events(runtime, api_key)
    assert [e["type"] for e in events] == [
        "referrals.webhook.subscription_changed.v1",
        "referrals.webhook.ping_requested.v1",
    ]
    assert events[1]["data"]["ping_id"] == ping.json()["ping_id"]


async def test_the_delivery_log_is_the_front_end_s_own_newest_first(api, api_key, runtime):
    case_id, _ = await open_case(api, api_key)
    mine = parse_api_key(api_key).key_id
    other_key = await new_client_key(runtime, "Lviv clinic")
    theirs = parse_api_key(other_key).key_id
    now = datetime.now(UTC)
    delivery = uuid4()
    async with runtime.db.unit_of_work() as uow:
        for attempt, (status, outcome) in enumerate([(503, "retrying"), (204, "delivered")], 1):
            await webhooks.record_attempt(
                uow,
                WebhookAttempted(
                    case_id=case_id,
                    front_end=mine,
                    delivery_id=delivery,
                    event="case_submitted",
                    attempt=attempt,
                    attempted_at=now + timedelta(seconds=attempt),
                    status_code=status,
                    outcome=outcome,
                    error_code="webhook_http_error" if status == 503 else None,
                    next_attempt_at=now + timedelta(seconds=2) if status == 503 else None,
                ),
            )
        await webhooks.record_attempt(
            uow,
            WebhookAttempted(
                case_id=front_end_key(theirs),
                front_end=theirs,
                delivery_id=uuid4(),
                event="ping",
                attempt=1,
                attempted_at=now,
                status_code=204,
                outcome="delivered",
            ),
        )
        await uow.commit()

    log = await api.get("/v1/front-end/webhook/deliveries", headers={"X-Api-Key": api_key})
    their_log = await api.get("/v1/front-end/webhook/deliveries", headers={"X-Api-Key": other_key})

    assert log.status_code == 200
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in log.json()] == [
        (2, 204, "delivered"),
        (1, 503, "retrying"),
    ]
    assert log.json()[1]["next_attempt_at"] is not None
    assert {a["case_id"] for a in log.json()} == {case_id}
    [ping] = their_log.json()
    assert ping["event"] == "ping" and ping["case_id"] is None


async def test_another_front_end_can_neither_see_nor_change_this_subscription(
    api, api_key, runtime
):
    await api.put("/v1/front-end/webhook", json={"url": HOOK}, headers={"X-Api-Key": api_key})
    other = {"X-Api-Key": await new_client_key(runtime, "Lviv clinic")}

    seen = await api.get("/v1/front-end/webhook", headers=other)
    removed = await api.delete("/v1/front-end/webhook", headers=other)
    pinged = await api.post("/v1/front-end/webhook/ping", headers=other)

    assert (seen.status_code, removed.status_code, pinged.status_code) == (404, 404, 404)
    mine = await api.get("/v1/front-end/webhook", headers={"X-Api-Key": api_key})
    assert mine.json()["url"] == HOOK
    assert len(await subscription_events(runtime, api_key)) == 1


async def test_a_case_token_or_no_key_opens_none_of_it(api, api_key):
    _, case_headers = await open_case(api, api_key)
    for method, path in [
        ("GET", "/v1/front-end/webhook"),
        ("PUT", "/v1/front-end/webhook"),
        ("DELETE", "/v1/front-end/webhook"),
        ("POST", "/v1/front-end/webhook/ping"),
        ("GET", "/v1/front-end/webhook/deliveries"),
    ]:
        body = {"json": {"url": HOOK}} if method == "PUT" else {}
        with_token = await api.request(method, path, headers=case_headers, **body)
        anonymous = await api.request(method, path, **body)
        assert (with_token.status_code, anonymous.status_code) == (401, 401), (method, path)
