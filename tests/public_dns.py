"""DNS for the tests' webhook receivers: this machine resolves no public names, so the names
the tests register (`*.example.org`, reserved for examples) resolve here to one public address;
every other name goes to the system's resolver (so `localhost` is still loopback)."""

from __future__ import annotations

import ipaddress

from referrals_common.outbound import IPAddress, OutboundPolicy, system_resolve

EXAMPLE_ADDRESS = ipaddress.ip_address("93.184.215.14")
"""A public address (never connected to by the tests: they register, they do not deliver)."""


async def example_dns(host: str, port: int) -> list[IPAddress]:
    if host == "example.org" or host.endswith(".example.org"):
        return [EXAMPLE_ADDRESS]
    return await system_resolve(host, port)


def with_example_dns(policy: OutboundPolicy) -> OutboundPolicy:
    """`policy` with the same rules, resolving `*.example.org` to a public address."""
    return OutboundPolicy(
        require_https=policy.require_https,
        allowed=[f"{host}:{port}" for host, port in policy.allowed],
        resolve=example_dns,
    )
