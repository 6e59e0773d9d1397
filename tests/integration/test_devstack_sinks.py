"""The dev stack's mail and SMS sinks as `make up` starts them: one process (`devstack.sinks`)
that answers SMTP and the Twilio-compatible API, keeps what each receives where the platform
reads it, holds the SMS token out of its command line, and stops both when stopped."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx
import psutil
import pytest

from devstack import mailsink, parts, smssink
from devstack.process import free_port, port_accepts, stop_group

pytestmark = pytest.mark.integration

TOKEN = "sinks-token-4Tq9"


def test_one_process_serves_both_sinks_and_stopping_it_stops_both(tmp_path: Path) -> None:
    mail_port, sms_port = free_port(), free_port()
    running, sink = parts.start_sinks(tmp_path, mail_port, sms_port, TOKEN)
    try:
        parts.wait_ready(running, sink.probe, timeout=30)
        process = psutil.Process(running.pid)
        listening = {c.laddr.port for c in process.net_connections() if c.status == "LISTEN"}
        assert {mail_port, sms_port} <= listening, listening
        assert TOKEN not in " ".join(process.cmdline())

        message = EmailMessage()
        message["From"] = "noreply@referrals.localhost"
        message["To"] = "patient@example.org"
        message["Subject"] = "Your case was submitted"
        message.set_content("We sent your case to the cancer center.")
        with smtplib.SMTP("127.0.0.1", mail_port, timeout=5) as smtp:
            smtp.send_message(message)
        answer = httpx.post(
            f"{sink.sms_url}/2010-04-01/Accounts/{parts.SMS_ACCOUNT_SID}/Messages.json",
            auth=(parts.SMS_ACCOUNT_SID, TOKEN),
            data={"To": "+380671234567", "From": parts.SMS_FROM_NUMBER, "Body": "Code 123456"},
            timeout=5,
        )
        assert answer.status_code == 201, answer.text
        refused = httpx.post(
            f"{sink.sms_url}/2010-04-01/Accounts/{parts.SMS_ACCOUNT_SID}/Messages.json",
            auth=(parts.SMS_ACCOUNT_SID, "another-token"),
            data={"To": "+380671234567", "From": parts.SMS_FROM_NUMBER, "Body": "x"},
            timeout=5,
        )
        assert refused.status_code == 401

        mails = mailsink.list_messages(sink.mail_dir)
        assert [(m.subject, m.recipients) for m in mails] == [
            ("Your case was submitted", ("patient@example.org",))
        ]
        texts = smssink.list_messages(sink.sms_dir)
        assert [(t.to, t.body) for t in texts] == [("+380671234567", "Code 123456")]
        assert sink.mail_dir == tmp_path / "mail" / "inbox"
        assert sink.sms_dir == tmp_path / "sms" / "inbox"
    finally:
        stop_group(running.pid, timeout=10)
    assert not psutil.pid_exists(running.pid) or psutil.Process(running.pid).status() == "zombie"
    assert not port_accepts(mail_port, "127.0.0.1")
    assert not port_accepts(sms_port, "127.0.0.1")
    assert "sinks listening: mail on smtp://127.0.0.1" in running.log.read_text()


def test_the_sinks_refuse_to_start_without_a_token_or_beyond_loopback(tmp_path: Path) -> None:
    from devstack import sinks

    with pytest.raises(SystemExit):
        sinks.main(["--mail-dir", str(tmp_path / "m"), "--sms-dir", str(tmp_path / "s")])
    with pytest.raises(SystemExit):
        sinks.main(
            ["--host", "192.0.2.10", "--mail-dir", str(tmp_path / "m"), "--sms-dir", str(tmp_path)]
        )
    assert not (tmp_path / "m").exists()
