"""`referrals-partners api|consumer|scheduler|relay|all|migrate|create-center-key|create-ops-key|
load-seed`: one process per role (or `all` of them in one), and the operator's commands."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from referrals_common.service_cli import ServiceCli
from referrals_partners.config import PartnersSettings

cli = ServiceCli(
    "partners",
    PartnersSettings,
    package="referrals_partners",
    default_port=8004,
    consumer_help="Route ready cases (intake) and follow stored documents (records).",
    doc=__doc__,
)
app = cli.app


async def _scheduler(settings: PartnersSettings) -> None:
    from referrals_partners.main import run_scheduler

    await run_scheduler(settings)


cli.long_running(
    "scheduler",
    _scheduler,
    "Expire offers past their answer deadline (re-routing them) and deliver webhooks.",
)


async def _issue(settings: PartnersSettings, role: str, name: str, center: str | None) -> str:
    from referrals_common.db import Database
    from referrals_partners.centers import issue_key
    from referrals_partners.repository import PartnersRepository

    db = Database(settings.postgres)
    try:
        async with db.unit_of_work() as uow:
            if (
                center is not None
                and await PartnersRepository(uow.session).center_row(center) is None
            ):
                raise typer.BadParameter(f"there is no center {center} in the registry")
            key = await issue_key(
                uow,
                settings.api_key_pepper.get_secret_value().encode(),
                role=role,
                name=name,
                center_code=center,
            )
            await uow.commit()
        return key
    finally:
        await db.dispose()


@app.command("create-center-key")
def create_center_key(center: Annotated[str, typer.Argument(help="the center's code")]) -> None:
    """Create an API key for a cancer center (printed once, stored hashed)."""
    key = asyncio.run(_issue(PartnersSettings(), "center", center, center))
    typer.echo(f"API key for center {center} (shown once, keep it secret):\n{key}")


@app.command("create-ops-key")
def create_ops_key(name: Annotated[str, typer.Argument(help="who the key is for")]) -> None:
    """Create an operator API key for the registry and routing endpoints."""
    key = asyncio.run(_issue(PartnersSettings(), "ops", name, None))
    typer.echo(f"Operator API key for {name} (shown once, keep it secret):\n{key}")


@app.command("load-seed")
def load_seed(
    path: Annotated[str, typer.Argument(help="seed file (default: sample)")] = "",
) -> None:
    """Add the seed's centers the database does not have yet (never overwrites ops' changes)."""
    from referrals_common.db import Database
    from referrals_partners.centers import load_seed as load

    settings = PartnersSettings()
    cli.migrate(settings)

    async def run() -> None:
        db = Database(settings.postgres)
        try:
            registry = await load(db, path or settings.seed_file or None)
            typer.echo(f"seed v{registry.version}: {len(registry.centers)} centers")
        finally:
            await db.dispose()

    asyncio.run(run())


@app.command()
def keygen() -> None:
    """Print a new X25519 key pair: the private half for partners (it opens the insurance
    policies intake seals for the center that accepted), the public for intake."""
    from referrals_common.crypto import SealedBox

    private, public = SealedBox.generate_keypair_base64()
    typer.echo(f"REFERRALS_PARTNERS_POLICY_PRIVATE_KEY={private}")
    typer.echo(f"REFERRALS_INTAKE_PARTNERS_PUBLIC_KEY={public}")


if __name__ == "__main__":
    app()
