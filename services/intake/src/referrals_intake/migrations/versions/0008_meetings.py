"""the consultation meetings centers offer, as the patient sees them

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("place", postgresql.JSONB(), nullable=False),
        sa.Column("slots", postgresql.JSONB(), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("booked_slot", postgresql.JSONB(), nullable=True),
        sa.Column("patient_time_zone", sa.String(64), nullable=True),
        sa.Column("requested_slot_id", sa.Uuid(), nullable=True),
        sa.Column("cancelled_by", sa.String(16), nullable=True),
        sa.Column("cancel_reason", sa.String(1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("meetings_case", "meetings", ["case_id", "created_at"])


def downgrade() -> None:
    op.drop_table("meetings")
