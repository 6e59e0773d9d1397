"""The shared Twilio-compatible SMS provider (referrals_common.sms) without a network: the form
it posts, the credentials, where it connects (the outbound guard) and how refusals are told
apart (httpx's MockTransport answers in memory; a fake resolver stands in for DNS)."""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError

from referrals_common.outbound import IPAddress, OutboundPolicy
from referrals_common.sms import (
    SmsError,
    SmsFailure,
    TwilioSettings,
    TwilioSmsProvider,
    is_e164,
)

pytestmark = pytest.mark.unit

PUBLIC = "93.184.215.14"
SID = "AC0123456789abcdef0123456789abcdef"
TWILIO = TwilioSettings(
    base_url="https://sms.example.org",
    account_sid=SID,
    auth_token="tok-secret",
    from_number="+4915112345678",
)
TO = "+380671234567"


def dns(answers: dict[str, str]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in answers:
            raise OSError("Name or service not known")
        return [ipaddress.ip_address(answers[host])]

    return resolve


PUBLIC_DNS = OutboundPolicy(require_https=True, resolve=dns({"sms.example.org": PUBLIC}))


def provider_answering(
    status: int,
    body: dict[str, object],
    seen: list[httpx.Request],
    *,
    settings: TwilioSettings = TWILIO,
    policy: OutboundPolicy = PUBLIC_DNS,
) -> TwilioSmsProvider:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return TwilioSmsProvider(settings, client=client, policy=policy)


async def test_a_message_is_a_basic_auth_form_post_to_the_checked_address() -> None:
    seen: list[httpx.Request] = []
    provider = provider_answering(201, {"sid": "SM123", "status": "queued"}, seen)

    assert await provider.send_sms(TO, "Код: 123456") == "SM123"

    (request,) = seen
    assert request.method == "POST"
    assert request.url.host == PUBLIC  # connected to the address that was checked
    assert request.headers["Host"] == "sms.example.org"
    assert request.extensions["sni_hostname"] == "sms.example.org"
    assert request.url.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode())
    assert form == {"To": [TO], "From": ["+4915112345678"], "Body": ["Код: 123456"]}
    scheme, credentials = request.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{SID}:tok-secret"


async def test_a_messaging_service_sends_instead_of_a_number() -> None:
    seen: list[httpx.Request] = []
    settings = TWILIO.model_copy(update={"from_number": None, "messaging_service_sid": "MG42"})
    provider = provider_answering(201, {"sid": "SM1"}, seen, settings=settings)
    await provider.send_sms(TO, "hi")
    form = parse_qs(seen[0].content.decode())
    assert form["MessagingServiceSid"] == ["MG42"] and "From" not in form


@pytest.mark.parametrize(
    ("status", "body", "transient", "failure"),
    [
        (400, {"code": 21211, "message": "Invalid 'To' number"}, False, "invalid_recipient"),
        (400, {"code": 21614, "message": "not a mobile number"}, False, "invalid_recipient"),
        (400, {"code": 21602, "message": "Message body is required"}, False, "rejected"),
        (401, {"code": 20003, "message": "Authenticate"}, False, "rejected"),
        (302, {}, False, "rejected"),  # a redirect is never followed
        (408, {}, True, "timeout"),
        (429, {"code": 20429, "message": "Too Many Requests"}, True, "unavailable"),
        (503, {}, True, "unavailable"),
    ],
)
async def test_refusals_are_classified(
    status: int, body: dict[str, object], transient: bool, failure: str
) -> None:
    provider = provider_answering(status, body, [])
    with pytest.raises(SmsError) as raised:
        await provider.send_sms(TO, "hi")
    assert raised.value.failure is SmsFailure(failure)
    assert raised.value.transient is transient
    assert raised.value.status_code == status


@pytest.mark.parametrize(
    ("error", "transient", "failure"),
    [
        (httpx.ConnectError("refused"), True, SmsFailure.UNAVAILABLE),
        (httpx.ReadTimeout("slow"), True, SmsFailure.TIMEOUT),
        (httpx.RemoteProtocolError("garbage"), True, SmsFailure.UNAVAILABLE),
    ],
)
async def test_a_provider_that_does_not_answer_is_transient(
    error: httpx.HTTPError, transient: bool, failure: SmsFailure
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise error

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    provider = TwilioSmsProvider(TWILIO, client=client, policy=PUBLIC_DNS)
    with pytest.raises(SmsError) as raised:
        await provider.send_sms(TO, "hi")
    assert raised.value.transient is transient and raised.value.failure is failure


@pytest.mark.parametrize(
    ("base_url", "answers"),
    [
        ("https://sms.example.org", {"sms.example.org": "127.0.0.1"}),  # rebound to loopback
        ("https://sms.example.org", {"sms.example.org": "169.254.169.254"}),  # cloud metadata
        ("https://sms.example.org", {"sms.example.org": "10.0.0.7"}),
        ("https://sms.example.org", {}),  # does not resolve
        ("http://sms.example.org", {"sms.example.org": PUBLIC}),  # no HTTPS outside dev
        ("https://127.0.0.1:9", {}),  # loopback, not on the allow-list
    ],
)
async def test_a_provider_the_guard_refuses_is_never_called(
    base_url: str, answers: dict[str, str]
) -> None:
    seen: list[httpx.Request] = []
    settings = TWILIO.model_copy(update={"base_url": base_url})
    policy = OutboundPolicy(require_https=True, resolve=dns(answers))
    provider = provider_answering(201, {"sid": "SM1"}, seen, settings=settings, policy=policy)
    with pytest.raises(SmsError) as raised:
        await provider.send_sms(TO, "hi")
    assert raised.value.failure is SmsFailure.ADDRESS_REFUSED and not raised.value.transient
    assert "tok-secret" not in str(raised.value)
    assert seen == []


async def test_a_loopback_provider_is_reached_only_through_an_allow_list_entry() -> None:
    """The local stack's SMS sink: development, plain HTTP, one explicit `host:port`."""
    seen: list[httpx.Request] = []
    settings = TWILIO.model_copy(update={"base_url": "http://127.0.0.1:18025"})
    allowed = OutboundPolicy.for_environment("development", ["127.0.0.1:18025"])
    provider = provider_answering(201, {"sid": "SM9"}, seen, settings=settings, policy=allowed)
    assert await provider.send_sms(TO, "hi") == "SM9"
    assert seen[0].url.host == "127.0.0.1" and seen[0].url.port == 18025

    other_port = OutboundPolicy.for_environment("development", ["127.0.0.1:18026"])
    refused = provider_answering(201, {"sid": "SM9"}, seen, settings=settings, policy=other_port)
    with pytest.raises(SmsError):
        await refused.send_sms(TO, "hi")
    assert len(seen) == 1


@pytest.mark.parametrize(
    "number", ["0671234567", "+0671234567", "+38 067 123 45 67", "", "+1", "380671234567"]
)
async def test_a_number_that_is_not_e164_is_refused_without_a_request(number: str) -> None:
    seen: list[httpx.Request] = []
    provider = provider_answering(201, {"sid": "SM1"}, seen)
    with pytest.raises(SmsError) as raised:
        await provider.send_sms(number, "hi")
    assert raised.value.failure is SmsFailure.INVALID_RECIPIENT
    assert not is_e164(number) and seen == []


def test_settings_need_exactly_one_sender() -> None:
    with pytest.raises(ValidationError):
        TwilioSettings(account_sid="AC1", auth_token="t")
    with pytest.raises(ValidationError):
        TwilioSettings(
            account_sid="AC1",
            auth_token="t",
            from_number="+4915112345678",
            messaging_service_sid="MG1",
        )
