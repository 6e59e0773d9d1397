"""A local SMS sink for the dev stack: a Twilio-compatible HTTP server on loopback that keeps every
text message as a file.

Notifications (case updates to a phone-only patient) and the web app (sign-in codes) send real
SMS through a Twilio-compatible API (`referrals_common.sms`); on a developer's machine those
messages land here instead of on anyone's phone. The sink answers what the platform uses of
Twilio's Messages API:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   (HTTP basic auth: sid and token)
         To=+380671234567&From=+15005550006&Body=...        (or MessagingServiceSid=MG...)

with `201` and a Twilio-like JSON (`sid`, `status: queued`, ...), or Twilio's own error answers:
`401` (code 20003) for other credentials, `400` for a number that is not E.164 (21211), no
sender (21603) or no body (21602). Each accepted message is written, atomically, to
`<dir>/<UTC timestamp>-<sid>.json` (names sort in arrival order), which `list_messages` reads
back: what a demo shows as "what the patient's phone received", and where a browser test reads
a sign-in code.

    DEVSTACK_SMSSINK_AUTH_TOKEN=... python -m devstack.smssink --port 11026 --dir .devstack/sms \\
        --account-sid ACdevstack

`--port 0` picks a free port; the line printed at start says which. The token comes from the
environment, not the command line (a process list shows arguments). The sink listens on a
loopback address only; the platform reaches it as an explicit allow-list entry of its outbound
guard (`REFERRALS_..._OUTBOUND_ALLOWED_TARGETS`), never by a blanket exception.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.mailsink import is_loopback, serve_until_signalled

SUFFIX = ".json"
TOKEN_ENV = "DEVSTACK_SMSSINK_AUTH_TOKEN"  # noqa: S105 - a variable's name, not a secret
MAX_FORM_BYTES = 64 * 1024
MAX_BODY_CHARS = 1600
"""Twilio's limit for one (concatenated) message body."""
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """An error in Twilio's shape (what `referrals_common.sms` classifies)."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _segments(body: str) -> int:
    """How many SMS parts the body takes (GSM-7 160/153, otherwise UCS-2 70/67), roughly."""
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


@dataclass(frozen=True)
class StoredSms:
    """One text message in the sink."""

    path: Path
    sid: str
    received_at: datetime
    to: str
    sender: str
    """The `From` number, or the messaging service's sid."""
    body: str


def store_sms(directory: Path, record: dict[str, Any], received_at: datetime) -> Path:
    """Writes one accepted message as a JSON file (atomically: a reader never sees half)."""
    path = directory / f"{received_at.strftime(_STAMP)}-{record['sid']}{SUFFIX}"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(partial, path)
    return path


def create_app(directory: Path, account_sid: str, auth_token: str) -> Starlette:
    """The sink's ASGI application: Twilio's Messages resource for one account, and /health."""

    async def create_message(request: Request) -> Response:
        sid = request.path_params["account_sid"]
        given = _credentials(request)
        if (
            given is None
            or not secrets.compare_digest(given[0].encode(), account_sid.encode())
            or not secrets.compare_digest(given[1].encode(), auth_token.encode())
            or sid != account_sid
        ):
            return _twilio_error(401, 20003, "Authenticate")
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return _twilio_error(413, 21617, "The request is too large")
        form = await request.form(max_files=0, max_fields=16)
        to = str(form.get("To") or "")
        sender = str(form.get("From") or "")
        service = str(form.get("MessagingServiceSid") or "")
        body = str(form.get("Body") or "")
        if not _E164.match(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not (sender and _E164.match(sender)) and not (service and _SID.match(service)):
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body.strip():
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return _twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        received_at = datetime.now(UTC)
        message_sid = "SM" + secrets.token_hex(16)
        record = {
            "sid": message_sid,
            "account_sid": account_sid,
            "to": to,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "body": body,
            "status": "queued",
            "num_segments": str(_segments(body)),
            "direction": "outbound-api",
            "date_created": format_datetime(received_at),
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}.json",
        }
        await asyncio.to_thread(store_sms, directory, record, received_at)
        return JSONResponse(record, status_code=201)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                create_message,
                methods=["POST"],
            ),
            Route("/health", health, methods=["GET"]),
        ]
    )


@dataclass
class SmsSink:
    """A running sink: where it listens, where it writes, and its account."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    directory: Path
    account_sid: str

    @property
    def url(self) -> str:
        """The base URL a Twilio-compatible client is given (`TwilioSettings.base_url`)."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_smssink(
    host: str, port: int, directory: Path, *, account_sid: str, auth_token: str
) -> SmsSink:
    """Starts the sink on `host:port` (0: a free port) writing into `directory` (created)."""
    if not is_loopback(host):
        raise ValueError(f"the SMS sink listens on loopback only, not {host!r}")
    if not _SID.match(account_sid) or not auth_token:
        raise ValueError("the SMS sink needs an account sid (letters and digits) and a token")
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        create_app(directory, account_sid, auth_token),
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.02)
    bound_port = sock.getsockname()[1]
    return SmsSink(server, task, host, bound_port, directory, account_sid)


def list_messages(directory: Path) -> list[StoredSms]:
    """Every text message in the sink, oldest first."""
    if not directory.is_dir():
        return []
    stored = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        stamp = path.name.split("-", 1)[0]
        stored.append(
            StoredSms(
                path=path,
                sid=record["sid"],
                received_at=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC),
                to=record["to"],
                sender=record.get("from") or record.get("messaging_service_sid") or "",
                body=record["body"],
            )
        )
    return stored


async def _serve(host: str, port: int, directory: Path, account_sid: str, token: str) -> None:
    sink = await start_smssink(host, port, directory, account_sid=account_sid, auth_token=token)
    await serve_until_signalled(sink, f"smssink listening on {sink.url}, writing to {directory}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.smssink",
        description=f"Twilio's Messages API on loopback into .json files (token in ${TOKEN_ENV})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=11026, help="port; 0 picks a free one")
    parser.add_argument("--dir", type=Path, required=True, help="folder for the .json files")
    parser.add_argument("--account-sid", default="ACdevstack", help="the account it accepts")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host must be a loopback address, not {args.host}")
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        parser.error(f"set the auth token the sink accepts in ${TOKEN_ENV}")
    asyncio.run(_serve(args.host, args.port, args.dir.resolve(), args.account_sid, token))


if __name__ == "__main__":
    main()
