"""Retention of the webhook delivery logs on real PostgreSQL (each service's own migrated
database): settled rows older than the retention are deleted in bounded batches and counted;
rows still pending a retry, recent rows and what is not a webhook's are kept.

Partners' scheduler prunes the centers' deliveries, notifications' sender the front ends'
deliveries, intake's consumer the front ends' log of attempts (`referrals_common.webhooks.
retention`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from referrals_common.db import Database
from referrals_common.metrics import WEBHOOK_LOG_PRUNED, service_name
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_common.webhooks.retention import RetentionSettings

NOW = datetime.now(UTC)
"""When the module was imported: a whole run may take longer than any minutes added to it, so
a time that must still be ahead when a test runs is taken then, a day ahead."""
OLD = NOW - timedelta(days=31)
RECENT = NOW - timedelta(days=29)
SMALL_BATCHES = RetentionSettings(retention_days=30, batch_size=2, interval_seconds=3600)


def pruned(log: str) -> float:
    return WEBHOOK_LOG_PRUNED.labels(service_name(), log)._value.get()


async def migrated(new_database, prefix: str, migrations) -> Database:  # type: ignore[no-untyped-def]
    dsn = await new_database(prefix)
    await upgrade_async(dsn, migrations)
    return Database(PostgresSettings(dsn=dsn))


async def test_partners_prunes_old_settled_center_deliveries_and_keeps_pending_ones(
    new_database,
) -> None:
    from referrals_partners.main import MIGRATIONS
    from referrals_partners.models import WebhookDelivery
    from referrals_partners.scheduler import delivery_log_pruner

    db = await migrated(new_database, "partners", MIGRATIONS)
    try:

        def row(status: str, created: datetime, **extra: object) -> WebhookDelivery:
            return WebhookDelivery(
                event_id=uuid.uuid4(),
                center_code="berlin-charite",
                referral_id=uuid.uuid4(),
                payload={"type": "referrals.referral.offered.v1"},
                status=status,
                created_at=created,
                **extra,
            )

        gone = [row("delivered", OLD), row("failed", OLD), row("cancelled", OLD)]
        kept = [
            row("pending", OLD, next_attempt_at=NOW + timedelta(minutes=5)),  # a retry to come
            row("pending", OLD - timedelta(days=300)),  # however old: still pending
            row("delivered", RECENT),
            row("failed", RECENT),
        ]
        async with db.unit_of_work() as uow:
            uow.session.add_all(gone + kept)
            await uow.commit()
        before = pruned("center_deliveries")

        pruner = delivery_log_pruner(db, SMALL_BATCHES)
        assert await pruner.prune_if_due() == 3  # batches of 2: 2, then 1
        assert await pruner.prune_if_due() == 0  # not due again within the interval

        async with db.unit_of_work() as uow:
            left = set((await uow.session.execute(select(WebhookDelivery.id))).scalars())
        assert left == {r.id for r in kept}
        assert pruned("center_deliveries") - before == 3
    finally:
        await db.dispose()


async def test_notifications_prunes_old_settled_front_end_deliveries_only(new_database) -> None:
    from referrals_notifications.main import MIGRATIONS
    from referrals_notifications.models import Delivery
    from referrals_notifications.sender import webhook_log_pruner
    from referrals_notifications.service import FRONT_END, PATIENT

    db = await migrated(new_database, "notifications", MIGRATIONS)
    try:

        def row(audience: str, status: str, created: datetime, **extra: object) -> Delivery:
            return Delivery(
                case_id=uuid.uuid4(),
                trigger="case_received",
                trigger_event_id=uuid.uuid4(),
                audience=audience,
                facts={},
                occurred_at=created,
                status=status,
                created_at=created,
                **extra,
            )

        gone = [
            row(FRONT_END, "sent", OLD),
            row(FRONT_END, "failed", OLD),
            row(FRONT_END, "skipped", OLD),
        ]
        kept = [
            row(FRONT_END, "pending", OLD, next_attempt_at=NOW + timedelta(seconds=60)),
            row(FRONT_END, "sent", RECENT),
            row(PATIENT, "sent", OLD),  # what went to a patient is not the webhook log
        ]
        async with db.unit_of_work() as uow:
            uow.session.add_all(gone + kept)
            await uow.commit()
        before = pruned("front_end_deliveries")

        assert await webhook_log_pruner(db, SMALL_BATCHES).prune() == 3

        async with db.unit_of_work() as uow:
            left = set((await uow.session.execute(select(Delivery.id))).scalars())
        assert left == {r.id for r in kept}
        assert pruned("front_end_deliveries") - before == 3
    finally:
        await db.dispose()


async def test_intake_prunes_the_front_ends_old_log_but_not_a_retry_to_come(new_database) -> None:
    from referrals_intake.main import MIGRATIONS
    from referrals_intake.models import WebhookDeliveryAttempt
    from referrals_intake.webhooks import delivery_log_pruner

    db = await migrated(new_database, "intake", MIGRATIONS)
    try:

        def row(
            outcome: str, at: datetime, next_at: datetime | None = None
        ) -> WebhookDeliveryAttempt:
            return WebhookDeliveryAttempt(
                client_id="clinic-kyiv",
                delivery_id=uuid.uuid4(),
                case_id=uuid.uuid4(),
                event="case_received",
                attempt=1,
                attempted_at=at,
                status_code=503 if outcome != "delivered" else 204,
                outcome=outcome,
                next_attempt_at=next_at,
            )

        gone = [
            row("delivered", OLD),
            row("failed", OLD),
            row("retrying", OLD, next_at=OLD + timedelta(seconds=30)),  # retried long ago
        ]
        kept = [
            row("retrying", OLD, next_at=datetime.now(UTC) + timedelta(days=1)),  # a retry to come
            row("delivered", RECENT),
        ]
        async with db.unit_of_work() as uow:
            uow.session.add_all(gone + kept)
            await uow.commit()
        before = pruned("front_end_log")

        assert await delivery_log_pruner(db, SMALL_BATCHES).prune() == 3

        async with db.unit_of_work() as uow:
            left = set((await uow.session.execute(select(WebhookDeliveryAttempt.id))).scalars())
        assert left == {r.id for r in kept}
        assert pruned("front_end_log") - before == 3
    finally:
        await db.dispose()


# --- the long-running roles prune as they go ------------------------------------------------------


async def _until_gone(db: Database, model, key) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(15):
        while True:
            async with db.unit_of_work() as uow:
                if await uow.session.get(model, key) is None:
                    return
            await asyncio.sleep(0.1)


async def test_partners_scheduler_prunes_while_it_runs(new_database) -> None:
    from referrals_partners.config import PartnersSettings
    from referrals_partners.main import MIGRATIONS, build_runtime
    from referrals_partners.models import WebhookDelivery
    from referrals_partners.scheduler import WebhookSender, delivery_log_pruner, run_scheduler

    dsn = await new_database("partners")
    await upgrade_async(dsn, MIGRATIONS)
    settings = PartnersSettings(postgres=PostgresSettings(dsn=dsn))
    rt = build_runtime(settings)
    old = WebhookDelivery(
        event_id=uuid.uuid4(),
        center_code="berlin-charite",
        referral_id=uuid.uuid4(),
        payload={},
        status="delivered",
        created_at=OLD,
    )
    async with rt.db.unit_of_work() as uow:
        uow.session.add(old)
        await uow.commit()
    sender = WebhookSender(rt.db, rt.cipher, rt.outbound)
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_scheduler(
            rt.partners,
            rt.db,
            sender,
            interval=0.1,
            stop=stop,
            meetings=rt.meetings,
            pruner=delivery_log_pruner(rt.db, settings.webhook_log),
        )
    )
    try:
        await _until_gone(rt.db, WebhookDelivery, old.id)
    finally:
        stop.set()
        await running
        await sender.close()
        await rt.db.dispose()


async def test_notifications_sender_prunes_while_it_runs(new_database) -> None:
    from referrals_common.crypto import SealedBox
    from referrals_notifications.bootstrap import build_runtime, build_sender
    from referrals_notifications.config import NotificationsSettings
    from referrals_notifications.main import MIGRATIONS, run_sender_loop
    from referrals_notifications.models import Delivery
    from referrals_notifications.sender import webhook_log_pruner
    from referrals_notifications.service import FRONT_END

    dsn = await new_database("notifications")
    await upgrade_async(dsn, MIGRATIONS)
    private, _ = SealedBox.generate_keypair_base64()
    settings = NotificationsSettings(
        postgres=PostgresSettings(dsn=dsn), contact_private_key=private
    )
    rt = build_runtime(settings)
    old = Delivery(
        case_id=uuid.uuid4(),
        trigger="case_received",
        trigger_event_id=uuid.uuid4(),
        audience=FRONT_END,
        facts={},
        occurred_at=OLD,
        status="sent",
        created_at=OLD,
    )
    async with rt.db.unit_of_work() as uow:
        uow.session.add(old)
        await uow.commit()
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_sender_loop(
            build_sender(settings, rt.db),
            0.1,
            stop,
            pruner=webhook_log_pruner(rt.db, settings.webhook_log),
        )
    )
    try:
        await _until_gone(rt.db, Delivery, old.id)
    finally:
        stop.set()
        await running
        await rt.db.dispose()
