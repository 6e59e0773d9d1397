"""A local mail sink for the dev stack: an SMTP server on loopback that keeps every message as .eml.

The notifications service sends real e-mail over real SMTP; on a developer's machine that mail
lands here instead of in anyone's inbox. Each message is written, exactly as received, to
`<dir>/<UTC timestamp>-<random>.eml` (names sort in arrival order), with `Return-Path` and
`Delivered-To` headers in front as a mail server adds on delivery. `list_messages` reads them back
(what a demo shows as "what the patient received").

    python -m devstack.mailsink --host 127.0.0.1 --port 1025 --dir .devstack/mail

`--port 0` picks a free port; the line printed at start says which. The sink only listens on a
loopback address: it accepts mail for anyone, from anyone, without authentication.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

SUFFIX = ".eml"
_STAMP = "%Y%m%dT%H%M%S.%fZ"


def is_loopback(host: str) -> bool:
    """A sink listens only on loopback: it accepts anything from anyone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message_name(received_at: datetime) -> str:
    return f"{received_at.strftime(_STAMP)}-{uuid.uuid4().hex[:8]}{SUFFIX}"


def _delivery_headers(envelope: Envelope) -> bytes:
    lines = [f"Return-Path: <{envelope.mail_from or ''}>"]
    lines += [f"Delivered-To: {recipient}" for recipient in envelope.rcpt_tos]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def store_message(directory: Path, envelope: Envelope, received_at: datetime) -> Path:
    """Writes one received message as an .eml file (atomically: a reader never sees half)."""
    content = envelope.original_content or b""
    path = directory / _message_name(received_at)
    partial = path.with_suffix(".partial")
    partial.write_bytes(_delivery_headers(envelope) + content)
    os.replace(partial, path)
    return path


class MailSinkHandler:
    """aiosmtpd handler: every message is accepted and stored."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        path = await asyncio.to_thread(store_message, self.directory, envelope, datetime.now(UTC))
        return f"250 OK stored as {path.name}"


@dataclass
class MailSink:
    """A running sink: where it listens and where it writes."""

    server: asyncio.Server
    host: str
    port: int
    directory: Path

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_mailsink(host: str, port: int, directory: Path) -> MailSink:
    """Starts the sink on `host:port` (0: a free port) writing into `directory` (created)."""
    if not is_loopback(host):
        raise ValueError(f"the mail sink listens on loopback only, not {host!r}")
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    handler = MailSinkHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailsink.localhost", ident="devstack mailsink"),
        host=host,
        port=port,
    )
    bound_port = server.sockets[0].getsockname()[1]
    return MailSink(server=server, host=host, port=bound_port, directory=directory)


@dataclass(frozen=True)
class StoredMessage:
    """One message in the sink."""

    path: Path
    received_at: datetime
    sender: str
    recipients: tuple[str, ...]
    subject: str

    def message(self) -> EmailMessage:
        return read_message(self.path)

    def text(self) -> str | None:
        """The plain-text body, if the message has one."""
        return _body(self.message(), "plain")

    def html(self) -> str | None:
        """The HTML body, if the message has one."""
        return _body(self.message(), "html")


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content: Any = part.get_content()
    return str(content)


def read_message(path: Path) -> EmailMessage:
    """A stored message, parsed (headers decoded, parts reachable with `get_body`)."""
    with path.open("rb") as handle:
        parsed = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _received_at(path: Path) -> datetime:
    stamp = path.name.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def list_messages(directory: Path) -> list[StoredMessage]:
    """Every message in the sink, oldest first."""
    if not directory.is_dir():
        return []
    stored = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        message = read_message(path)
        stored.append(
            StoredMessage(
                path=path,
                received_at=_received_at(path),
                sender=str(message.get("Return-Path", "")).strip("<>"),
                recipients=tuple(str(value) for value in message.get_all("Delivered-To", [])),
                subject=str(message.get("Subject", "")),
            )
        )
    return stored


class _Closable(Protocol):
    async def close(self) -> None: ...


async def serve_until_signalled(sink: _Closable, banner: str) -> None:
    """Print `banner` (the line devstack waits for), then serve until SIGINT or SIGTERM."""
    print(banner, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sink.close()


async def _serve(host: str, port: int, directory: Path) -> None:
    sink = await start_mailsink(host, port, directory)
    await serve_until_signalled(
        sink, f"mailsink listening on smtp://{sink.host}:{sink.port}, writing to {directory}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.mailsink", description="SMTP on loopback into .eml files"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=1025, help="port; 0 picks a free one")
    parser.add_argument("--dir", type=Path, required=True, help="folder for the .eml files")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host must be a loopback address, not {args.host}")
    asyncio.run(_serve(args.host, args.port, args.dir.resolve()))


if __name__ == "__main__":
    main()
