"""patient texts from codes: a timeline entry's parameters and next-step code, a document check's
acceptable languages and unreadable reason (rendered in the case's language when read)

Rows written before keep only their English text (params null), which the API shows as it is.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.add_column("case_timeline", sa.Column("params", JSONB, nullable=True))
    op.add_column("case_timeline", sa.Column("next_step_code", sa.String(40), nullable=True))
    op.add_column("case_documents", sa.Column("acceptable_languages", JSONB, nullable=True))
    op.add_column("case_documents", sa.Column("unreadable_reason", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("case_documents", "unreadable_reason")
    op.drop_column("case_documents", "acceptable_languages")
    op.drop_column("case_timeline", "next_step_code")
    op.drop_column("case_timeline", "params")
