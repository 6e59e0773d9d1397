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


@app.command()
def snapshot(
    directory: Annotated[
        Path, typer.Argument(help="The contracts directory; the snapshot goes to its snapshot/")
    ],
) -> None:
    """Record the current event schemas as the released ones (DIRECTORY/snapshot/), which the
    compatibility test compares every later change with. Refused when the current schemas
    break the recorded ones: that change needs a new event type version instead."""
    from .compatibility import SNAPSHOT_DIR, breaking_changes, iter_schema_files, read_schemas
    from .schema import json_schemas

    target = directory / SNAPSHOT_DIR
    current = json_schemas()
    problems = breaking_changes(read_schemas(target), current)
    if problems:
        typer.echo("incompatible with the released schemas:\n  " + "\n  ".join(problems))
        raise typer.Exit(1)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.schema.json"):
        stale.unlink()
    written = 0
    for name, text in iter_schema_files(current):
        (target / name).write_text(text, encoding="utf-8")
        written += 1
    typer.echo(f"recorded {written} schemas under {target}")


if __name__ == "__main__":
    app()
