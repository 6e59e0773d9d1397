"""the opinion's outcome as the center recorded it

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("cases", sa.Column("opinion_outcome", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "opinion_outcome")
