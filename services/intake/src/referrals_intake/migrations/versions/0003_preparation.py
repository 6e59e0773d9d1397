"""the preparation checklist: family history, current medications with doses, allergies

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("cases", sa.Column("preparation", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "preparation")
