"""`referrals-notifications consumer|sender|relay|migrate|keygen`: one process per role."""

from __future__ import annotations

import typer

from referrals_common.service_cli import ServiceCli
from referrals_notifications.config import NotificationsSettings

cli = ServiceCli(
    "notifications",
    NotificationsSettings,
    package="referrals_notifications",
    default_port=None,
    consumer_help="Turn the platform's events into deliveries for the patient and front end.",
    doc=__doc__,
)
app = cli.app


@app.command()
def sender() -> None:
    """Send due deliveries by e-mail, SMS and webhook, with retries."""
    from referrals_notifications.main import run_sender

    settings = cli.settings()
    cli.migrate(settings)
    cli.start_metrics(settings)
    cli.run(run_sender(settings))


@app.command()
def keygen() -> None:
    """Print a new X25519 key pair: the private half for notifications, the public for intake."""
    from referrals_common.crypto import SealedBox

    private, public = SealedBox.generate_keypair_base64()
    typer.echo(f"REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY={private}")
    typer.echo(f"REFERRALS_INTAKE_NOTIFICATIONS_PUBLIC_KEY={public}")


if __name__ == "__main__":
    app()
