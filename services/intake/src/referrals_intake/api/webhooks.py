"""`/v1/front-end/webhook`: a front end subscribes its webhook endpoint, with its API key.

Everything here is the calling front end's own: there is no id in the paths, so no front end
can name another's subscription or log. Writes take an `Idempotency-Key`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field, HttpUrl

from referrals_common.api.idempotency import claim_or_replay, request_fingerprint
from referrals_common.api.problems import NotFound, ProblemError, problem_responses
from referrals_common.db import UnitOfWork
from referrals_common.outbound import TargetRefused
from referrals_common.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from referrals_intake import webhooks
from referrals_intake.api.deps import ClientDep, IdempotencyKey, RuntimeDep, UowDep
from referrals_intake.models import IdempotencyRecord, WebhookSubscription
from referrals_intake.repository import CaseRepository

router = APIRouter(prefix="/v1/front-end")

SIGNING = (
    f"Each delivery is a POST of JSON signed with HMAC-SHA256 over `<timestamp>.<body>` with the "
    f"signing secret: `{TIMESTAMP_HEADER}: <unix seconds>`, `{SIGNATURE_HEADER}: sha256=<hex>`. "
    f"Refuse a body whose signature does not match, or a timestamp more than "
    f"{DEFAULT_TOLERANCE_SECONDS} s away from your clock. Answer 2xx once stored; 408, 425, 429 "
    "and 5xx are tried again, any other status is a refusal."
)
RETRIES = (
    "Retries: 3 attempts a few seconds apart (exponential, with jitter), then further rounds "
    "30 s, 60 s, 120 s, 240 s later (5 rounds at most); each attempt is in the delivery log."
)


class WebhookIn(BaseModel):
    url: HttpUrl = Field(
        description="Where to POST the signed updates: https, resolving to public addresses only"
    )
    rotate_secret: bool = Field(
        False, description="Issue a new signing secret (the old one stops working)"
    )


class WebhookPublic(BaseModel):
    url: str
    created_at: datetime
    updated_at: datetime
    secret_issued_at: datetime | None
    signing_secret: str | None = Field(
        None,
        description="The signing secret: given only in the answer that issued it, never again",
    )


class PingAccepted(BaseModel):
    ping_id: UUID = Field(description="The test delivery's id, in its body and in the log")


class DeliveryAttemptPublic(BaseModel):
    delivery_id: UUID = Field(description="The notification id (the body's), or the ping id")
    case_id: UUID | None = Field(description="The case the update was about; null: a ping")
    event: str = Field(description="The notification's trigger, or `ping`")
    attempt: int
    attempted_at: AwareDatetime
    status_code: int | None = Field(description="What your endpoint answered; null: no answer")
    outcome: str = Field(description="delivered, retrying or failed")
    error_code: str | None
    next_attempt_at: AwareDatetime | None = Field(description="When it is tried again")


def _public(row: WebhookSubscription, secret: str | None = None) -> WebhookPublic:
    assert row.url is not None
    return WebhookPublic(
        url=row.url,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret_issued_at=row.secret_issued_at,
        signing_secret=secret,
    )


async def _claim(
    uow: UnitOfWork, client_id: str, operation: str, key: str | None, *parts: object
) -> IdempotencyRecord | None:
    """The first request's record with this key (a replay), or None after claiming it."""
    if key is None:
        return None
    return await claim_or_replay(
        uow.session,
        IdempotencyRecord(
            client_id=client_id,
            operation=operation,
            key=key,
            request_hash=request_fingerprint(operation, *parts),
            status_code=200,
            response={},
        ),
    )


def _no_subscription() -> NotFound:
    return NotFound("This front end has no webhook subscribed: PUT /v1/front-end/webhook first.")


