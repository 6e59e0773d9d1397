"""Bootstrap: records' parts from settings, once per process (nothing at import)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from minio import Minio

from referrals_common.auth.api_keys import VerifiedKeys
from referrals_common.auth.case_tokens import CaseTokenVerifier
from referrals_common.db import Database
from referrals_common.edge.principals import AccessLog
from referrals_common.service_app import create_service_app, setup_observability
from referrals_records.config import MIB, RecordsSettings
from referrals_records.links import LinkSigner
from referrals_records.models import AccessAudit, CenterReferral
from referrals_records.resumable import ResumableUploads, expire_uploads_forever
from referrals_records.service import Records
from referrals_records.storage import DocumentStore

MIGRATIONS = Path(__file__).parent / "migrations"
STREAMED_UPLOADS = (
    "POST /v1/cases/{case_id}/documents",
    "POST /v1/referrals/{referral_id}/opinion",
    "PUT /v1/cases/{case_id}/uploads/{upload_id}/parts/{part_number}",
    "PUT /v1/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{part_number}",
)
log = logging.getLogger(__name__)


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
    s3 = settings.s3
    client = Minio(
        s3.endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.secure,
        region=s3.region,
    )
    store = DocumentStore(client, settings.bucket)
    store.ensure_bucket()
    db = Database(settings.postgres)
    records = Records(
        db=db,
        store=store,
        limits=settings.size_limits,
        case_quota_bytes=settings.case_quota_bytes,
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


def create_app(settings: RecordsSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    from fastapi import APIRouter

    from referrals_records.api import resumable, routes

    # One router of both modules' routes, made per app (their route objects, as they are: the
    # app documents and tags the router's own routes).
    router = APIRouter()
    router.routes.extend([*routes.router.routes, *resumable.router.routes])

    return create_service_app(
        title="Records: medical documents",
        description=(
            "Partner front ends upload a case's documents here with the case access token; "
            "cancer centers download the documents of referrals offered to them with their API "
            "key. Documents are typed by content, streamed to object storage, encrypted at "
            "rest, and read only through short-lived links scoped to one document."
        ),
        router=router,
        build_runtime=lambda: build_runtime(settings or RecordsSettings()),
        runtime=runtime,
        settings=settings,
        tags=routes.TAGS,
        # Uploads stream to storage under records' own size limits; every other body: the edge's.
        streamed_bodies=STREAMED_UPLOADS,
        referral_table=CenterReferral,  # the case of `…/referrals/<id>` for traces and logs
    )


def app_from_environment() -> FastAPI:
    settings = RecordsSettings()
    setup_observability("records", settings)
    return create_app(settings)


async def run_consumer(settings: RecordsSettings) -> None:
    """The consumer process: until SIGTERM or SIGINT."""
    # Imported here: the API process needs neither the broker nor the consumer machinery.
    from referrals_common.messaging.consumer import serve_consumer
    from referrals_records import consumers

    rt = build_runtime(settings)
    # Abandoned resumable uploads expire here, beside the consumer (one loop per replica: each
    # sweep takes rows the others have not locked).
    sweep = asyncio.create_task(expire_uploads_forever(rt.uploads, settings.upload_sweep_seconds))
    try:
        await serve_consumer(
            "records",
            settings.kafka,
            consumers.SUBSCRIBED_TOPICS,
            lambda dead: consumers.build_consumer(rt.records, rt.db, dead, pepper=rt.pepper),
        )
    finally:
        sweep.cancel()
        await rt.uploads.multipart.close()
        await rt.db.dispose()
