"""the patient's follow-up questions a center may upload documents to answer

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "follow_up_questions",
        sa.Column("question_id", sa.Uuid(), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_follow_up_questions_referral_id", "follow_up_questions", ["referral_id"])


def downgrade() -> None:
    op.drop_table("follow_up_questions")
