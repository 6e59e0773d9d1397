"""`referrals-web migrate | serve | purge-sessions`: apply the web application's migrations;
serve its pages; delete ended sessions.

`serve` runs uvicorn through the platform's edge server (header deadline, keep-alive, client
addresses from a trusted proxy); it does not migrate: run `migrate` first (once per release).
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from referrals_common.migrations import upgrade
    from referrals_web.config import WebSettings
    from referrals_web.main import MIGRATIONS

    settings = WebSettings()
    upgrade(settings.postgres.dsn.get_secret_value(), MIGRATIONS)


@app.command("purge-sessions")
def purge_sessions() -> None:
    """Delete the sessions that ended (run it now and then, e.g. from a cron job)."""
    import asyncio

    from referrals_common.db import Database
    from referrals_web.config import WebSettings
    from referrals_web.models import utcnow
    from referrals_web.repository import PostgresSessionStore

    async def purge() -> int:
        db = Database(WebSettings().postgres)
        try:
            return await PostgresSessionStore(db).purge_expired(utcnow())
        finally:
            await db.dispose()

    typer.echo(f"{asyncio.run(purge())} ended sessions deleted")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8010, workers: int = 1) -> None:
    """Serve the pages."""
    from referrals_common.edge.server import serve as serve_app
    from referrals_common.service_app import setup_observability
    from referrals_web.config import WebSettings

    settings = WebSettings()
    setup_observability("web", settings)
    serve_app(
        "referrals_web.main:app_from_environment",
        http=settings.http,
        host=host,
        port=port,
        workers=workers,
    )


if __name__ == "__main__":
    app()
