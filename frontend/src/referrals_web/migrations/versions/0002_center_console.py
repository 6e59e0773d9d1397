"""the center console: staff accounts, centers' sealed API keys, staff sign-in codes, the
console's audit of staff actions, and the realm (patient or staff) of a session

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column("realm", sa.String(10), nullable=False, server_default="patient"),
    )
    op.add_column("sessions", sa.Column("staff_id", sa.Uuid(), nullable=True))
    op.create_table(
        "staff",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_staff_center_code", "staff", ["center_code"])
    op.create_table(
        "center_keys",
        sa.Column("center_code", sa.String(63), primary_key=True),
        sa.Column("key_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "staff_login_codes",
        sa.Column("staff_id", sa.Uuid(), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "console_actions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("referral_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
    )
    op.create_index("ix_console_actions_staff_id", "console_actions", ["staff_id"])
    op.create_index("ix_console_actions_referral_id", "console_actions", ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_console_actions_referral_id", "console_actions")
    op.drop_index("ix_console_actions_staff_id", "console_actions")
    op.drop_table("console_actions")
    op.drop_table("staff_login_codes")
    op.drop_table("center_keys")
    op.drop_index("ix_staff_center_code", "staff")
    op.drop_table("staff")
    op.drop_column("sessions", "staff_id")
    op.drop_column("sessions", "realm")
