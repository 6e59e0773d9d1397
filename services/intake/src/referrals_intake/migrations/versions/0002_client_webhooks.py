"""a front end may take the case's updates by webhook (then a case needs no e-mail or phone)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "api_clients",
        sa.Column("takes_webhooks", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("api_clients", "takes_webhooks")
