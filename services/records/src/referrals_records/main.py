"""Records' processes: the API app (`create_app`, `app_from_environment`) and the consumer
(`run_consumer`), from the runtime `bootstrap` builds."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from referrals_common.service_app import create_service_app, setup_observability
from referrals_records.bootstrap import Runtime, build_runtime
from referrals_records.config import RecordsSettings
from referrals_records.models import CenterReferral
from referrals_records.resumable import expire_uploads_forever

MIGRATIONS = Path(__file__).parent / "migrations"
STREAMED_UPLOADS = (
    "POST /v1/cases/{case_id}/documents",
    "POST /v1/referrals/{referral_id}/opinion",
    "PUT /v1/cases/{case_id}/uploads/{upload_id}/parts/{part_number}",
    "PUT /v1/referrals/{referral_id}/opinion/uploads/{upload_id}/parts/{part_number}",
)
log = logging.getLogger(__name__)


def create_app(settings: RecordsSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    from referrals_records import api

    return create_service_app(
        title="Records: medical documents",
        description=(
            "Partner front ends upload a case's documents here with the case access token; "
            "cancer centers download the documents of referrals offered to them with their API "
            "key. Documents are typed by content, streamed to object storage, encrypted at "
            "rest, and read only through short-lived links scoped to one document."
        ),
        router=api.router(),
        build_runtime=lambda: build_runtime(settings or RecordsSettings()),
        runtime=runtime,
        settings=settings,
        tags=api.TAGS,
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
