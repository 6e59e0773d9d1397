"""the front end's case list: an index on (client_id, created_at, id)

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_index("cases_client_created", "cases", ["client_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("cases_client_created", table_name="cases")
