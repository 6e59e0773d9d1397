"""Intake's processes: `create_app()` is the HTTP API (`app_from_environment` for uvicorn's
workers); `run_consumer()` the lifecycle consumer; the relay is the shared
`referrals_common.messaging.relay`. Each runs as its own process (see cli.py). What they are
built from is `bootstrap.py`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from referrals_common.db import Database
from referrals_common.service_app import create_service_app, setup_observability
from referrals_intake.bootstrap import Runtime, build_runtime
from referrals_intake.config import IntakeSettings

__all__ = [
    "MIGRATIONS",
    "Runtime",
    "app_from_environment",
    "build_runtime",
    "create_app",
    "run_consumer",
]

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def create_app(settings: IntakeSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The intake HTTP API. Tests pass a runtime; a process builds one from its settings."""
    from referrals_intake.api import TAGS, api_router

    return create_service_app(
        title="Intake: second-opinion cases",
        description=(
            "Partner front ends open a patient's second-opinion case here, record consent, submit "
            "it and follow its timeline. Front ends authenticate with an API key (`X-Api-Key`); "
            "each case gets its own short-lived access token (`Authorization: Bearer ...`). "
            "Errors are RFC 9457 problem details."
        ),
        router=api_router(),
        build_runtime=lambda: build_runtime(settings or IntakeSettings()),
        runtime=runtime,
        settings=settings,
        tags=TAGS,
    )


def app_from_environment() -> FastAPI:
    """The app factory uvicorn workers call: settings from the environment."""
    settings = IntakeSettings()
    setup_observability("intake", settings)
    return create_app(settings)


async def run_consumer(settings: IntakeSettings) -> None:
    """The consumer process: until SIGTERM or SIGINT."""
    # Imported here: the API process needs neither the broker nor the consumer machinery.
    from referrals_common.messaging.consumer import serve_consumer
    from referrals_intake import consumers

    rt = build_runtime(settings)
    gauges = asyncio.create_task(count_cases_by_state(rt.db, settings.case_gauges_interval))
    try:
        await serve_consumer(
            "intake",
            settings.kafka,
            consumers.SUBSCRIBED_TOPICS,
            lambda dead: consumers.build_consumer(
                rt.intake, rt.db, dead, webhook_log=settings.webhook_log
            ),
        )
    finally:
        gauges.cancel()
        await rt.db.dispose()


async def count_cases_by_state(db: Database, interval: float) -> None:
    """Keep `referrals_cases` and `referrals_case_oldest_in_state_seconds` up to date: one
    grouped query every `interval` seconds (a state no case is in any more reads 0)."""
    from referrals_common.metrics import CASE_OLDEST_IN_STATE, CASES_IN_STATE, service_name
    from referrals_intake.repository import CaseRepository

    seen: set[str] = set()
    while True:
        try:
            async with db.unit_of_work() as uow:
                states = await CaseRepository(uow.session).states()
            now = {state for state, _, _ in states}
            for state in seen - now:
                CASES_IN_STATE.labels(service_name(), state).set(0)
                CASE_OLDEST_IN_STATE.labels(service_name(), state).set(0)
            for state, count, oldest in states:
                CASES_IN_STATE.labels(service_name(), state).set(count)
                CASE_OLDEST_IN_STATE.labels(service_name(), state).set(oldest)
            seen |= now
        except Exception:  # the database is away: keep the last figures, try again
            log.warning("counting cases by state failed", exc_info=True)
        await asyncio.sleep(interval)