@router.put(
    "/webhook",
    response_model=WebhookPublic,
    status_code=status.HTTP_200_OK,
    responses={
        201: {"model": WebhookPublic, "description": "Subscribed, with the signing secret"},
        **problem_responses(401, 422, 503),
    },
    summary="Subscribe, move or re-key the front end's webhook endpoint",
    description=(
        "Subscribes the endpoint (201, with the signing secret: the only time it is shown), or "
        "moves the subscription to a new address (200, the secret unchanged), or with "
        "`rotate_secret` issues a new secret. The address must be https (plain http in "
        "development only) and resolve to public addresses only; it is checked again before "
        f"every delivery. {SIGNING} {RETRIES} The same Idempotency-Key again answers the "
        "subscription as it is, without the secret."
    ),
)
async def put_webhook(
    body: WebhookIn,
    client: ClientDep,
    runtime: RuntimeDep,
    uow: UowDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> WebhookPublic:
    box = runtime.intake.contact_box
    if box is None:
        raise ProblemError(
            "Webhooks cannot be subscribed: this intake has no key to hand secrets to "
            "notifications.",
            status=503,
        )
    url = str(body.url)
    try:
        await runtime.outbound.resolve(url)
    except TargetRefused as refused:
        raise ProblemError(
            f"This address cannot receive webhooks: {refused.reason}",
            status=422,
            title="Webhook address refused",
            type_slug="webhook-url-refused",
        ) from None
    if await _claim(uow, client.key_id, "put_webhook", idempotency_key, url, body.rotate_secret):
        response.headers["Idempotent-Replayed"] = "true"
        return _public(await webhooks.current(uow, client.key_id))
    done = await webhooks.subscribe(uow, box, client.key_id, url, rotate_secret=body.rotate_secret)
    CaseRepository(uow.session).audit(client.actor, "webhook_subscribe", None)
    await uow.commit()
    if done.created:
        response.status_code = status.HTTP_201_CREATED
    return _public(done.subscription, done.secret)


@router.get(
    "/webhook",
    response_model=WebhookPublic,
    responses=problem_responses(401, 404),
    summary="The front end's webhook subscription",
    description="Where the updates go, and since when; never the secret.",
)
async def get_webhook(client: ClientDep, uow: UowDep) -> WebhookPublic:
    try:
        return _public(await webhooks.current(uow, client.key_id))
    except webhooks.NoSubscription:
        raise _no_subscription() from None


@router.delete(
    "/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404),
    summary="Unsubscribe the front end's webhook endpoint",
    description="No update is sent any more (one already being sent may still arrive).",
)
async def delete_webhook(
    client: ClientDep, uow: UowDep, idempotency_key: IdempotencyKey = None
) -> Response:
    if await _claim(uow, client.key_id, "delete_webhook", idempotency_key):
        return Response(status_code=204, headers={"Idempotent-Replayed": "true"})
    try:
        await webhooks.unsubscribe(uow, client.key_id)
    except webhooks.NoSubscription:
        raise _no_subscription() from None
    CaseRepository(uow.session).audit(client.actor, "webhook_unsubscribe", None)
    await uow.commit()
    return Response(status_code=204)


@router.post(
    "/webhook/ping",
    response_model=PingAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 404),
    summary="Send a signed test delivery to the endpoint",
    description=(
        'Notifications POSTs `{"type": "referrals.webhook.ping.v1", "ping_id": …}`, '
        "signed like every update, within seconds; its attempts appear in the delivery log."
    ),
)
async def ping_webhook(
    client: ClientDep, uow: UowDep, response: Response, idempotency_key: IdempotencyKey = None
) -> PingAccepted:
    first = await _claim(uow, client.key_id, "ping_webhook", idempotency_key)
    if first is not None:
        response.headers["Idempotent-Replayed"] = "true"
        return PingAccepted(ping_id=UUID(first.response["ping_id"]))
    try:
        ping_id = await webhooks.request_ping(uow, client.key_id)
    except webhooks.NoSubscription:
        raise _no_subscription() from None
    if idempotency_key is not None:
        record = await uow.session.get(
            IdempotencyRecord, (client.key_id, "ping_webhook", idempotency_key)
        )
        assert record is not None
        record.response = {"ping_id": str(ping_id)}
    CaseRepository(uow.session).audit(client.actor, "webhook_ping", None)
    await uow.commit()
    return PingAccepted(ping_id=ping_id)


@router.get(
    "/webhook/deliveries",
    response_model=list[DeliveryAttemptPublic],
    responses=problem_responses(401, 422),
    summary="The delivery log: every attempt, newest first",
    description=(
        "Each attempt to deliver an update (or a ping) to this front end's endpoint: when, the "
        "status code it answered, the outcome and when the next attempt is due. Page back with "
        "`before` (the oldest `attempted_at` of the previous page)."
    ),
)
async def webhook_deliveries(
    client: ClientDep,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many attempts")] = 50,
    before: Annotated[
        AwareDatetime | None, Query(description="Only attempts made before this time")
    ] = None,
) -> list[DeliveryAttemptPublic]:
    rows = await webhooks.delivery_log(uow, client.key_id, limit=limit, before=before)
    return [DeliveryAttemptPublic.model_validate(r, from_attributes=True) for r in rows]
