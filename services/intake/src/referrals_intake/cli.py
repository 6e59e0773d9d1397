"""`referrals-intake api|consumer|relay|migrate|create-client|keygen`: one process per role."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Annotated

import typer

from referrals_intake.config import IntakeSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def api(host: str = "127.0.0.1", port: int = 8001, workers: int = 1) -> None:
    """Serve the HTTP API (migrates the database first)."""
    import uvicorn

    from referrals_intake.main import setup_observability

    settings = IntakeSettings()
    setup_observability(settings)
    # Migrations in a child process: Alembic's modules stay out of the server's memory.
    subprocess.run([sys.executable, "-m", "referrals_intake.cli", "migrate"], check=True)
    # Each worker process builds its own app (and database pool) from the same settings.
    uvicorn.run(
        "referrals_intake.main:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        proxy_headers=True,
        access_log=False,
    )


@app.command()
def consumer() -> None:
    """Run the lifecycle consumer (documents, language checks, routing)."""
    from referrals_intake.main import migrate, run_consumer, setup_observability

    settings = IntakeSettings()
    setup_observability(settings)
    migrate(settings)
    asyncio.run(run_consumer(settings))


@app.command()
def relay() -> None:
    """Publish intake's outbox to Kafka."""
    from referrals_common.messaging.relay import serve
    from referrals_intake.main import setup_observability

    settings = IntakeSettings()
    setup_observability(settings)
    asyncio.run(
        serve(
            settings.postgres.asyncpg_dsn(),
            settings.kafka.bootstrap_servers,
            client_id="intake-relay",
        )
    )


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from referrals_intake.main import migrate as run

    run(IntakeSettings())


@app.command("create-client")
def create_client(
    name: Annotated[str, typer.Argument(help="the partner front end's name")],
) -> None:
    """Create an API key for a partner front end; the key is printed once, stored hashed."""
    from referrals_intake.clients import create_client as create

    settings = IntakeSettings()
    key = asyncio.run(create(settings, name))
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
