"""when a case entered its state, on the case row: a transition reads it there, not as the case's
last timeline entry (a statement per transition); the rows before take their last transition's
time (their creation when they never moved)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.add_column("cases", sa.Column("status_since", sa.TIMESTAMP(timezone=True), nullable=True))
    op.execute(
        "UPDATE cases c SET status_since = coalesce("
        " (SELECT t.at FROM case_timeline t"
        "  WHERE t.case_id = c.id AND t.from_status IS DISTINCT FROM t.to_status"
        "  ORDER BY t.id DESC LIMIT 1),"
        " c.created_at)"
    )


def downgrade() -> None:
    op.drop_column("cases", "status_since")
