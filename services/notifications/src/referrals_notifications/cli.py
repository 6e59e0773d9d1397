"""`referrals-notifications consumer|sender|relay|all|migrate|keygen`: one process per role, or
`all` of them in one."""

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


async def _sender(settings: NotificationsSettings) -> None:
    from referrals_notifications.main import run_sender

    await run_sender(settings)


cli.long_running("sender", _sender, "Send due deliveries by e-mail, SMS and webhook, with retries.")


@app.command()
def keygen() -> None:
    """Print a new X25519 key pair: the private half for notifications, the public for intake."""
    from referrals_common.crypto import SealedBox

    private, public = SealedBox.generate_keypair_base64()
    typer.echo(f"REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY={private}")
    typer.echo(f"REFERRALS_INTAKE_NOTIFICATIONS_PUBLIC_KEY={public}")


if __name__ == "__main__":
    app()
