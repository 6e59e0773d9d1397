"""`referrals-records api|consumer|relay|migrate|create-center-key`: one process per role."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from referrals_common.service_cli import ServiceCli
from referrals_records.config import RecordsSettings

cli = ServiceCli(
    "records",
    RecordsSettings,
    package="referrals_records",
    default_port=8002,
    consumer_help="Follow case states (intake) and referrals offered to centers (partners).",
    doc=__doc__,
)
app = cli.app


@app.command("create-center-key")
def create_center_key(
    center: Annotated[str, typer.Argument(help="the center's code")],
    key: Annotated[
        str | None,
        typer.Option(help="register the key partners issued (one key per center), not a new one"),
    ] = None,
) -> None:
    """Create (or register) the API key a cancer center uses for its referrals' documents."""
    from referrals_records.clients import create_center_key as create

    shown = asyncio.run(create(RecordsSettings(), center, key))
    if key is None:
        typer.echo(f"API key for center {center} (shown once, keep it secret):\n{shown}")
    else:
        typer.echo(f"registered the given key for center {center}")


if __name__ == "__main__":
    app()
