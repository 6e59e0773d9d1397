"""notifications first schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from referrals_common.messaging.schema import create_messaging_schema, drop_messaging_schema

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_schema(op)
    op.create_table(
        "case_contacts",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("sealed_contact", sa.String(length=4000), nullable=False),
        sa.Column("locale", sa.String(length=5), nullable=False),
        sa.Column("front_end", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "cases_seen",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("locale", sa.String(length=5), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("trigger_event_id", sa.Uuid(), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trigger_event_id", "audience", name="deliveries_once"),
    )
    op.create_index(
        "deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_deliveries_case_id"), "deliveries", ["case_id"], unique=False)
    op.create_table(
        "documents_seen",
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("document_id"),
    )
    op.create_index(op.f("ix_documents_seen_case_id"), "documents_seen", ["case_id"], unique=False)
    op.create_table(
        "ops_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_ops_alerts_case_id"), "ops_alerts", ["case_id"], unique=False)
    op.create_table(
        "referrals_seen",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(length=63), nullable=False),
        sa.Column("center_name", sa.String(length=200), nullable=False),
        sa.Column("center_country", sa.String(length=2), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
    )
    op.create_index(op.f("ix_referrals_seen_case_id"), "referrals_seen", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_referrals_seen_case_id"), table_name="referrals_seen")
    op.drop_table("referrals_seen")
    op.drop_index(op.f("ix_ops_alerts_case_id"), table_name="ops_alerts")
    op.drop_table("ops_alerts")
    op.drop_index(op.f("ix_documents_seen_case_id"), table_name="documents_seen")
    op.drop_table("documents_seen")
    op.drop_index(op.f("ix_deliveries_case_id"), table_name="deliveries")
    op.drop_index(
        "deliveries_due", table_name="deliveries", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("deliveries")
    op.drop_table("cases_seen")
    op.drop_table("case_contacts")

    drop_messaging_schema(op)
