"""The dev stack's mail and SMS sinks in one process: one event loop serving both.

`make up` starts this instead of `devstack.mailsink` and `devstack.smssink` as two processes: each
alone is a Python interpreter with its libraries (19 and 27 MiB PSS measured), the two together
28 MiB. Each sink is unchanged (the same addresses, folders and answers); only the process is
shared. Stopping it stops both, as a developer stopping "the sinks" expects.

    DEVSTACK_SMSSINK_AUTH_TOKEN=... python -m devstack.sinks --host 127.0.0.1 \\
        --mail-port 11025 --mail-dir .devstack/mail/inbox \\
        --sms-port 11026 --sms-dir .devstack/sms/inbox --account-sid ACdevstack

The SMS token comes from the environment, not the command line (a process list shows arguments).
Both listen on a loopback address only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.mailsink import MailSink, is_loopback, serve_until_signalled, start_mailsink
from devstack.smssink import TOKEN_ENV, SmsSink, start_smssink


@dataclass
class Sinks:
    """Both running sinks; closing it closes both."""

    mail: MailSink
    sms: SmsSink

    async def close(self) -> None:
        try:
            await self.sms.close()
        finally:
            await self.mail.close()


async def start_sinks(
    host: str,
    *,
    mail_port: int,
    mail_dir: Path,
    sms_port: int,
    sms_dir: Path,
    account_sid: str,
    auth_token: str,
) -> Sinks:
    """Starts the mail sink, then the SMS sink, on `host` (ports 0: free ones)."""
    mail = await start_mailsink(host, mail_port, mail_dir)
    try:
        sms = await start_smssink(
            host, sms_port, sms_dir, account_sid=account_sid, auth_token=auth_token
        )
    except BaseException:
        await mail.close()
        raise
    return Sinks(mail, sms)


async def _serve(args: argparse.Namespace, token: str) -> None:
    sinks = await start_sinks(
        args.host,
        mail_port=args.mail_port,
        mail_dir=args.mail_dir.resolve(),
        sms_port=args.sms_port,
        sms_dir=args.sms_dir.resolve(),
        account_sid=args.account_sid,
        auth_token=token,
    )
    await serve_until_signalled(
        sinks,
        f"sinks listening: mail on smtp://{sinks.mail.host}:{sinks.mail.port} writing to "
        f"{sinks.mail.directory}; SMS on {sinks.sms.url} writing to {sinks.sms.directory}",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sinks",
        description=f"the mail and SMS sinks in one process (SMS token in ${TOKEN_ENV})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--mail-port", type=int, default=11025, help="SMTP port; 0: a free one")
    parser.add_argument("--mail-dir", type=Path, required=True, help="folder for the .eml files")
    parser.add_argument("--sms-port", type=int, default=11026, help="HTTP port; 0: a free one")
    parser.add_argument("--sms-dir", type=Path, required=True, help="folder for the .json files")
    parser.add_argument("--account-sid", default="ACdevstack", help="the SMS account it accepts")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host must be a loopback address, not {args.host}")
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        parser.error(f"set the auth token the SMS sink accepts in ${TOKEN_ENV}")
    asyncio.run(_serve(args, token))


if __name__ == "__main__":
    main()
