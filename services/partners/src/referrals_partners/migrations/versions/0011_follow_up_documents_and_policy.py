"""documents a center attaches to a follow-up answer; the insurance policy sealed for the
referral a center accepted

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.add_column(
        "follow_up_questions",
        sa.Column("answer_document_ids", sa.JSON(), nullable=False, server_default="[]"),
    )
    op.add_column("referrals", sa.Column("sealed_policy", sa.String(4000), nullable=True))


def downgrade() -> None:
    op.drop_column("referrals", "sealed_policy")
    op.drop_column("follow_up_questions", "answer_document_ids")
