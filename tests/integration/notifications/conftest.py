"""Real servers on loopback for the notification channels: SMTP (aiosmtpd) and HTTP (http.server).

Each server listens on a free port of 127.0.0.1 and records what it received, so a test can count
exactly what arrived. Nothing here needs the Kafka/MinIO/PostgreSQL stack.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

StartSmtp = Callable[..., Awaitable[int]]


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler that can refuse: `rcpt_reply` refuses every recipient; the first
    `refuse_data` DATA commands get `data_reply`. Counts every command it answered."""

    rcpt_reply: str | None = None
    refuse_data: int = 0
    data_reply: str = "451 4.3.0 Try again later"
    rcpt_calls: int = 0
    data_calls: int = 0
    accepted: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    """Every message DATA carried, refused or not."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_calls += 1
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        self.received.append(envelope.original_content or b"")
        if self.data_calls <= self.refuse_data:
            return self.data_reply
        self.accepted.append(envelope.original_content or b"")
        return "250 OK queued"


@pytest.fixture
async def start_smtp() -> AsyncIterator[StartSmtp]:
    """Starts an aiosmtpd server with the given handler (and SMTP options); returns its port."""
    servers: list[asyncio.Server] = []

    async def start(handler: object, **smtp_options: Any) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="smtp.test", **smtp_options), "127.0.0.1", 0
        )
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], bytes]
Responder = Callable[[ReceivedRequest], Answer]


class HttpRecorder:
    """What a local HTTP server received, and what it answers next (a queue, then a default)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[ReceivedRequest] = []
        self.answers: deque[Answer] = deque()
        self.default: Answer = (200, {"Content-Type": "application/json"}, b"{}")
        self.responder: Responder | None = None
        self.lock = threading.Lock()

    def answer(self, request: ReceivedRequest) -> Answer:
        with self.lock:
            self.requests.append(request)
            if self.answers:
                return self.answers.popleft()
        return self.responder(request) if self.responder else self.default


def _handler_for(recorder_of: Callable[[], HttpRecorder]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = ReceivedRequest(
                method="POST",
                path=self.path,
                headers={name: value for name, value in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, headers, body = recorder_of().answer(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def http_server() -> Iterator[HttpRecorder]:
    """A threaded HTTP server on a free loopback port that records every POST."""
    holder: list[HttpRecorder] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(lambda: holder[0]))
    holder.append(HttpRecorder(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, name="http-recorder", daemon=True)
    thread.start()
    yield holder[0]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
