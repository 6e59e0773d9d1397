"""centers' keys come from partners: center_clients (keys records issued or registered) is
replaced by center_credentials, the read model of partners' credential events

Revision ID: 0007
Revises: 0006

Records no longer issues or registers center keys (issue 26: partners owns centers and their
credentials). The old rows cannot be carried over: they hold records' own hash of the secret,
and partners announces the digest of keys it issues, so a key registered here before this
revision must be issued again in partners (`POST /v1/ops/centers/<code>/keys`; the runbook's
"Center keys" section). Downgrading restores an empty center_clients table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.drop_table("center_clients")
    op.create_table(
        "center_credentials",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_center_credentials_center_code", "center_credentials", ["center_code"])


def downgrade() -> None:
    op.drop_table("center_credentials")
    op.create_table(
        "center_clients",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("center_code", sa.String(63), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
