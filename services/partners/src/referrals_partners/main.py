"""Bootstrap: partners' parts from settings, once per process (nothing at import).

Partners runs four processes: the API (centers, operators, patients' "why this center"), the
consumer (routing on intake's and records' events), the scheduler (deadlines and webhooks) and
the outbox relay.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import CaseTokenVerifier
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.db import Database
from referrals_common.edge.principals import AccessLog
from referrals_common.outbound import OutboundPolicy
from referrals_common.service_app import create_service_app, setup_observability
from referrals_partners.config import PartnersSettings
from referrals_partners.meetings import MeetingLimits, Meetings
from referrals_partners.models import AccessAudit, Referral
from referrals_partners.operations import TraceViewer
from referrals_partners.registry import load_registry
from referrals_partners.service import Limits, Partners

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: PartnersSettings
    db: Database
    partners: Partners
    meetings: Meetings
    """The consultation meetings' use cases (over the same `Partners`)."""
    cipher: FieldCipher
    pepper: bytes
    verified_keys: VerifiedKeys[tuple[str, str, str | None]]
    verifier: CaseTokenVerifier | None
    outbound: OutboundPolicy
    """Which webhook receivers may be called, checked at registration and at every delivery."""
    access_log: AccessLog
    """The access audit, written in transactions of its own."""
    trace_viewer: TraceViewer | None = None
    """Where the ops timeline reads a case's spans (None: not configured)."""


def field_cipher(settings: PartnersSettings) -> FieldCipher:
    key = settings.field_encryption_key.get_secret_value()
    if key:
        return FieldCipher.from_base64(key)
    # Development only (other environments refuse an empty key): every partners process must
    # decrypt what another wrote, so the throw-away key is derived from the shared pepper.
    log.warning("no field encryption key configured: deriving a development key from the pepper")
    digest = hashlib.sha256(
        b"partners-dev-field-key" + settings.api_key_pepper.get_secret_value().encode()
    )
    return FieldCipher.from_base64(base64.b64encode(digest.digest()).decode())


def meetings_of(partners: Partners, settings: PartnersSettings) -> Meetings:
    return Meetings(
        partners,
        MeetingLimits(
            min_notice=timedelta(seconds=settings.meeting_min_notice_seconds),
            reminders_before=tuple(
                timedelta(seconds=s)
                for s in sorted(settings.meeting_reminders_before_seconds, reverse=True)
            ),
        ),
    )


def build_runtime(settings: PartnersSettings) -> Runtime:
    pepper = settings.api_key_pepper.get_secret_value().encode()
    override = settings.deadline_override_seconds
    db = Database(settings.postgres)
    partners = Partners(
        load_registry(settings.seed_file or None).currency,
        Limits(
            max_attempts=settings.max_attempts,
            deadline_override=timedelta(seconds=override) if override else None,
            info_min_due=timedelta(seconds=settings.info_min_due_seconds),
            info_max_due=timedelta(days=settings.info_max_due_days),
            choice_count=settings.choice_count,
            choice_window=timedelta(seconds=settings.choice_window_seconds),
            info_reminders_before=tuple(
                timedelta(seconds=s)
                for s in sorted(settings.info_reminders_before_seconds, reverse=True)
            ),
        ),
        policy_box=SealedBox(private_key_b64=settings.policy_private_key.get_secret_value())
        if settings.policy_private_key.get_secret_value()
        else None,
    )
    return Runtime(
        settings=settings,
        db=db,
        partners=partners,
        meetings=meetings_of(partners, settings),
        cipher=field_cipher(settings),
        pepper=pepper,
        verified_keys=VerifiedKeys(pepper),
        verifier=CaseTokenVerifier(
            json.loads(settings.case_token_jwks), issuer=settings.case_token_issuer
        )
        if settings.case_token_jwks
        else None,
        outbound=OutboundPolicy.for_environment(
            settings.environment, settings.outbound_allowed_targets
        ),
        access_log=AccessLog(db, AccessAudit),
        trace_viewer=TraceViewer.from_settings(settings),
    )


def create_app(settings: PartnersSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    from referrals_partners.api.routes import TAGS, router

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
    """The scheduler process: deadlines and webhook deliveries, until SIGTERM or SIGINT."""
    import signal

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
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
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
