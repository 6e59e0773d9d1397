"""a center's requests for more information and the patient's answers

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "information_requests",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("reason", sa.String(4000), nullable=False),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resume_status", sa.String(32), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.String(4000), nullable=True),
        sa.Column("document_ids", postgresql.JSONB(), nullable=False),
        sa.Column("shipments", postgresql.JSONB(), nullable=False),
    )
    op.create_index(
        "information_requests_case", "information_requests", ["case_id", "requested_at"]
    )


def downgrade() -> None:
    op.drop_index("information_requests_case", "information_requests")
    op.drop_table("information_requests")
