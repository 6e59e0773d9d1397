"""The dev stack's SMS sink as a process: a Twilio-compatible Messages API on loopback that the
platform's shared provider reaches through the outbound guard (an explicit allow-list entry),
that keeps each accepted text as a file, and that answers other credentials, numbers or forms
as Twilio would, keeping nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.smssink import TOKEN_ENV, list_messages
from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationError as E
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_common.outbound import OutboundPolicy
from referrals_common.sms import SmsError, SmsFailure, TwilioSettings, TwilioSmsProvider
from referrals_notifications.channels.base import PermanentDeliveryError
from referrals_notifications.channels.sms import SmsChannel
from referrals_notifications.rendering import Renderer

from ...unit.notifications.samples import sample_context

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"smssink listening on (http://127\.0\.0\.1:(\d+)), writing to (.+)$")
SID = "ACsinktest"
TOKEN = "sink-token-7Qm2"
PHONE = "+380671234567"
SENDER = "+15005550006"


@dataclass
class Sink:
    url: str
    port: int
    folder: Path

    def settings(self, token: str = TOKEN) -> TwilioSettings:
        return TwilioSettings(
            base_url=self.url, account_sid=SID, auth_token=token, from_number=SENDER, timeout=5
        )

    def policy(self) -> OutboundPolicy:
        """Development, and the sink as the one loopback entry: what `devstack up` gives."""
        return OutboundPolicy.for_environment("development", [f"127.0.0.1:{self.port}"])


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    folder = tmp_path / "sms"
    argv = [sys.executable, "-m", "devstack.smssink", "--port", "0", "--dir", str(folder)]
    process = subprocess.Popen(
        [*argv, "--account-sid", SID],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, TOKEN_ENV: TOKEN},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = LISTENING.match(line.strip())
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        assert Path(match[3]) == folder.resolve()
        yield Sink(match[1], int(match[2]), folder)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def test_a_text_sent_through_the_guard_is_kept_and_read_back(sink: Sink) -> None:
    provider = TwilioSmsProvider(sink.settings(), policy=sink.policy())
    try:
        sid = await provider.send_sms(PHONE, "Код для входу: 482913. Діє 10 хв.")
    finally:
        await provider.aclose()

    assert sid is not None and re.fullmatch(r"SM[0-9a-f]{32}", sid)
    [stored] = list_messages(sink.folder)
    assert (stored.sid, stored.to, stored.sender) == (sid, PHONE, SENDER)
    assert stored.body == "Код для входу: 482913. Діє 10 хв."
    record = json.loads(stored.path.read_text(encoding="utf-8"))
    assert record["status"] == "queued" and record["account_sid"] == SID
    assert TOKEN not in stored.path.read_text(encoding="utf-8")


async def test_notifications_sms_channel_delivers_to_the_sink_in_order(sink: Sink) -> None:
    provider = TwilioSmsProvider(sink.settings(), policy=sink.policy())
    channel = SmsChannel(provider)
    renderer = Renderer()
    texts = [
        renderer.render(trigger, sample_context(trigger, "uk"), C.SMS)
        for trigger in (T.CASE_SUBMITTED, T.CASE_READY)
    ]
    try:
        receipts = [await channel.send(PHONE, text) for text in texts]
    finally:
        await provider.aclose()

    stored = list_messages(sink.folder)
    assert [m.body for m in stored] == [t.text for t in texts]
    assert [m.sid for m in stored] == [r.provider_id for r in receipts]


async def test_other_credentials_are_refused_and_nothing_is_kept(sink: Sink) -> None:
    provider = TwilioSmsProvider(sink.settings(token="not-the-token"), policy=sink.policy())
    try:
        with pytest.raises(SmsError) as raised:
            await provider.send_sms(PHONE, "hi")
    finally:
        await provider.aclose()
    assert raised.value.failure is SmsFailure.REJECTED and raised.value.status_code == 401
    assert list_messages(sink.folder) == []


async def test_without_the_allow_list_entry_the_sink_is_never_called(sink: Sink) -> None:
    """Development is no blanket exception: loopback needs its explicit `host:port`."""
    provider = TwilioSmsProvider(
        sink.settings(), policy=OutboundPolicy.for_environment("development")
    )
    channel = SmsChannel(provider)
    text = Renderer().render(T.CASE_READY, sample_context(T.CASE_READY, "en"), C.SMS)
    try:
        with pytest.raises(PermanentDeliveryError) as raised:
            await channel.send(PHONE, text)
    finally:
        await provider.aclose()
    assert raised.value.code is E.OTHER
    assert list_messages(sink.folder) == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": "0671234567", "From": SENDER, "Body": "hi"}, 21211),
        ({"To": PHONE, "Body": "hi"}, 21603),
        ({"To": PHONE, "From": SENDER, "Body": "  "}, 21602),
        ({"To": PHONE, "From": SENDER, "Body": "x" * 1601}, 21617),
    ],
)
async def test_a_form_twilio_would_refuse_is_refused_the_same_way(
    sink: Sink, form: dict[str, str], code: int
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{sink.url}/2010-04-01/Accounts/{SID}/Messages.json", data=form, auth=(SID, TOKEN)
        )
    assert answer.status_code == 400 and answer.json()["code"] == code
    assert list_messages(sink.folder) == []


async def test_another_accounts_path_is_refused(sink: Sink) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{sink.url}/2010-04-01/Accounts/ACother/Messages.json",
            data={"To": PHONE, "From": SENDER, "Body": "hi"},
            auth=(SID, TOKEN),
        )
    assert answer.status_code == 401 and answer.json()["code"] == 20003
    assert list_messages(sink.folder) == []
