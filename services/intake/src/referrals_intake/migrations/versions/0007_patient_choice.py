"""the patient's wish to choose the center, and the centers proposed

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column(
        "cases",
        sa.Column(
            "patient_chooses_center", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.add_column("cases", sa.Column("center_proposal", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "center_proposal")
    op.drop_column("cases", "patient_chooses_center")
