"""How an API process serves HTTP: uvicorn, with a deadline for a request's headers.

uvicorn (0.54) times out only idle keep-alive connections: every byte received cancels that
timer, and nothing bounds how long a request's line and headers may take, so a client sending a
header byte every few seconds (slowloris) holds a connection, its buffers and a file descriptor
for as long as it likes. Neither uvicorn's settings (`timeout_keep_alive`,
`h11_max_incomplete_event_size`, which bounds the size, not the time) nor a middleware (the app
sees a request only once its headers are complete) can fix that, so `HeaderDeadlineProtocol`
adds the one missing timer to uvicorn's own httptools protocol: armed when a connection opens
and when a request's first byte arrives, disarmed when its headers are complete; when it fires,
the connection gets a 408 problem and is closed. Everything else is uvicorn's (configured in
`serve`). Slow *bodies* are the edge middleware's business (`body_idle_timeout_seconds`,
`body_min_bytes_per_second`), as the app is the one waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from referrals_common.api.problems import PROBLEM_MEDIA_TYPE, problem_type
from referrals_common.settings import HttpSettings


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "type": problem_type("request-timeout"),
            "title": "Request Timeout",
            "status": 408,
            "detail": f"The request's headers did not arrive within {seconds:g} seconds.",
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        f"content-type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    return head + body


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request line and headers take
    longer than `header_timeout` seconds (from the connection's opening, or from the first byte
    of a later request on it) with a 408 problem."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.header_timeout, self._headers_too_slow
            )

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Nothing of ours is being written: the client may learn why.
            self.transport.write(_timeout_response(self.header_timeout))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()


WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker process to answer its health check before
killing it and starting another. uvicorn's 5 s counts from the worker's very start, before it
answers anything: a new worker first imports the protocol's modules (this package, FastAPI,
pydantic: about a CPU-second), which on a busy machine of two cores takes longer than 5 s, so
workers were killed while starting, again and again (seen under benchmark load: one of intake's
two workers started over every few seconds, served nothing and burnt a core doing so). A worker
that is really hung is still replaced, a minute later."""


def protocol(http: HttpSettings) -> functools.partial[HeaderDeadlineProtocol]:
    """The protocol factory uvicorn builds each connection with (a partial of a module-level
    class: it pickles, for uvicorn's worker processes)."""
    return functools.partial(HeaderDeadlineProtocol, header_timeout=http.header_timeout_seconds)


def serve(
    app: str,
    *,
    http: HttpSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    factory: bool = True,
) -> None:
    """Serve the app factory `app` (`package.main:app_from_environment`) until SIGTERM/SIGINT:
    uvicorn with the header deadline, `http.keep_alive_seconds` between requests, client
    addresses from a trusted proxy's `X-Forwarded-For` (uvicorn's `forwarded_allow_ips`, the
    loopback by default), no access log (requests are measured and traced instead). With
    `workers` > 1, a worker is replaced when it has not answered uvicorn's health check for
    `WORKER_HEALTHCHECK_SECONDS`."""
    import uvicorn

    uvicorn.run(
        app,
        factory=factory,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **_options(http),
    )


def _options(http: HttpSettings) -> dict[str, Any]:
    """uvicorn's settings of every API process (see `serve`)."""
    return {
        "log_config": None,
        "proxy_headers": True,
        "access_log": False,
        "http": protocol(http),
        "timeout_keep_alive": http.keep_alive_seconds,
    }


async def serve_in_loop(
    app: str, *, http: HttpSettings, host: str, port: int, stop: asyncio.Event
) -> None:
    """Serve the app factory `app` on the running loop until `stop` is set, with `serve`'s
    settings: for a process that runs the API beside other roles (`referrals-<service> all`).

    uvicorn's own signal handling is left out: it would replace the process's (the roles share
    one stop event, `referrals_common.shutdown`) and raise the signal again once it stops."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = _Server(uvicorn.Config(app, factory=True, host=host, port=port, **_options(http)))

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
        if not server.started:  # the port was taken, or the app failed to start
            raise RuntimeError(f"the API did not start on {host}:{port}")
    finally:
        watcher.cancel()
