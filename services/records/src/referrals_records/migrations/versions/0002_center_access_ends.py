"""a center's access to a case's documents ends when its referral is declined, expires, or the
case is withdrawn

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "center_referrals", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("center_referrals", sa.Column("closed_reason", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("center_referrals", "closed_reason")
    op.drop_column("center_referrals", "closed_at")
