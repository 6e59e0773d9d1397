"""Outgoing calls to addresses a center or a front end chose: only public ones, at the address
that was checked, with coarse errors (referrals_common.outbound)."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from referrals_common.outbound import (
    ErrorClass,
    IPAddress,
    OutboundPolicy,
    TargetRefused,
    classify,
    is_public,
)

pytestmark = pytest.mark.unit

PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_a_non_public_address_is_refused_in_every_form(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_a_public_address_is_accepted(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in answers:
            raise OSError("Name or service not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    return resolve


HOSTILE_DNS = resolver(
    {
        "localhost": ["127.0.0.1", "::1"],
        "app.127.0.0.1.nip.io": ["127.0.0.1"],
        "metadata.google.internal": ["169.254.169.254"],
        "rebinding.example": [PUBLIC, "10.0.0.7"],
        "hooks.example.org": [PUBLIC],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/x",
        "https://localhost./x",  # the trailing dot of a fully qualified name
        "https://LOCALHOST/x",
        "https://app.127.0.0.1.nip.io/x",
        "https://metadata.google.internal./computeMetadata/v1/",
        "https://rebinding.example/x",  # one private answer among public ones
        "https://[::ffff:127.0.0.1]/x",
        "https://[64:ff9b::7f00:1]/x",
        "https://127.0.0.1:8443/x",
        "https://2130706433/x",  # 127.0.0.1 as one decimal number
        "https://does-not-resolve.example/x",
    ],
)
async def test_hostile_webhook_urls_are_refused(url: str) -> None:
    policy = OutboundPolicy(require_https=True, resolve=HOSTILE_DNS)
    with pytest.raises(TargetRefused):
        await policy.resolve(url)


async def test_a_public_host_resolves_to_the_address_that_will_be_called() -> None:
    policy = OutboundPolicy(require_https=True, resolve=HOSTILE_DNS)
    target = await policy.resolve("https://hooks.example.org/offers")
    assert str(target.address) == PUBLIC
    assert str(target.connect_url()) == f"https://{PUBLIC}/offers"
    assert target.host_header() == "hooks.example.org"


async def test_plain_http_is_refused_outside_development_only() -> None:
    url = "http://hooks.example.org/offers"
    with pytest.raises(TargetRefused, match="HTTPS"):
        await OutboundPolicy(require_https=True, resolve=HOSTILE_DNS).resolve(url)
    assert (await OutboundPolicy(require_https=False, resolve=HOSTILE_DNS).resolve(url)).address
    assert OutboundPolicy.for_environment("production").require_https
    assert OutboundPolicy.for_environment("test").require_https
    assert not OutboundPolicy.for_environment("development").require_https


async def test_development_is_no_blanket_exception_only_allow_listed_host_and_port() -> None:
    policy = OutboundPolicy.for_environment("development", ["127.0.0.1:8099"])
    assert str((await policy.resolve("http://127.0.0.1:8099/offers")).address) == "127.0.0.1"
    for url in ("http://127.0.0.1:8098/offers", "https://localhost/x", "http://[::1]:8099/"):
        with pytest.raises(TargetRefused):
            await policy.resolve(url)


async def test_urls_with_credentials_or_other_schemes_are_refused() -> None:
    policy = OutboundPolicy(require_https=False, resolve=HOSTILE_DNS)
    for url in ("ftp://hooks.example.org/x", "https://u:p@hooks.example.org/x", "file:///etc"):
        with pytest.raises(TargetRefused):
            await policy.resolve(url)


async def test_the_post_goes_to_the_checked_address_and_follows_no_redirect() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://127.0.0.1/admin"})

    policy = OutboundPolicy(require_https=True, resolve=HOSTILE_DNS)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        response = await policy.post(
            client, "https://hooks.example.org:8443/offers", content=b"{}", headers={}
        )
    assert response.status_code == 302 and len(seen) == 1
    (request,) = seen
    assert request.url.host == PUBLIC and request.url.port == 8443
    assert request.headers["Host"] == "hooks.example.org:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.org"
    assert classify(response) is ErrorClass.HTTP_3XX


async def test_a_host_that_turns_private_after_registration_is_not_called() -> None:
    answers = {"flip.example": [PUBLIC]}
    policy = OutboundPolicy(require_https=True, resolve=resolver(answers))
    await policy.resolve("https://flip.example/x")  # at registration: public
    answers["flip.example"] = ["127.0.0.1"]  # then the name is rebound to loopback
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(TargetRefused):
            await policy.post(client, "https://flip.example/x", content=b"", headers={})
    assert calls == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), ErrorClass.CONNECT_FAILED),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), ErrorClass.TLS_ERROR),
        (httpx.ReadTimeout("timed out"), ErrorClass.TIMEOUT),
        (httpx.RemoteProtocolError("illegal header"), ErrorClass.PROTOCOL_ERROR),
        (TargetRefused("internal"), ErrorClass.ADDRESS_REFUSED),
        (httpx.Response(503), ErrorClass.HTTP_5XX),
        (httpx.Response(404), ErrorClass.HTTP_4XX),
    ],
)
def test_errors_are_reported_as_coarse_classes_without_the_socket_text(
    error: BaseException | httpx.Response, expected: ErrorClass
) -> None:
    found = classify(error)
    assert found is expected
    assert "Errno" not in str(found) and "111" not in str(found)
