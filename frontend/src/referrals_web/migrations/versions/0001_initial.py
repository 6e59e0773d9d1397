"""sessions, one-time sign-in codes and the cases this front end opened

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("case_token_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("data_sealed", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "login_codes",
        sa.Column("case_id", sa.Uuid(), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "known_cases",
        sa.Column("case_id", sa.Uuid(), primary_key=True),
        sa.Column("reference", sa.String(9), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_known_cases_reference", "known_cases", ["reference"])


def downgrade() -> None:
    op.drop_index("ix_known_cases_reference", "known_cases")
    op.drop_table("known_cases")
    op.drop_table("login_codes")
    op.drop_index("ix_sessions_expires_at", "sessions")
    op.drop_table("sessions")
