"""SMS and webhooks over real HTTP to servers on loopback."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest

from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationError as E
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.outbound import OutboundPolicy
from referrals_notifications.channels.retry import RetryPolicy, deliver_with_retry
from referrals_notifications.channels.sms import SmsChannel, TwilioSettings, TwilioSmsProvider
from referrals_notifications.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookTarget,
    verify_signature,
)
from referrals_notifications.rendering import Renderer, build_webhook_message

from ...unit.notifications.samples import CENTER_MESSAGE, sample_context
from .conftest import Answer, HttpRecorder, ReceivedRequest

pytestmark = pytest.mark.integration

QUICK = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "sms-auth-token"
PHONE = "+380671234567"
SECRET = "whsec_front-end-shared-secret"


def twilio(server: HttpRecorder) -> TwilioSmsProvider:
    settings = TwilioSettings(
        base_url=server.url,
        account_sid=SID,
        auth_token=TOKEN,
        from_number="+4915112345678",
        timeout=5,
    )
    return TwilioSmsProvider(settings, policy=allowing(server))


def created(sid: str) -> Answer:
    body = json.dumps({"sid": sid, "status": "queued"}).encode()
    return 201, {"Content-Type": "application/json"}, body


async def test_the_sms_provider_receives_the_form_and_credentials(
    http_server: HttpRecorder,
) -> None:
    http_server.answers.append(created("SM0001"))
    provider = twilio(http_server)
    sms = Renderer().render(T.INFO_REQUESTED, sample_context(T.INFO_REQUESTED, "uk"), C.SMS)
    try:
        receipt = await SmsChannel(provider).send(PHONE, sms)
    finally:
        await provider.aclose()

    assert receipt.provider_id == "SM0001"
    (request,) = http_server.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.body.decode())
    assert form == {"To": [PHONE], "From": ["+4915112345678"], "Body": [sms.text]}
    assert CENTER_MESSAGE not in request.body.decode()
    scheme, credentials = request.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{SID}:{TOKEN}"


async def test_an_sms_provider_outage_is_retried_and_sends_once(http_server: HttpRecorder) -> None:
    busy: Answer = (503, {"Content-Type": "application/json"}, b'{"code": 20503}')
    http_server.answers.extend([busy, busy, created("SM0002")])
    provider = twilio(http_server)
    channel = SmsChannel(provider)
    sms = Renderer().render(T.CASE_READY, sample_context(T.CASE_READY, "en"), C.SMS)
    try:
        outcome = await deliver_with_retry(lambda: channel.send(PHONE, sms), QUICK)
    finally:
        await provider.aclose()

    assert outcome.delivered and outcome.attempts == 3
    assert outcome.result is not None and outcome.result.provider_id == "SM0002"
    assert len(http_server.requests) == 3


async def test_an_invalid_number_is_not_retried(http_server: HttpRecorder) -> None:
    invalid = json.dumps({"code": 21211, "message": "Invalid 'To' Phone Number"}).encode()
    http_server.default = (400, {"Content-Type": "application/json"}, invalid)
    provider = twilio(http_server)
    channel = SmsChannel(provider)
    sms = Renderer().render(T.CASE_READY, sample_context(T.CASE_READY, "en"), C.SMS)
    try:
        outcome = await deliver_with_retry(lambda: channel.send("+15005550001", sms), QUICK)
    finally:
        await provider.aclose()

    assert outcome.attempts == 1 and len(http_server.requests) == 1
    assert outcome.error is not None and outcome.error.code is E.INVALID_RECIPIENT


def receiver(secret: str, verdicts: list[bool]) -> object:
    """A front end's endpoint: 204 for a valid signature, 401 otherwise."""

    def respond(request: ReceivedRequest) -> Answer:
        valid = verify_signature(
            secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.body,
            request.headers.get(SIGNATURE_HEADER),
            tolerance=60,
            now=time.time(),
        )
        verdicts.append(valid)
        return (204, {}, b"") if valid else (401, {}, b"")

    return respond


def allowing(server: HttpRecorder) -> OutboundPolicy:
    """The receiver on loopback, reachable only as an explicit allow-list entry."""
    url = httpx.URL(server.url)
    return OutboundPolicy(require_https=False, allowed=[f"{url.host}:{url.port}"])


def webhook(trigger: T = T.REFERRAL_ACCEPTED, notification_id: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
    return build_webhook_message(
        trigger,
        sample_context(trigger, "uk"),
        case_id=uuid.UUID("3f0f6c7d-8f53-4c1e-9c1a-3f0f6c7d2e11"),
        notification_id=notification_id or uuid.uuid4(),
        occurred_at=datetime(2026, 4, 15, 11, 0, tzinfo=UTC),
    )


async def test_the_front_end_verifies_the_signature(http_server: HttpRecorder) -> None:
    verdicts: list[bool] = []
    http_server.responder = receiver(SECRET, verdicts)  # type: ignore[assignment]
    target = WebhookTarget(url=f"{http_server.url}/hooks/referrals", secret=SECRET)
    channel = WebhookChannel(policy=allowing(http_server))
    message = webhook()
    try:
        receipt = await channel.send(target, message)
    finally:
        await channel.aclose()

    assert receipt.channel is C.WEBHOOK
    assert verdicts == [True]
    (request,) = http_server.requests
    assert request.path == "/hooks/referrals"
    assert request.body == message.text.encode()
    body = json.loads(request.body)
    assert body["trigger"] == "referral_accepted"
    assert body["case_status"] == "accepted"


async def test_a_wrong_secret_is_refused_by_the_front_end_and_not_retried(
    http_server: HttpRecorder,
) -> None:
    verdicts: list[bool] = []
    http_server.responder = receiver(SECRET, verdicts)  # type: ignore[assignment]
    target = WebhookTarget(url=f"{http_server.url}/hook", secret="not-the-shared-secret")
    channel = WebhookChannel(policy=allowing(http_server))
    try:
        outcome = await deliver_with_retry(lambda: channel.send(target, webhook()), QUICK)
    finally:
        await channel.aclose()

    assert verdicts == [False]
    assert outcome.attempts == 1
    assert outcome.error is not None and outcome.error.code is E.REJECTED


async def test_a_failing_front_end_gets_the_same_notification_again(
    http_server: HttpRecorder,
) -> None:
    verdicts: list[bool] = []
    http_server.answers.append((500, {}, b"oops"))
    http_server.responder = receiver(SECRET, verdicts)  # type: ignore[assignment]
    target = WebhookTarget(url=f"{http_server.url}/hook", secret=SECRET)
    channel = WebhookChannel(policy=allowing(http_server))
    notification_id = uuid.uuid4()
    message = webhook(T.TRANSLATION_REQUIRED, notification_id)
    try:
        outcome = await deliver_with_retry(lambda: channel.send(target, message), QUICK)
    finally:
        await channel.aclose()

    assert outcome.delivered and outcome.attempts == 2
    assert verdicts == [True]
    first, second = (json.loads(request.body) for request in http_server.requests)
    assert first == second and first["notification_id"] == str(notification_id)
