"""the centers proposed to a patient who asked to choose, and by when

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("routing_cases", sa.Column("proposal", sa.JSON(), nullable=True))
    op.add_column(
        "routing_cases", sa.Column("choose_by", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("routing_cases", "choose_by")
    op.drop_column("routing_cases", "proposal")
