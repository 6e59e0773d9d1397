"""Intake's wiring: the parts a process needs, built from its settings once, when it starts
(nothing at import). The API (`main.create_app`) puts the `Runtime` on `app.state.runtime`,
where routes get it through `api.deps.RuntimeDep`; the consumer (`main.run_consumer`) builds one
for itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import (
    CaseTokenIssuer,
    CaseTokenVerifier,
    generate_private_key_pem,
    public_jwks,
)
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.db import Database
from referrals_common.edge.principals import AccessLog
from referrals_common.outbound import OutboundPolicy
from referrals_intake.case_events import CaseEventHub
from referrals_intake.clients import Client
from referrals_intake.config import IntakeSettings
from referrals_intake.models import AccessAudit
from referrals_intake.repository import CaseRepository
from referrals_intake.service import Intake

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: IntakeSettings
    db: Database
    intake: Intake
    tokens: CaseTokenIssuer
    verifier: CaseTokenVerifier
    jwks: dict[str, list[dict[str, str]]]
    pepper: bytes
    verified_keys: VerifiedKeys[tuple[str, Client]]
    """Front ends' keys verified recently: (key id, principal) (`api.deps.current_client`)."""
    access_log: AccessLog
    """The access audit, written in transactions of its own (denials, refused credentials)."""
    case_events: CaseEventHub
    """The case event streams this process serves, woken by PostgreSQL notifications."""
    outbound: OutboundPolicy
    """Which webhook addresses a front end may subscribe (public, https outside development)."""


def build_runtime(settings: IntakeSettings) -> Runtime:
    key_pem = settings.tokens.signing_key_pem.get_secret_value().encode()
    if not key_pem:
        # Allowed only in development (settings refuse an empty key elsewhere): tokens issued
        # by this process cannot be verified by another one.
        log.warning("no case-token signing key configured: using a throw-away key")
        key_pem = generate_private_key_pem()
    field_key = settings.field_encryption_key.get_secret_value()
    if not field_key:
        log.warning("no field encryption key configured: using a throw-away key")
        field_key = FieldCipher.generate_key_base64()
    jwks = public_jwks(key_pem)
    db = Database(settings.postgres)
    return Runtime(
        settings=settings,
        db=db,
        intake=Intake(
            cipher=FieldCipher.from_base64(field_key),
            processing_consent_versions=settings.processing_consent_versions,
            cross_border_consent_versions=settings.cross_border_consent_versions,
            follow_up_max_questions=settings.follow_up_max_questions,
            follow_up_window=timedelta(days=settings.follow_up_window_days),
            max_opinions=settings.max_opinions,
            repository=CaseRepository.on(db),
            contact_box=SealedBox(public_key_b64=settings.notifications_public_key)
            if settings.notifications_public_key
            else None,
            policy_box=SealedBox(public_key_b64=settings.partners_public_key)
            if settings.partners_public_key
            else None,
        ),
        tokens=CaseTokenIssuer(key_pem, issuer=settings.tokens.issuer, ttl=settings.tokens.ttl),
        verifier=CaseTokenVerifier(jwks),
        jwks=jwks,
        pepper=settings.api_key_pepper.get_secret_value().encode(),
        verified_keys=VerifiedKeys(settings.api_key_pepper.get_secret_value().encode()),
        access_log=AccessLog(db, AccessAudit),
        case_events=CaseEventHub.for_dsn(
            settings.postgres.asyncpg_dsn(),
            max_streams=settings.case_streams_max,
            max_per_case=settings.case_streams_per_case,
        ),
        outbound=OutboundPolicy.for_environment(
            settings.environment, settings.outbound_allowed_targets
        ),
    )
