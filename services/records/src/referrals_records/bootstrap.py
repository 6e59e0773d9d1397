"""Wiring: records' parts built from settings, once per process (nothing at import). The API's
routes get the runtime from the request (`api.deps.RuntimeDep`), never from this module."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import CaseTokenVerifier
from referrals_common.db import Database
from referrals_common.edge.principals import AccessLog
from referrals_records.config import MIB, RecordsSettings
from referrals_records.links import LinkSigner
from referrals_records.models import AccessAudit
from referrals_records.repository import RecordsRepository
from referrals_records.resumable import ResumableUploads
from referrals_records.service import Records
from referrals_records.storage import DocumentStore, SignedPuts


@dataclass
class Runtime:
    settings: RecordsSettings
    db: Database
    records: Records
    verifier: CaseTokenVerifier
    pepper: bytes
    verified_keys: VerifiedKeys[tuple[str, str]]
    """Verified center keys: (key id, center code), for `center_key_cache_seconds` (a key
    partners revoked is refused that long at most after records read the revocation)."""
    access_log: AccessLog
    """The access audit, written in transactions of its own."""
    links: LinkSigner
    """Signs and opens download links (`/v1/downloads/<token>`)."""
    uploads: ResumableUploads
    """Resumable uploads: parts into MinIO multipart uploads, completed into documents."""


def build_runtime(settings: RecordsSettings) -> Runtime:
    if not settings.case_token_jwks:
        raise RuntimeError(
            "REFERRALS_RECORDS_CASE_TOKEN_JWKS is not set: records verifies case tokens with the "
            "keys intake publishes at /v1/.well-known/jwks.json"
        )
    # The SDK's requests on its pool of connections; records' signed puts on their own
    # (asyncio's, no worker thread: storage.SignedPuts).
    client = settings.s3.client(settings.s3.http_pool())
    store = DocumentStore(client, settings.bucket, SignedPuts(settings.s3, settings.bucket))
    store.ensure_bucket()
    db = Database(settings.postgres)
    records = Records(
        db=db,
        store=store,
        limits=settings.size_limits,
        case_quota_bytes=settings.case_quota_bytes,
        repository=RecordsRepository.on(db),
    )
    return Runtime(
        settings=settings,
        db=db,
        records=records,
        uploads=ResumableUploads(
            records=records,
            multipart=store.multipart,
            part_size=settings.upload_part_mb * MIB,
            ttl=timedelta(hours=settings.upload_ttl_hours),
        ),
        verifier=CaseTokenVerifier(
            json.loads(settings.case_token_jwks), issuer=settings.case_token_issuer
        ),
        pepper=settings.api_key_pepper.get_secret_value().encode(),
        verified_keys=VerifiedKeys(
            settings.api_key_pepper.get_secret_value().encode(),
            ttl=settings.center_key_cache_seconds,
        ),
        links=link_signer(settings),
        access_log=AccessLog(db, AccessAudit),
    )


def link_signer(settings: RecordsSettings) -> LinkSigner:
    """The download links' signer: the configured key, or in development one derived from the
    pepper (other environments refuse an empty key)."""
    ttl = timedelta(seconds=settings.link_ttl_seconds)
    key = settings.link_signing_key.get_secret_value()
    if key:
        return LinkSigner.from_base64(key, ttl)
    return LinkSigner.development(settings.api_key_pepper.get_secret_value(), ttl)
