"""the centers' loads read referrals by when they were offered: an index on offered_at

Routing counts each center's referrals of the last days (`LOAD_WINDOW`) for every ready case;
without an index that count scanned every referral ever made, a read that grew with the table.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_index("referrals_offered_at", "referrals", ["offered_at"])


def downgrade() -> None:
    op.drop_index("referrals_offered_at", table_name="referrals")
