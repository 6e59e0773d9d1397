"""resumable uploads: sessions, their parts, the Idempotency-Keys that created them

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(120), nullable=False),
        sa.Column("uploaded_by", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("translation_of", sa.Uuid(), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("part_size", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(127), nullable=True),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("object_key", sa.String(512), nullable=False),
        sa.Column("storage_upload_id", sa.String(1024), nullable=False),
        sa.Column("center_code", sa.String(63), nullable=True),
        sa.Column("referral_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("refusal", sa.String(64), nullable=True),
        sa.Column("result_document_id", sa.Uuid(), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_upload_sessions_case_id", "upload_sessions", ["case_id"])
    # The sweep finds open uploads past their expiry.
    op.create_index(
        "upload_sessions_open_expiry",
        "upload_sessions",
        ["expires_at"],
        postgresql_where=sa.text("state in ('open', 'completing')"),
    )
    op.create_table(
        "upload_parts",
        sa.Column("upload_id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("etag", sa.String(128), nullable=True),
        _ts("started_at"),
        _ts("received_at", nullable=True),
    )
    op.create_table(
        "upload_keys",
        sa.Column("owner", sa.String(120), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("upload_id", sa.Uuid(), nullable=False),
        _ts("created_at"),
    )


def downgrade() -> None:
    op.drop_table("upload_keys")
    op.drop_table("upload_parts")
    op.drop_index("upload_sessions_open_expiry", table_name="upload_sessions")
    op.drop_index("ix_upload_sessions_case_id", table_name="upload_sessions")
    op.drop_table("upload_sessions")
