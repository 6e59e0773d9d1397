"""The edge of every HTTP API (intake, records, partners, and any app `create_service_app`
builds): rate limits, lockout after failed authentications, failed authentications audited in
summary, request body limits and connection deadlines. One module, used by every API; nothing
of it is copied into a service.

What a request meets, in order (`EdgeMiddleware`; `/health` and `/metrics` are exempt):

1. **Lockout.** After `failed_authentications_per_ip` failed authentications (a malformed key,
   an unknown key id or wrong secret, a revoked key, an invalid case token; not a missing one)
   from one address, every request from it is refused with 429
   `too-many-failed-authentications` and `Retry-After`, without checking anything, until the
   oldest failure leaves the moving window. After `failed_authentications_per_credential`
   failures naming one credential (an API key's key id, or a token's case) from one address,
   that credential is refused *from that address*: an attacker hammering a victim's key id locks
   that key id out for the attacker's address only, never for the victim's own, so a flood cannot
   deny the victim service. 429 rather than 401: the caller is told to wait, and when.
2. **Rate limits** (429 `too-many-requests`, `Retry-After`). A request that authenticates as a
   caller (an API key: `key:<key id>`; a case token: `case:<case id>`) is charged to that caller
   (`per_client`) once its credential is verified (`authenticated`, called by the services'
   authentication dependencies), so a forged key naming a victim's key id never spends the
   victim's requests; a caller over its rate is refused early, before its credential is even
   checked. Every other request (anonymous, public routes, failed credentials) is charged to its
   address (`per_ip`); an address that spent its requests waits, whatever it presents. The
   address is the peer's, or the one a trusted proxy forwarded (uvicorn's `proxy_headers`,
   `forwarded_allow_ips`). Client identity is the caller, not the address, because partner front
   ends are servers: one address speaks for all of a clinic's patients.
3. **Body limits.** A body declared (`Content-Length`) or grown over `http.max_body_bytes` is
   refused with 413 before it is read whole, except on the routes a service declares as
   streamed uploads (records' documents and opinions, which enforce their own, larger limits).
   Any body that sends nothing for `body_idle_timeout_seconds`, or arrives slower than
   `body_min_bytes_per_second` on average after `body_grace_seconds`, is cut off with 408.
4. **Headers deadline** (`edge.server`): uvicorn closes a connection whose request line and
   headers take longer than `http.header_timeout_seconds` (slowloris), with a 408 problem.

**Failed authentications are audited in summary** (`edge.audit`): one `access_audit` row per
credential (or address) and `audit_window_seconds`, `failed_authentication x<count> from
<address>`, written periodically and on shutdown, so a flood adds a bounded number of rows.

**Where the counts live: in each API process's memory** (`limits`' `MemoryStorage`). The limits
are a flood guard, not a quota or a bill: they must hold while the database is the thing under
load, and must cost no round trip per request; a shared store (PostgreSQL, or a Redis the
platform does not otherwise run) would add a write to every request, or a new piece of
infrastructure to run and secure, for precision nobody needs. The cost: with R replicas behind
a load balancer, a caller gets up to R times each limit, so configure each limit as the global
rate divided by R; a restart forgets the counts (and the not yet written audit summaries of the
current window, which are written on a graceful shutdown).
"""

from referrals_common.edge.audit import AuditSink, FailedAuthentications, FailureSummary
from referrals_common.edge.middleware import (
    EXEMPT_PATHS,
    Edge,
    EdgeMiddleware,
    TooManyFailedAuthentications,
    authenticated,
    authentication_failed,
    claimed_credential,
    client_ip,
)
from referrals_common.edge.ratelimit import RateLimits

__all__ = [
    "EXEMPT_PATHS",
    "AuditSink",
    "Edge",
    "EdgeMiddleware",
    "FailedAuthentications",
    "FailureSummary",
    "RateLimits",
    "TooManyFailedAuthentications",
    "authenticated",
    "authentication_failed",
    "claimed_credential",
    "client_ip",
]
