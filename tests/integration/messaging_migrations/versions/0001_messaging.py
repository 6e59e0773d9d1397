"""Outbox and inbox, plus two tables standing in for a service's state and a consumer's effect.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from referrals_common.messaging.schema import create_messaging_schema, drop_messaging_schema

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_schema(op)
    op.create_table(
        "case_state",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("status", sa.String(40), nullable=False),
    )
    op.create_table(
        "applied_effect",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("case_id", sa.Uuid, nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("applied_effect")
    op.drop_table("case_state")
    drop_messaging_schema(op)
