"""The dev stack's mail sink as a process: it says where it listens and keeps what it receives."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.mailsink import list_messages
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.channels.email import EmailChannel, SmtpSettings, SmtpTls
from referrals_notifications.rendering import Renderer

from ...unit.notifications.samples import sample_context

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"mailsink listening on smtp://127\.0\.0\.1:(\d+), writing to (.+)$")


@pytest.fixture
def sink_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    folder = tmp_path / "mail"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.mailsink", "--port", "0", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, folder
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def test_the_sink_process_stores_what_the_patient_would_receive(
    sink_process: tuple[subprocess.Popen[str], Path],
) -> None:
    process, folder = sink_process
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=30)
    match = LISTENING.match(line.strip())
    assert match, line
    port, written_to = int(match[1]), Path(match[2])
    assert written_to == folder.resolve()

    message = Renderer().render(T.CASE_SUBMITTED, sample_context(T.CASE_SUBMITTED, "uk"), C.EMAIL)
    settings = SmtpSettings(
        host="127.0.0.1", port=port, tls=SmtpTls.NONE, from_address="care@referrals.example"
    )
    await EmailChannel(settings).send("olena@example.org", message)

    (stored,) = list_messages(folder)
    assert stored.path.suffix == ".eml" and stored.path.parent == folder
    assert stored.recipients == ("olena@example.org",)
    assert stored.subject == message.subject
    assert stored.text() == message.text
    assert "<!DOCTYPE html>" in (stored.html() or "")

    process.terminate()
    assert process.wait(timeout=10) == 0


def test_the_sink_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack.mailsink", "--host", "0.0.0.0", "--dir", str(tmp_path)],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_an_empty_or_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert list_messages(tmp_path / "nowhere") == []
    assert list_messages(tmp_path) == []
