"""a new timeline entry notifies `intake_case_events` (on commit), waking the case's streams

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_case_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('intake_case_events', NEW.case_id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER case_timeline_notify AFTER INSERT ON case_timeline "
        "FOR EACH ROW EXECUTE FUNCTION notify_case_event()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER case_timeline_notify ON case_timeline")
    op.execute("DROP FUNCTION notify_case_event()")
