"""`referrals-intake api|consumer|relay|migrate|create-client|keygen`: one process per role."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from referrals_common.service_cli import ServiceCli
from referrals_intake.config import IntakeSettings

cli = ServiceCli(
    "intake",
    IntakeSettings,
    package="referrals_intake",
    default_port=8001,
    consumer_help="Run the lifecycle consumer (documents, language checks, routing).",
    doc=__doc__,
)
app = cli.app


@app.command("create-client")
def create_client(
    name: Annotated[str, typer.Argument(help="the partner front end's name")],
    webhooks: Annotated[
        bool,
        typer.Option(
            "--webhooks",
            help="the front end takes its cases' updates by webhook (set its endpoint in "
            "notifications' REFERRALS_NOTIFICATIONS_FRONT_END_WEBHOOKS): its cases may then "
            "have no e-mail address or phone number",
        ),
    ] = False,
) -> None:
    """Create an API key for a partner front end; the key is printed once, stored hashed."""
    from referrals_intake.clients import create_client as create

    settings = IntakeSettings()
    key = asyncio.run(create(settings, name, takes_webhooks=webhooks))
    typer.echo(f"API key for {name} (shown once, keep it secret):\n{key}")


@app.command()
def keygen() -> None:
    """Print a new Ed25519 signing key (PEM) and a field encryption key, for the settings."""
    from referrals_common.auth.case_tokens import generate_private_key_pem
    from referrals_common.crypto import FieldCipher

    typer.echo("REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM=")
    typer.echo(generate_private_key_pem().decode())
    typer.echo(f"REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY={FieldCipher.generate_key_base64()}")


if __name__ == "__main__":
    app()
