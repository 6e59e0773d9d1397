"""further opinions: the case's opinion round and each further opinion asked

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column(
        "cases", sa.Column("opinion_round", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column(
        "cases",
        sa.Column(
            "further_opinions", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'")
        ),
    )


def downgrade() -> None:
    op.drop_column("cases", "further_opinions")
    op.drop_column("cases", "opinion_round")
