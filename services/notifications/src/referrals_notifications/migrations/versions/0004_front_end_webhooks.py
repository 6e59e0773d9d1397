"""front ends' webhook subscriptions, from intake's webhook.subscription_changed events

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "front_end_webhooks",
        sa.Column("front_end", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("sealed_secret", sa.String(length=4000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("front_end"),
    )


def downgrade() -> None:
    op.drop_table("front_end_webhooks")
