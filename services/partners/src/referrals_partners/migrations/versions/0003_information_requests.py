"""a center's requests for more information, their answers, and shipments of slides or blocks

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "information_requests",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("reason", sa.String(4000), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resume_status", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
    )
    op.create_index("ix_information_requests_referral_id", "information_requests", ["referral_id"])
    op.create_index(
        "information_requests_due",
        "information_requests",
        ["due_at"],
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "shipments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("material", sa.String(24), nullable=False),
        sa.Column("carrier", sa.String(80), nullable=False),
        sa.Column("tracking_number", sa.String(40), nullable=False),
        sa.Column("sent_on", sa.Date(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_shipments_request_id", "shipments", ["request_id"])
    op.create_index("ix_shipments_referral_id", "shipments", ["referral_id"])


def downgrade() -> None:
    op.drop_table("shipments")
    op.drop_table("information_requests")
