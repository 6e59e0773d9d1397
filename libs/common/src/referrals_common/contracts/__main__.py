"""`python -m referrals_common.contracts export <dir>`: write the JSON Schemas and AsyncAPI doc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="The platform's event contracts.", add_completion=False, no_args_is_help=True
)


@app.callback()
def main() -> None:
    """The platform's event contracts (CloudEvents payloads on Kafka)."""


@app.command()
def export(
    directory: Annotated[
        Path, typer.Argument(help="Where to write schemas/*.schema.json and asyncapi.json")
    ],
) -> None:
    """Write one JSON Schema per event type and the AsyncAPI document into DIRECTORY."""
    from .schema import export as export_contracts

    written = export_contracts(directory)
    typer.echo(f"wrote {len(written)} files under {directory}")


if __name__ == "__main__":
    app()
