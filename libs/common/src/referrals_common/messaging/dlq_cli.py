"""`referrals-dlq list|replay TOPIC`: inspect dead letters and send them back to their topic.

Replaying is safe: consumers are idempotent, so a dead letter whose event was applied meanwhile
changes nothing the second time. The connection is the services' own: `REFERRALS_KAFKA__*`
(bootstrap servers, security protocol, SASL user and password, CA), `--bootstrap` overriding
the servers.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from referrals_common.messaging.dlq import DeadLetter, read_dead_letters, replay
from referrals_common.messaging.kafka import kafka_from_environment

__all__ = ["DeadLetter", "app", "read_dead_letters", "replay"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()

Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (default: REFERRALS_KAFKA__BOOTSTRAP_SERVERS)"),
]


@app.command("list")
def list_(topic: str, bootstrap: Bootstrap = None) -> None:
    """List the dead letters of TOPIC (or of TOPIC.dlq named directly)."""
    letters = asyncio.run(read_dead_letters(kafka_from_environment(bootstrap), topic))
    table = Table(title=f"{len(letters)} dead letter(s) of {topic}")
    for col in ("partition", "offset", "event id", "consumer", "error type", "error", "failed at"):
        table.add_column(col)
    for d in letters:
        table.add_row(
            str(d.partition),
            str(d.offset),
            d.event_id,
            d.header("dlq.consumer"),
            d.header("dlq.error_type"),
            d.header("dlq.error")[:80],
            d.header("dlq.failed_at"),
        )
    console.print(table)


@app.command("replay")
def replay_(
    topic: str,
    bootstrap: Bootstrap = None,
    offset: Annotated[list[int] | None, typer.Option(help="only these DLQ offsets")] = None,
    partition: Annotated[int | None, typer.Option(help="only this DLQ partition")] = None,
) -> None:
    """Send TOPIC's dead letters (all, or the chosen offsets) back to their original topic."""
    kafka = kafka_from_environment(bootstrap)
    letters = asyncio.run(read_dead_letters(kafka, topic))
    if partition is not None:
        letters = [d for d in letters if d.partition == partition]
    if offset:
        letters = [d for d in letters if d.offset in set(offset)]
    count = asyncio.run(replay(kafka, letters))
    console.print(f"replayed {count} dead letter(s)")


if __name__ == "__main__":
    app()
