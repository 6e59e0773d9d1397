"""What every service's bootstrap does the same way: logging and tracing for a process, its
database migrations, and the FastAPI application around its router.

A service's `main.py` keeps only what is its own: its `Runtime` (built from settings) and its
processes' entry points. The HTTP app made here installs RFC 9457 problem handlers, a `/health`
endpoint outside the schema and the OpenTelemetry instrumentation, and builds the runtime in the
app's lifespan (nothing connects at import); a runtime passed in (tests) is used as is and left
open for its owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from referrals_common.api.problems import install_problem_handlers
from referrals_common.settings import ServiceSettings
from referrals_common.telemetry import configure_logging, configure_telemetry, instrument_fastapi


def setup_observability(service: str, settings: ServiceSettings) -> None:
    """Structured logs and traces for one process of `service`."""
    configure_logging(service, level=settings.telemetry.log_level, json=settings.telemetry.log_json)
    configure_telemetry(service)


def migrate(settings: ServiceSettings, migrations_dir: Path) -> None:
    """Apply a service's migrations to its database."""
    from referrals_common.migrations import upgrade  # Alembic only where migrations run

    upgrade(settings.postgres.dsn.get_secret_value(), migrations_dir)


def create_service_app(
    *,
    title: str,
    description: str,
    router: APIRouter,
    build_runtime: Callable[[], Any],
    runtime: Any | None = None,
) -> FastAPI:
    """A service's HTTP API; `app.state.runtime` holds the runtime its routes use."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime()
        app.state.runtime = rt
        try:
            yield
        finally:
            if runtime is None:
                await rt.db.dispose()

    app = FastAPI(title=title, version="1.0.0", description=description, lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(router)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    instrument_fastapi(app)
    return app
