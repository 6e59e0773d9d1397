"""who pays for the opinion (routing offers only centers that accept the payer)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.add_column("cases", sa.Column("payer", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "payer")
