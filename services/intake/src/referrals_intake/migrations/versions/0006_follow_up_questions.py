"""follow-up questions on the opinion, and which referral gave it, when

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("cases", sa.Column("opinion_referral_id", sa.Uuid(), nullable=True))
    op.add_column("cases", sa.Column("opinion_center_code", sa.String(63), nullable=True))
    op.add_column(
        "cases", sa.Column("opinion_delivered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "follow_up_questions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("question", sa.String(2000), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(1000), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("follow_up_questions_case", "follow_up_questions", ["case_id", "asked_at"])


def downgrade() -> None:
    op.drop_table("follow_up_questions")
    op.drop_column("cases", "opinion_delivered_at")
    op.drop_column("cases", "opinion_center_code")
    op.drop_column("cases", "opinion_referral_id")
