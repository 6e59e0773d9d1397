"""The process roles every service has, as one Typer app: `api`, `consumer`, `relay`, `migrate`.

Every service runs as separate processes (one per role) so each can be scaled and restarted on its
own. The roles are the same everywhere, so they are registered here once; a service's `cli.py`
adds only its own commands (creating keys, schedulers...). The service's `main` module provides
`MIGRATIONS` (its migrations directory), `run_consumer(settings)` and, for services with an HTTP
API, the factory `app_from_environment()`. Heavy modules (uvicorn, Alembic, the
broker) are imported inside the command that needs them, so each process loads only its own.

Processes without an HTTP API serve their Prometheus metrics on `settings.metrics` when its port
is above 0 (`REFERRALS_METRICS__PORT`): the consumer and the relay here, and a service's own
long-running commands through `cli.start_metrics(settings)`. The API serves `/metrics` itself.

Long-running roles run their event loop on uvloop (`ServiceCli.run`), as uvicorn already does for
the APIs: libuv's loop spends less CPU per socket read, timer and callback than asyncio's, and a
consumer or relay is mostly that.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar

import typer

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-running role's coroutine to its end on uvloop; on asyncio's own loop where
    uvloop is not installed (it is Linux's and macOS's only) or `REFERRALS_EVENT_LOOP=asyncio`
    (to compare the two, or to rule uvloop out when chasing a fault)."""
    if os.environ.get("REFERRALS_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(main)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main)
    return uvloop.run(main)


class ServiceCli:
    """Builds a service's command line from its settings class and its `main` module name."""

    def __init__(
        self,
        service: str,
        settings_factory: Callable[[], Any],
        *,
        package: str,
        default_port: int | None,
        consumer_help: str,
        doc: str | None = None,
    ) -> None:
        self.service = service
        self.settings_factory = settings_factory
        self.package = package
        self.app = typer.Typer(add_completion=False, no_args_is_help=True, help=doc)
        self.metrics_server: Any = None
        if default_port is not None:
            self._add_api(default_port)
        self._add_consumer(consumer_help)
        self._add_relay()
        self._add_migrate()

    @staticmethod
    def run(main: Coroutine[Any, Any, T]) -> T:
        """Run a long-running role's coroutine on uvloop (see the module doc)."""
        return run(main)

    def main(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.main")

    def settings(self) -> Any:
        """The service's settings, with logging and tracing set up for this process."""
        from referrals_common.service_app import setup_observability

        settings = self.settings_factory()
        setup_observability(self.service, settings)
        return settings

    def start_metrics(self, settings: Any) -> None:
        """Serve this process's metrics on `settings.metrics` (nothing when its port is 0)."""
        from referrals_common.metrics import start_metrics_server

        if self.metrics_server is None:
            try:
                self.metrics_server = start_metrics_server(settings.metrics)
            except OSError as exc:  # the port is taken: say so in one line, do not start
                typer.echo(f"referrals-{self.service}: {exc.strerror}", err=True)
                raise typer.Exit(1) from exc

    def migrate(self, settings: Any, *, on_start: bool = True) -> None:
        """Apply the service's migrations (Alembic is imported only here). A long-running role
        does so as it starts unless `migrate_on_start` is off (`REFERRALS_MIGRATE_ON_START=false`:
        a deployment that runs `migrate` once, as a job, before starting the roles)."""
        from referrals_common.service_app import migrate

        if on_start and not getattr(settings, "migrate_on_start", True):
            return
        migrate(settings, self.main().MIGRATIONS)

    def _add_api(self, default_port: int) -> None:
        def api(host: str = "127.0.0.1", port: int = default_port, workers: int = 1) -> None:
            """Serve the HTTP API (migrates the database first)."""
            from referrals_common.edge.server import serve

            settings = self.settings()
            if settings.migrate_on_start:
                # In a child process: Alembic's modules stay out of the server's memory.
                subprocess.run([sys.executable, "-m", f"{self.package}.cli", "migrate"], check=True)
            # Each worker process builds its own app (and database pool) from the same settings;
            # uvicorn with a deadline for headers (slowloris), see referrals_common.edge.server.
            serve(
                f"{self.package}.main:app_from_environment",
                http=settings.http,
                host=host,
                port=port,
                workers=workers,
            )

        self.app.command("api")(api)

    def _add_consumer(self, consumer_help: str) -> None:
        def consumer() -> None:
            settings = self.settings()
            self.migrate(settings)
            self.start_metrics(settings)
            run(self.main().run_consumer(settings))

        consumer.__doc__ = consumer_help
        self.app.command("consumer")(consumer)

    def _add_relay(self) -> None:
        def relay() -> None:
            from referrals_common.messaging.relay import serve

            settings = self.settings()
            self.start_metrics(settings)
            run(
                serve(
                    settings.postgres.asyncpg_dsn(),
                    settings.kafka,
                    client_id=f"{self.service}-relay",
                    service=self.service,
                )
            )

        relay.__doc__ = f"Publish {self.service}'s outbox to Kafka."
        self.app.command("relay")(relay)

    def _add_migrate(self) -> None:
        def migrate() -> None:
            """Apply the database migrations."""
            self.migrate(self.settings_factory(), on_start=False)

        self.app.command("migrate")(migrate)
