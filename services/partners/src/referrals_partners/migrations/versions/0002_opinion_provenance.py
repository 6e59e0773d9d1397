"""which referral uploaded each document (a center delivers only its own opinion)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("case_documents", sa.Column("referral_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("case_documents", "referral_id")
