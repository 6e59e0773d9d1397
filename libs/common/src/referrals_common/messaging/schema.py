"""The tables the messaging patterns keep in every service's own database.

`outbox`: events written in the same transaction as the state change they announce, published by
the relay and then marked sent (and later pruned). `slot` spreads aggregates over a fixed number
of relay work slots; a relay holds a slot's lock while it publishes, so the events of one case
are never published by two relays at once and keep their order.

`inbox`: which consumer has already applied which event; its primary key is what makes a
redelivered event a no-op.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    SmallInteger,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Connection

OUTBOX_SLOTS = 32
NOTIFY_CHANNEL = "referrals_outbox"

messaging_metadata = MetaData()

outbox_table = Table(
    "outbox",
    messaging_metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, comment="the event id"),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("aggregate_id", String(64), nullable=False, comment="the Kafka key: the case id"),
    Column("slot", SmallInteger, nullable=False),
    Column("topic", String(249), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("payload", JSONB, nullable=False, comment="the CloudEvents envelope"),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Index("outbox_pending", "slot", "seq", postgresql_where=text("sent_at is null")),
    Index("outbox_sent", "sent_at", postgresql_where=text("sent_at is not null")),
)

inbox_table = Table(
    "inbox",
    messaging_metadata,
    Column("consumer", String(120), primary_key=True),
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("event_type", String(200), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A statement-level trigger wakes the relays once per inserting statement, inside the commit.
NOTIFY_FUNCTION_SQL = f"""
create or replace function referrals_outbox_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('{NOTIFY_CHANNEL}', '');
  return null;
end $$;
"""
NOTIFY_TRIGGER_SQL = """
create trigger outbox_notify after insert on outbox
for each statement execute function referrals_outbox_notify();
"""


class MigrationOps(Protocol):
    """What these helpers use of a migration's `alembic.op`."""

    def get_bind(self) -> Connection: ...

    def execute(self, sqltext: str) -> None: ...


def create_messaging_schema(op: MigrationOps) -> None:
    """Alembic helper: create the outbox and inbox with their trigger (call from a migration)."""
    bind = op.get_bind()
    messaging_metadata.create_all(bind)
    op.execute(NOTIFY_FUNCTION_SQL)
    op.execute(NOTIFY_TRIGGER_SQL)


def drop_messaging_schema(op: MigrationOps) -> None:
    op.execute("drop trigger if exists outbox_notify on outbox")
    op.execute("drop function if exists referrals_outbox_notify()")
    messaging_metadata.drop_all(op.get_bind())
