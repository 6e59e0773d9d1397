"""a center may upload only once it accepted, and every document says which center uploaded it
for which referral

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "center_referrals", sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("documents", sa.Column("center_code", sa.String(63), nullable=True))
    op.add_column("documents", sa.Column("referral_id", sa.Uuid(), nullable=True))
    # Opinions stored before this revision came from the center of the case's only referral
    # that could upload then; name it where there is exactly one, so deliveries keep working.
    op.execute(
        """
        update documents d set center_code = r.center_code, referral_id = r.referral_id
        from center_referrals r
        where d.kind = 'opinion' and d.referral_id is null and r.case_id = d.case_id
          and d.uploaded_by = 'center:' || r.center_code
          and (select count(*) from center_referrals r2
               where r2.case_id = d.case_id and r2.center_code = r.center_code) = 1
        """
    )


def downgrade() -> None:
    op.drop_column("documents", "referral_id")
    op.drop_column("documents", "center_code")
    op.drop_column("center_referrals", "accepted_at")
