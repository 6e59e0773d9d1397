"""the ops screen: operators are staff accounts with the role `ops` (a center's staff keep the
role `center`), and what each operator did there

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "staff", sa.Column("role", sa.String(10), nullable=False, server_default="center")
    )
    op.create_table(
        "ops_actions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
    )
    op.create_index("ix_ops_actions_staff_id", "ops_actions", ["staff_id"])


def downgrade() -> None:
    op.drop_table("ops_actions")
    op.drop_column("staff", "role")
