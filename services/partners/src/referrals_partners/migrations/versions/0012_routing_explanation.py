"""why a center was offered a case: the routing explanation recorded with each referral

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    # Nullable: referrals offered before this revision have no explanation (none is invented).
    op.add_column("referrals", sa.Column("routing", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("referrals", "routing")
