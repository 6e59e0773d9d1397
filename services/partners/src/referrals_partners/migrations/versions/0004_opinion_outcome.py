"""the opinion's outcome in structured fields (diagnosis, stage, plan, tests, trials)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("referrals", sa.Column("outcome", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("referrals", "outcome")
