"""the sender woken when a delivery is planned (LISTEN/NOTIFY)

Revision ID: 0005
Revises: 0004
"""

from alembic import op

CHANNEL = "notifications_due"
"""The channel the sender listens to (`referrals_notifications.sender.CHANNEL`)."""

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # Statement-level: one notification per inserting statement, sent when its transaction
    # commits (none if it rolls back), whatever rows it wrote.
    op.execute(
        f"""
        create function notifications_due_notify() returns trigger language plpgsql as $$
        begin
          perform pg_notify('{CHANNEL}', '');
          return null;
        end $$
        """
    )
    op.execute(
        "create trigger deliveries_due_notify after insert on deliveries "
        "for each statement execute function notifications_due_notify()"
    )


def downgrade() -> None:
    op.execute("drop trigger deliveries_due_notify on deliveries")
    op.execute("drop function notifications_due_notify()")
