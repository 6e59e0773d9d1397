"""Partners' processes: the API app (`create_app`, `app_from_environment`) and the process entry
points. The parts they run are wired in `referrals_partners.bootstrap`.

Partners runs four processes: the API (centers, operators, patients' "why this center"), the
consumer (routing on intake's and records' events), the scheduler (deadlines and webhooks) and
the outbox relay.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from referrals_common.service_app import create_service_app, setup_observability
from referrals_partners.bootstrap import Runtime, build_runtime
from referrals_partners.config import PartnersSettings
from referrals_partners.models import Referral

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = [
    "MIGRATIONS",
    "Runtime",
    "app_from_environment",
    "build_runtime",
    "create_app",
    "run_consumer",
    "run_scheduler",
]


def create_app(settings: PartnersSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    from referrals_partners.api import TAGS, router

    return create_service_app(
        title="Partners: cancer centers and routing",
        description=(
            "Cancer centers answer the referrals offered to them here (`/v1/partner`, each with "
            "its own API key): accept, decline, ask for more information, deliver the opinion, "
            "and register a webhook. Operators manage the center registry and follow routing "
            "(`/v1/ops`, operator keys), read a case's timeline across the services and "
            "replay dead letters. A patient's front end reads why a center was chosen "
            "(`/v1/cases/{case_id}/routing`, case access token)."
        ),
        router=router,
        build_runtime=lambda: build_runtime(settings or PartnersSettings()),
        runtime=runtime,
        settings=settings,
        tags=TAGS,
        referral_table=Referral,  # the case of `…/referrals/<id>` for traces and logs
    )


def app_from_environment() -> FastAPI:
    settings = PartnersSettings()
    setup_observability("partners", settings)
    return create_app(settings)


async def run_consumer(settings: PartnersSettings) -> None:
    """The consumer process: load the registry seed, make inbox topics, route until stopped."""
    from referrals_common.messaging.consumer import serve_consumer
    from referrals_partners import consumers
    from referrals_partners.centers import ensure_inbox_topics, load_seed

    rt = build_runtime(settings)
    try:
        await load_seed(rt.db, settings.seed_file or None)
        await ensure_inbox_topics(rt.db, settings.kafka)
        await serve_consumer(
            "partners",
            settings.kafka,
            consumers.SUBSCRIBED_TOPICS,
            lambda dead: consumers.build_consumer(rt.partners, rt.db, dead, meetings=rt.meetings),
        )
    finally:
        await rt.db.dispose()


async def run_scheduler(settings: PartnersSettings) -> None:
    """The scheduler role: deadlines and webhook deliveries, until SIGTERM or SIGINT."""
    from referrals_common import shutdown
    from referrals_partners.scheduler import WebhookSender, delivery_log_pruner
    from referrals_partners.scheduler import run_scheduler as loop

    rt = build_runtime(settings)
    sender = WebhookSender(
        rt.db,
        rt.cipher,
        rt.outbound,
        timeout=settings.webhook_timeout_seconds,
        retry=settings.webhook_retry.policy(),
    )
    stop = shutdown.requested()
    try:
        await loop(
            rt.partners,
            rt.db,
            sender,
            interval=settings.scheduler_interval_seconds,
            stop=stop,
            meetings=rt.meetings,
            pruner=delivery_log_pruner(rt.db, settings.webhook_log),
        )
    finally:
        await sender.close()
        await rt.db.dispose()
