"""The process roles every service has, as one Typer app: `api`, `consumer`, `relay`, `migrate`,
and `all`.

In Compose and Kubernetes every role runs as its own process, so each can be scaled and
restarted on its own. On one small machine (`make up`) each service runs as one process instead,
`referrals-<service> all`: its API, consumer, relay and own roles (partners' scheduler,
notifications' sender) side by side on one event loop, stopped together by one SIGTERM
(`referrals_common.shutdown`). The roles and their guarantees are the same either way (the
outbox, the inbox, the claims with SKIP LOCKED); what one process saves is an interpreter and its
libraries per role: about 90 MiB each. If any role ends, the others are stopped and the process
exits, so a process never serves with a role missing.

The roles are the same everywhere, so they are registered here once; a service's `cli.py` adds
only its own commands (creating keys...) and its own long-running roles (`long_running`). The
service's `main` module provides
`MIGRATIONS` (its migrations directory), `run_consumer(settings)` and, for services with an HTTP
API, the factory `app_from_environment()`. Heavy modules (uvicorn, Alembic, the
broker) are imported inside the command that needs them, so each process loads only its own.

Processes without an HTTP API serve their Prometheus metrics on `settings.metrics` when its port
is above 0 (`REFERRALS_METRICS__PORT`): the consumer and the relay here, and a service's own
long-running commands through `cli.start_metrics(settings)`. The API serves `/metrics` itself.

Long-running roles run their event loop on uvloop (`ServiceCli.run`), as uvicorn already does for
the APIs: libuv's loop spends less CPU per socket read, timer and callback than asyncio's, and a
consumer or relay is mostly that. A few seconds after start, what the process holds is frozen out
of the garbage collector's reach (`referrals_common.heap`), so that full collections do not pause
the loop for tens of milliseconds walking it.
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

STOP_GRACE_SECONDS = 60.0
"""How long `all` waits for its roles to finish their work after SIGTERM (a consumer its batch,
translation a document being read) before cancelling them."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-running role's coroutine to its end on uvloop; on asyncio's own loop where
    uvloop is not installed (it is Linux's and macOS's only) or `REFERRALS_EVENT_LOOP=asyncio`
    (to compare the two, or to rule uvloop out when chasing a fault)."""
    if os.environ.get("REFERRALS_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(settled(main))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(settled(main))
    return uvloop.run(settled(main))


async def settled(main: Coroutine[Any, Any, T]) -> T:
    """`main`, with what the process holds once started frozen out of the garbage collector's
    reach a few seconds in (`referrals_common.heap`)."""
    from referrals_common import heap

    heap.turn_on()
    handle = heap.settle_soon()
    try:
        return await main
    finally:
        if handle is not None:
            handle.cancel()


async def run_together(
    roles: dict[str, Coroutine[Any, Any, None]],
    stop: asyncio.Event,
    *,
    grace: float = STOP_GRACE_SECONDS,
) -> None:
    """Run `roles` (name → coroutine) side by side until `stop` is set, or until one of them
    ends: `stop` is then set for the others, and what is still running after `grace` seconds is
    cancelled. A role's exception is raised; so is a role that ended without being asked."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in roles.items()]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    asked = stop.is_set()
    stop.set()
    if pending:
        # A consumer finishes its batch, a relay its round; what does not in time is
        # cancelled (uncommitted work comes again: the inbox and the outbox absorb it).
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    if not asked:
        ended = ", ".join(sorted(t.get_name() for t in done))
        raise RuntimeError(f"{ended} ended without being asked to stop")


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
        self.default_port = default_port
        # The service's own long-running roles beside the consumer and the relay.
        self.own_roles: dict[str, Callable[[Any], Coroutine[Any, Any, None]]] = {}
        self._all: Callable[..., None] = lambda: None
        if default_port is not None:
            self._add_api(default_port)
        self._add_consumer(consumer_help)
        self._add_relay()
        self._add_migrate()
        self._add_all()

    def long_running(
        self, role: str, run_role: Callable[[Any], Coroutine[Any, Any, None]], doc: str
    ) -> None:
        """Add the service's own long-running role: `referrals-<service> <role>` runs
        `run_role(settings)` alone, and `all` runs it beside the others."""

        def command() -> None:
            settings = self.settings()
            self.migrate(settings)
            self.start_metrics(settings)
            run(run_role(settings))

        command.__doc__ = doc
        self.own_roles[role] = run_role
        self._describe_all()
        self.app.command(role)(command)

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
            from referrals_common import heap
            from referrals_common.edge.server import serve

            heap.turn_on()  # the app's lifespan settles each worker's heap once it has started
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

    def _relay(self, settings: Any) -> Coroutine[Any, Any, None]:
        from referrals_common.messaging.relay import serve

        return serve(
            settings.postgres.asyncpg_dsn(),
            settings.kafka,
            client_id=f"{self.service}-relay",
            service=self.service,
        )

    def _add_relay(self) -> None:
        def relay() -> None:
            settings = self.settings()
            self.start_metrics(settings)
            run(self._relay(settings))

        relay.__doc__ = f"Publish {self.service}'s outbox to Kafka."
        self.app.command("relay")(relay)

    def _add_all(self) -> None:
        def start(host: str, port: int) -> None:
            settings = self.settings()
            if settings.migrate_on_start:
                # In a child process, as for the API: Alembic stays out of this one's memory.
                subprocess.run([sys.executable, "-m", f"{self.package}.cli", "migrate"], check=True)
            if self.default_port is None:
                self.start_metrics(settings)  # with an API, /metrics is the API's
            run(self.together(settings, host=host, port=port))

        # `--host` and `--port` only where there is an API to serve: elsewhere they would be
        # options that change nothing.
        if self.default_port is not None:
            default_port = self.default_port

            def all_roles(host: str = "127.0.0.1", port: int = default_port) -> None:
                start(host, port)

        else:

            def all_roles() -> None:  # type: ignore[misc]  # the same command, without an API
                start("", 0)

        self._all = all_roles
        self._describe_all()
        self.app.command("all")(all_roles)

    def _describe_all(self) -> None:
        roles = ["api"] if self.default_port is not None else []
        roles += ["consumer", "relay", *self.own_roles]
        self._all.__doc__ = (
            f"Run every long-running role of {self.service} in this one process: "
            f"{', '.join(roles)} (migrates the database first). For one small machine; "
            "Compose and Kubernetes run each role as its own process."
        )

    async def together(self, settings: Any, *, host: str, port: int) -> None:
        """Run the service's long-running roles on this loop until SIGTERM or SIGINT, or until
        one of them ends: the others are then stopped too, and a role's failure is raised."""
        from referrals_common import shutdown

        stop = shutdown.requested()
        roles: dict[str, Coroutine[Any, Any, None]] = {}
        if self.default_port is not None:
            from referrals_common.edge.server import serve_in_loop

            app = f"{self.package}.main:app_from_environment"
            roles["api"] = serve_in_loop(app, http=settings.http, host=host, port=port, stop=stop)
        roles["consumer"] = self.main().run_consumer(settings)
        roles["relay"] = self._relay(settings)
        roles |= {role: run_role(settings) for role, run_role in self.own_roles.items()}
        await run_together({f"{self.service} {r}": coro for r, coro in roles.items()}, stop)

    def _add_migrate(self) -> None:
        def migrate() -> None:
            """Apply the database migrations."""
            self.migrate(self.settings_factory(), on_start=False)

        self.app.command("migrate")(migrate)
