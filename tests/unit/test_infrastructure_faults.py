"""Which errors a consumer retries (the infrastructure's) and which it may dead-letter."""

from __future__ import annotations

import asyncpg
import pytest
import urllib3.exceptions
from minio.error import S3Error
from sqlalchemy.exc import DBAPIError

from referrals_common.faults import is_infrastructure_fault

pytestmark = pytest.mark.unit


def _wrapped(error: BaseException) -> DBAPIError:
    """As SQLAlchemy raises it: the driver's error as `orig` and as the cause."""
    try:
        try:
            raise error
        except BaseException as exc:
            raise DBAPIError("statement", {}, exc) from exc
    except DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.CrashShutdownError("crash shutdown"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError(111, "refused"),
    ],
)
def test_a_database_restart_is_retried_never_dead_lettered(error: BaseException) -> None:
    assert is_infrastructure_fault(_wrapped(error))
    assert is_infrastructure_fault(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.CheckViolationError("check"),
        ValueError("a handler's bug"),
    ],
)
def test_the_events_or_the_handlers_fault_is_not_infrastructure(error: BaseException) -> None:
    assert not is_infrastructure_fault(_wrapped(error))


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.MaxRetryError(
            None, "/documents/x", urllib3.exceptions.NewConnectionError(None, "refused")
        ),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()),
        S3Error(None, "XMinioServerNotInitialized", "starting", "/documents/x", "r", "h"),
        S3Error(None, "SlowDown", "busy", "/documents/x", "r", "h"),
    ],
)
def test_the_object_store_away_is_infrastructure(error: BaseException) -> None:
    assert is_infrastructure_fault(error)
    wrapped = RuntimeError("reading the document failed")
    wrapped.__cause__ = error
    assert is_infrastructure_fault(wrapped)


@pytest.mark.parametrize("code", ["NoSuchKey", "AccessDenied", "InvalidArgument"])
def test_an_object_store_refusal_of_the_request_is_not_infrastructure(code: str) -> None:
    assert not is_infrastructure_fault(S3Error(None, code, "no", "/documents/x", "r", "h"))
