"""Outgoing HTTP calls to addresses someone else chose (a center's webhook, a front end's), made
safe against server-side request forgery.

A receiver's URL is checked when it is registered **and before every call**: its host is
resolved, and every address it resolves to must be globally routable (not loopback, private,
link-local, carrier-grade NAT, multicast, reserved or unspecified, nor such an address wrapped in
IPv6: IPv4-mapped, NAT64, 6to4 or Teredo). The call then connects to the very address that was
checked (the URL's host stays in `Host` and in TLS's SNI and certificate check), so a DNS answer
that changes between the check and the connection (rebinding) cannot redirect it. Redirects are
never followed. HTTPS is required outside development; loopback or private receivers (the local
stack's sample center) are reachable only through explicit `host:port` entries of an allow-list
in configuration, never by a blanket exception.

What went wrong is reported as a coarse class (`ErrorClass`), never as the socket's error text:
a stored error message must not turn the platform into a port scanner for its callers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves a host and port to the addresses a connection would use."""

_NAT64: Final = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # well-known prefix (RFC 6052)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use prefix (RFC 8215)
)
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")
_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


class ErrorClass(StrEnum):
    """What went wrong with an outgoing call, coarsely: safe to store and to show its caller."""

    ADDRESS_REFUSED = "address refused"
    """The host resolves to a non-public address (or does not resolve)."""
    CONNECT_FAILED = "connect failed"
    TLS_ERROR = "TLS error"
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol error"
    HTTP_3XX = "HTTP 3xx"
    HTTP_4XX = "HTTP 4xx"
    HTTP_5XX = "HTTP 5xx"


class TargetRefused(ValueError):
    """The URL may not be called: its `reason` says why, in words fit for the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally routable unicast, also once unwrapped from IPv6."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
    )


def _parse_allowed(entries: Iterable[str]) -> frozenset[tuple[str, int]]:
    allowed = set()
    for entry in entries:
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"allow-list entries are host:port, not {entry!r}")
        allowed.add((_normal_host(host), int(port)))
    return frozenset(allowed)


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class Target:
    """A URL whose host was resolved and checked: call it only at `address`."""

    url: httpx.URL
    host: str
    port: int
    address: IPAddress

    def connect_url(self) -> httpx.URL:
        """The URL with the checked address in place of the host name."""
        literal = str(self.address)
        if isinstance(self.address, ipaddress.IPv6Address):
            literal = f"[{literal}]"
        return self.url.copy_with(host=literal.strip("[]"))

    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the system's resolver gives for `host` (TCP)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An AF_INET/AF_INET6 sockaddr starts with the address as a string.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


class OutboundPolicy:
    """Which URLs the platform may call on someone else's behalf, and how it calls them."""

    def __init__(
        self,
        *,
        require_https: bool,
        allowed: Iterable[str] = (),
        resolve: Resolver | None = None,
    ) -> None:
        self.require_https = require_https
        self.allowed = _parse_allowed(allowed)
        """`(host, port)` pairs that may be non-public: explicit local receivers only."""
        self._resolve: Resolver = resolve or system_resolve

    @classmethod
    def for_environment(cls, environment: str, allowed: Iterable[str] = ()) -> OutboundPolicy:
        """HTTPS everywhere but in development; the allow-list applies in every environment."""
        return cls(require_https=environment != "development", allowed=allowed)

    def check_url(self, url: str | httpx.URL) -> tuple[httpx.URL, str, int]:
        """The URL, its normalised host and port, if its form may be called (no lookup)."""
        try:
            parsed = httpx.URL(str(url))
        except (httpx.InvalidURL, ValueError):
            raise TargetRefused("The URL is not valid.") from None
        if parsed.scheme not in ("https", "http"):
            raise TargetRefused("The URL must be an https:// URL.")
        if parsed.scheme != "https" and self.require_https:
            raise TargetRefused("The URL must use HTTPS.")
        if parsed.userinfo:
            raise TargetRefused("The URL must not carry a user name or password.")
        host = _normal_host(parsed.host)
        if not host:
            raise TargetRefused("The URL has no host.")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return parsed, host, port

    async def resolve(self, url: str | httpx.URL) -> Target:
        """Resolve `url`'s host and check every address; raise TargetRefused otherwise."""
        parsed, host, port = self.check_url(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await self._resolve(host, port)
            except (OSError, UnicodeError):
                raise TargetRefused("The URL's host does not resolve.") from None
        if not addresses:
            raise TargetRefused("The URL's host does not resolve.")
        if (host, port) not in self.allowed and not all(is_public(a) for a in addresses):
            # One private answer among public ones is refused too: a rebinding name may
            # rotate between them.
            raise TargetRefused("The URL must name a public address, not an internal one.")
        return Target(url=parsed, host=host, port=port, address=addresses[0])

    async def post(
        self,
        client: httpx.AsyncClient,
        url: str | httpx.URL,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> httpx.Response:
        """POST to `url` after resolving and checking it, connecting to the checked address;
        redirects are not followed. Raises TargetRefused or an httpx error."""
        target = await self.resolve(url)
        extensions: dict[str, object] = {}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.host
        request = client.build_request(
            "POST",
            target.connect_url(),
            content=content,
            headers={**headers, "Host": target.host_header()},
            extensions=extensions,
            timeout=timeout if timeout is not None else client.timeout,
        )
        return await client.send(request, follow_redirects=False)


def classify(error: BaseException | httpx.Response) -> ErrorClass:
    """The coarse class of a failed call (an exception, or a response that is not 2xx)."""
    if isinstance(error, httpx.Response):
        code = error.status_code
        if code >= 500:
            return ErrorClass.HTTP_5XX
        if code >= 400:
            return ErrorClass.HTTP_4XX
        return ErrorClass.HTTP_3XX
    if isinstance(error, TargetRefused):
        return ErrorClass.ADDRESS_REFUSED
    if isinstance(error, httpx.TimeoutException):
        return ErrorClass.TIMEOUT
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return ErrorClass.TLS_ERROR
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        if "ssl" in text or "certificate" in text or "tls" in text:
            return ErrorClass.TLS_ERROR
        return ErrorClass.CONNECT_FAILED
    if isinstance(error, httpx.NetworkError):
        return ErrorClass.CONNECT_FAILED
    return ErrorClass.PROTOCOL_ERROR


__all__ = [
    "ErrorClass",
    "IPAddress",
    "OutboundPolicy",
    "Target",
    "TargetRefused",
    "classify",
    "embedded_ipv4",
    "is_public",
    "system_resolve",
]
