"""`referrals-records api|consumer|relay|migrate|create-center-key`: one process per role."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Annotated

import typer

from referrals_records.config import RecordsSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def api(host: str = "127.0.0.1", port: int = 8002, workers: int = 1) -> None:
    """Serve the HTTP API (migrates the database first)."""
    import uvicorn

    from referrals_records.main import setup_observability

    settings = RecordsSettings()
    setup_observability(settings)
    # Migrations in a child process: Alembic's modules stay out of the server's memory.
    subprocess.run([sys.executable, "-m", "referrals_records.cli", "migrate"], check=True)
    uvicorn.run(
        "referrals_records.main:app_from_environment",
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
    """Follow case states (intake) and referrals offered to centers (partners)."""
    from referrals_records.main import migrate, run_consumer, setup_observability

    settings = RecordsSettings()
    setup_observability(settings)
    migrate(settings)
    asyncio.run(run_consumer(settings))


@app.command()
def relay() -> None:
    """Publish records' outbox to Kafka."""
    from referrals_common.messaging.relay import serve
    from referrals_records.main import setup_observability

    settings = RecordsSettings()
    setup_observability(settings)
    asyncio.run(
        serve(
            settings.postgres.asyncpg_dsn(),
            settings.kafka.bootstrap_servers,
            client_id="records-relay",
        )
    )


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from referrals_records.main import migrate as run

    run(RecordsSettings())


@app.command("create-center-key")
def create_center_key(center: Annotated[str, typer.Argument(help="the center's code")]) -> None:
    """Create an API key a cancer center uses to download its referrals' documents."""
    from referrals_records.clients import create_center_key as create

    key = asyncio.run(create(RecordsSettings(), center))
    typer.echo(f"API key for center {center} (shown once, keep it secret):\n{key}")


if __name__ == "__main__":
    app()
