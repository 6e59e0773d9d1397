"""`referrals-web migrate | serve | purge-sessions | staff … | ops …`: apply the web application's
migrations; serve its pages; delete ended sessions; manage the center console's staff accounts
and the ops screen's operators.

`staff add --email … --center CODE --name …` adds a staff member (or updates the one with that
address). The center's partner API key is read from `REFERRALS_WEB_CENTER_KEY` or standard
input, never from the command line (argv is visible to every user of the machine and kept in
shell history); it may be left out when the center already has a key here. `staff set-key
--center CODE` stores a new key (rotation), `staff disable --email …` stops a member from
signing in, `staff list` shows who may sign in for which center.

`ops add --email … --name …` adds an operator of the ops screen (/ops), who signs in with a code
sent to that address; the operator key the ops screen uses is the server's setting
(`REFERRALS_WEB_OPS_API_KEY`), never an operator's. `ops disable --email …`, `ops list`.

`serve` runs uvicorn through the platform's edge server (header deadline, keep-alive, client
addresses from a trusted proxy); it does not migrate: run `migrate` first (once per release).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
staff_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The center console's staff accounts."
)
app.add_typer(staff_app, name="staff")
ops_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The ops screen's operator accounts."
)
app.add_typer(ops_app, name="ops")

CENTER_KEY_ENV = "REFERRALS_WEB_CENTER_KEY"


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


def _center_key(required: bool) -> str | None:
    """The center's key from the environment, else from standard input (a pipe, or typed
    without echo at a terminal); None when not given and not `required`."""
    key = os.environ.get(CENTER_KEY_ENV, "").strip()
    if key:
        return key
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.readline().strip() or None
    if required:
        return str(typer.prompt("The center's partner API key", hide_input=True)).strip()
    return None


def _with_accounts(work: Callable[[Any, Any], Awaitable[str]]) -> None:
    """Run `work(staff directory, center keys)` on the web application's database."""
    from referrals_common.db import Database
    from referrals_web.config import WebSettings
    from referrals_web.repository import PostgresCenterKeyStore, PostgresStaffDirectory
    from referrals_web.staff import CenterKeys, StaffError

    settings = WebSettings()

    async def run() -> str:
        db = Database(settings.postgres)
        try:
            keys = CenterKeys(
                PostgresCenterKeyStore(db), settings.session_secret.get_secret_value()
            )
            return await work(PostgresStaffDirectory(db), keys)
        finally:
            await db.dispose()

    try:
        typer.echo(asyncio.run(run()))
    except StaffError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@staff_app.command("add")
def staff_add(
    email: str = typer.Option(..., help="The staff member's work e-mail: sign-in codes go there"),
    center: str = typer.Option(..., help="The center's code in the partner registry"),
    name: str = typer.Option(..., help="The name shown on the console and in its audit"),
) -> None:
    """Add a staff member of a center (or update the one with this address)."""
    from referrals_web.staff import add_staff

    key = _center_key(required=False)

    async def work(directory: Any, keys: Any) -> str:
        member, new = await add_staff(
            directory, keys, email=email, name=name, center_code=center, key=key
        )
        what = "added" if new else "updated"
        kept = "; the center's key was stored" if key else ""
        return f"{what} {member.email} ({member.name}) for {member.center_code}{kept}"

    _with_accounts(work)


@staff_app.command("set-key")
def staff_set_key(center: str = typer.Option(..., help="The center's code")) -> None:
    """Store a new partner API key for a center (after partners issued it)."""
    key = _center_key(required=True)

    async def work(directory: Any, keys: Any) -> str:
        await keys.put(center, key or "")
        return f"stored a new key for {center}"

    _with_accounts(work)


@ops_app.command("add")
def ops_add(
    email: str = typer.Option(..., help="The operator's work e-mail: sign-in codes go there"),
    name: str = typer.Option(..., help="The name shown on the ops screen and in its audit"),
) -> None:
    """Add an operator (or update the one with this address, enabled again)."""
    from referrals_web.staff import add_operator

    async def work(directory: Any, keys: Any) -> str:
        member, new = await add_operator(directory, email=email, name=name)
        return f"{'added' if new else 'updated'} operator {member.email} ({member.name})"

    _with_accounts(work)


@ops_app.command("disable")
def ops_disable(email: str = typer.Option(..., help="The operator's e-mail")) -> None:
    """Stop an operator from signing in (their open sessions end at the next request)."""
    from referrals_web.staff import OPS_ROLE, StaffError, disable_staff

    async def work(directory: Any, keys: Any) -> str:
        found = await directory.by_email(email.strip().casefold())
        if found is None or found.role != OPS_ROLE:
            raise StaffError(f"there is no operator {email}")
        member = await disable_staff(directory, email)
        return f"disabled operator {member.email}"

    _with_accounts(work)


@ops_app.command("list")
def ops_list() -> None:
    """Every operator: e-mail, name, and whether they may sign in."""
    from referrals_web.staff import OPS_ROLE

    async def work(directory: Any, keys: Any) -> str:
        found = [m for m in await directory.all() if m.role == OPS_ROLE]
        if not found:
            return "no operators"
        return "\n".join(
            f"{m.email}\t{m.name}\t{'active' if m.active else 'disabled'}" for m in found
        )

    _with_accounts(work)


@staff_app.command("disable")
def staff_disable(email: str = typer.Option(..., help="The staff member's e-mail")) -> None:
    """Stop a staff member from signing in (their open sessions end at the next request)."""
    from referrals_web.staff import disable_staff

    async def work(directory: Any, keys: Any) -> str:
        member = await disable_staff(directory, email)
        return f"disabled {member.email} ({member.center_code})"

    _with_accounts(work)


@staff_app.command("list")
def staff_list() -> None:
    """Every staff account: e-mail, center, name, and whether it may sign in."""

    from referrals_web.staff import CENTER_ROLE

    async def work(directory: Any, keys: Any) -> str:
        members = [m for m in await directory.all() if m.role == CENTER_ROLE]
        if not members:
            return "no staff accounts"
        lines = []
        for m in members:
            key = "key kept" if await keys.get(m.center_code) else "NO KEY"
            state = "active" if m.active else "disabled"
            lines.append(f"{m.email}\t{m.center_code}\t{m.name}\t{state}\t{key}")
        return "\n".join(lines)

    _with_accounts(work)


if __name__ == "__main__":
    app()
