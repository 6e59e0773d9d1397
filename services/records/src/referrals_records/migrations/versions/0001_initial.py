"""records first schema

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
        "access_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=120), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("document_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_access_audit_case_id"), "access_audit", ["case_id"], unique=False)
    op.create_table(
        "case_states",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_table(
        "center_clients",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("center_code", sa.String(length=63), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "center_referrals",
        sa.Column("referral_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("center_code", sa.String(length=63), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
    )
    op.create_index(
        op.f("ix_center_referrals_case_id"), "center_referrals", ["case_id"], unique=False
    )
    op.create_index(
        op.f("ix_center_referrals_center_code"), "center_referrals", ["center_code"], unique=False
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("media_type", sa.String(length=127), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("translation_of", sa.Uuid(), nullable=True),
        sa.Column("uploaded_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "documents_case_sha256",
        "documents",
        ["case_id", "sha256"],
        unique=True,
        postgresql_where=sa.text("deleted_at is null"),
    )
    op.create_index(op.f("ix_documents_case_id"), "documents", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_documents_case_id"), table_name="documents")
    op.drop_index(
        "documents_case_sha256",
        table_name="documents",
        postgresql_where=sa.text("deleted_at is null"),
    )
    op.drop_table("documents")
    op.drop_index(op.f("ix_center_referrals_center_code"), table_name="center_referrals")
    op.drop_index(op.f("ix_center_referrals_case_id"), table_name="center_referrals")
    op.drop_table("center_referrals")
    op.drop_table("center_clients")
    op.drop_table("case_states")
    op.drop_index(op.f("ix_access_audit_case_id"), table_name="access_audit")
    op.drop_table("access_audit")
    drop_messaging_schema(op)
