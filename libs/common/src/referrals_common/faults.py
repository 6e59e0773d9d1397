"""Is an error the infrastructure's (a database, object store or network that is away for a
while) rather than the request's, the event's or the code's?

Consumers retry such a fault instead of dead-lettering a good event; APIs answer it with
503 Service Unavailable and `Retry-After` instead of 500, so a client retries rather than
reporting a bug. The whole chain of causes is looked at: SQLAlchemy wraps a server restart's
"terminating connection due to administrator command" (57P01) as a plain DBAPIError, and a
worker thread's error may be re-raised inside another.
"""

from __future__ import annotations

from collections.abc import Iterator

INFRASTRUCTURE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
"""PostgreSQL error classes that are the server's state, not the statement's: connection
exception, insufficient resources, operator intervention (shutdown, restart, starting up),
system error."""

UNAVAILABLE_S3_CODES = frozenset(
    {
        "ServiceUnavailable",
        "SlowDown",
        "XMinioServerNotInitialized",
        "XMinioStorageFull",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
        "InternalError",
    }
)
"""S3 error codes that mean the object store cannot serve now, whatever the request."""


def _infrastructure_types() -> tuple[type[BaseException], ...]:
    import asyncpg
    import urllib3.exceptions
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (
        OSError,  # refused, reset, unreachable; includes ConnectionError
        TimeoutError,
        OperationalError,
        InterfaceError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        # The MinIO SDK's transport: no connection, retries used up, a response cut short.
        urllib3.exceptions.MaxRetryError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
    )


def causes(exc: BaseException, *, limit: int = 10) -> Iterator[BaseException]:
    """`exc`, then what caused it (`__cause__`, else `__context__`), and so on: at most `limit`
    errors, so a cycle of causes never loops."""
    seen: BaseException | None = exc
    for _ in range(limit):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def sqlstates(exc: BaseException) -> Iterator[str]:
    """The PostgreSQL SQLSTATE codes anywhere in `exc`'s chain of causes, on the driver's error
    or on SQLAlchemy's wrapper of it (`orig`)."""
    for seen in causes(exc):
        for candidate in (seen, getattr(seen, "orig", None)):
            state = getattr(candidate, "sqlstate", None)
            if isinstance(state, str):
                yield state


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Whether `exc`, or any error in its chain of causes, is a fault of the infrastructure."""
    from minio.error import S3Error
    from sqlalchemy.exc import DBAPIError

    infrastructure = _infrastructure_types()
    for seen in causes(exc):
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, infrastructure):
            return True
        if isinstance(seen, S3Error) and seen.code in UNAVAILABLE_S3_CODES:
            return True
    return any(state[:2] in INFRASTRUCTURE_SQLSTATE_CLASSES for state in sqlstates(exc))
