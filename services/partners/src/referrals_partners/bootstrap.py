"""Wiring: partners' parts built from settings, once per process (nothing at import).

`build_runtime(settings)` gives the `Runtime` every process of partners works with: the
database, the use cases (`Partners`, `Meetings`), the field cipher, the edge's key cache, case-token
verifier and access audit, the outbound policy and the trace viewer. The API's routes are handed
it by the request (`api.deps.RuntimeDep`), never by importing this module's caller.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import CaseTokenVerifier
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.db import Database
from referrals_common.edge.principals import AccessLog
from referrals_common.outbound import OutboundPolicy
from referrals_partners.centers import KeyHolder
from referrals_partners.config import PartnersSettings
from referrals_partners.meetings import MeetingLimits, Meetings
from referrals_partners.models import AccessAudit
from referrals_partners.operations import TraceViewer
from referrals_partners.registry import load_registry
from referrals_partners.service import Limits, Partners

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
    verified_keys: VerifiedKeys[tuple[str, KeyHolder]]
    """The edge's keys verified recently: (key id, its holder)."""
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
        dialect=db.engine.dialect,
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
