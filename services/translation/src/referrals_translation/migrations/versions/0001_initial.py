"""translation first schema

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
        "cases",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("acceptable", sa.JSON(), nullable=True),
        sa.Column("destination", sa.JSON(), nullable=True),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "document_checks",
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("media_type", sa.String(length=127), nullable=False),
        sa.Column("translation_of", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("main_language", sa.String(length=2), nullable=True),
        sa.Column("languages", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("unreadable_reason", sa.String(length=32), nullable=True),
        sa.Column("unreadable_detail", sa.String(length=500), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(length=24), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("document_id"),
    )
    op.create_index(
        op.f("ix_document_checks_case_id"), "document_checks", ["case_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_document_checks_case_id"), table_name="document_checks")
    op.drop_table("document_checks")
    op.drop_table("cases")
    drop_messaging_schema(op)
