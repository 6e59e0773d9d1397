"""Which errors a consumer retries (the infrastructure's) and which it may dead-letter."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from referrals_common.messaging.consumer import is_infrastructure_fault

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
