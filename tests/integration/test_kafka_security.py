"""The platform's Kafka clients on a broker secured as in production: TLS, SCRAM-SHA-512 logins,
and ACLs that allow nothing they do not name (`devstack.secured_kafka`).

What must hold: the services' own clients (relay, consumer, dead letters, topic creation, the
`referrals-dlq` command) work there from their settings alone; a center's principal with the
runbook's two ACLs reads its own inbox and nothing else, and cannot write; a wrong password, a
client that does not trust the broker's CA, and a plain-text client get nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from rich.console import Console

from devstack import install, secured_kafka
from devstack.secured_kafka import SecuredKafka
from devstack.tls import Authority
from referrals_common.contracts import topics
from referrals_common.messaging.kafka import client_options, ensure_topics
from referrals_common.settings import KafkaSettings

from .conftest import count_effects, effects, running_consumer, wait_for, write_withdrawals

pytestmark = pytest.mark.integration

# The runbook's principals: one per service, one per center.
INTAKE, PARTNERS, NOTIFICATIONS = "intake", "partners", "notifications"
CENTER_A, CENTER_B = "center-lviv", "center-charite"
INBOX_A, INBOX_B = topics.partner_inbox("lviv"), topics.partner_inbox("charite")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    home = install.ensure_kafka(Console(stderr=True))
    broker = secured_kafka.start(
        home,
        tmp_path_factory.mktemp("secured-kafka"),
        [INTAKE, PARTNERS, NOTIFICATIONS, CENTER_A, CENTER_B],
    )
    try:
        # Services: their own topics (and dead letters) under the platform's prefix.
        for service in (INTAKE, NOTIFICATIONS):
            broker.grant(
                service,
                ["Create", "Describe", "Write", "Read"],
                topic=f"secured.{service}.",
                prefixed=True,
            )
            broker.grant(service, ["Read"], group=service, prefixed=True)
        # Only partners writes the centers' inboxes (a prefixed Write ACL, as in the runbook).
        broker.grant(
            PARTNERS,
            ["Create", "Describe", "Write"],
            topic="referrals.partner-inbox.",
            prefixed=True,
        )
        # A center: its own inbox and its own consumer groups, nothing else (runbook).
        for center, inbox in ((CENTER_A, INBOX_A), (CENTER_B, INBOX_B)):
            broker.grant(center, ["Read", "Describe"], topic=inbox)
            broker.grant(center, ["Read"], group=center, prefixed=True)
        yield broker
    finally:
        broker.stop()


async def test_an_event_crosses_the_secured_broker_from_outbox_to_consumer_once(
    secured, db, messaging_dsn, tmp_path
):
    """The relay process, configured by `REFERRALS_KAFKA__*` alone, publishes over TLS as
    `intake`; a consumer logged in as `notifications` applies every event once."""
    topic = f"secured.intake.cases.{uuid.uuid4().hex[:8]}"
    await ensure_topics(secured.settings(INTAKE), [topic], partitions=3)
    written = await write_withdrawals(db, [uuid.uuid4() for _ in range(10)], 2, topic)
    # `notifications` may read intake's topic for this test: a service reads what it consumes.
    secured.grant(NOTIFICATIONS, ["Read", "Describe"], topic=topic)

    env = _environment(secured, INTAKE)
    relay = _start_relay(messaging_dsn, env, tmp_path / "relay.log")
    try:
        async with running_consumer(
            db, secured.settings(NOTIFICATIONS), topic, name=f"notifications-{uuid.uuid4().hex[:6]}"
        ) as consumer:
            await wait_for(lambda: count_effects(messaging_dsn, len(written)), timeout=60)
            await asyncio.sleep(1.0)  # time for a duplicate to be (wrongly) applied
    finally:
        relay.terminate()
        relay.wait(30)

    rows = await effects(messaging_dsn)
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in written), (
        tmp_path / "relay.log"
    ).read_text()
    assert consumer.stats["applied"] == len(written)
    assert consumer.stats["dead_lettered"] == 0


def _start_relay(dsn: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "referrals_common.messaging.relay", "--dsn", dsn],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def test_a_center_reads_its_own_inbox_and_nothing_else(secured):
    partners = secured.settings(PARTNERS)
    await ensure_topics(partners, [INBOX_A, INBOX_B], partitions=1, with_dead_letters=False)
    producer = AIOKafkaProducer(**client_options(partners), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(INBOX_A, b"offer for lviv", key=b"case-1")
        await producer.send_and_wait(INBOX_B, b"offer for charite", key=b"case-2")
    finally:
        await producer.stop()

    center = client_options(secured.settings(CENTER_A))
    own = AIOKafkaConsumer(
        INBOX_A, **center, group_id=f"{CENTER_A}-reader", auto_offset_reset="earliest"
    )
    await own.start()
    try:
        record = await asyncio.wait_for(own.getone(), 30)
        await own.commit()
    finally:
        await own.stop()
    assert record.value == b"offer for lviv"

    # Another center's inbox: refused through a group; assigned directly, nothing comes.
    await _refused(center, INBOX_B, f"{CENTER_A}-curious", TopicAuthorizationFailedError)
    assigned = AIOKafkaConsumer(**center, group_id=None, auto_offset_reset="earliest")
    await assigned.start()
    try:
        assigned.assign([TopicPartition(INBOX_B, 0)])
        assert await assigned.getmany(timeout_ms=3000) == {}
    finally:
        await assigned.stop()

    # Its own inbox in a group it was not given.
    await _refused(center, INBOX_A, f"{CENTER_B}-reader", GroupAuthorizationFailedError)

    # It cannot write, not even to its own inbox.
    writer = AIOKafkaProducer(**center, acks="all")
    await writer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await writer.send_and_wait(INBOX_A, b"forged offer")
    finally:
        await writer.stop()

    # It sees no topic but its inbox: not the other inbox, not the platform's topics.
    admin = AIOKafkaAdminClient(**center)
    await admin.start()
    try:
        assert set(await admin.list_topics()) == {INBOX_A}
    finally:
        await admin.close()


async def _refused(
    center: dict[str, object], topic: str, group: str, error: type[Exception]
) -> None:
    """A consumer of `topic` in `group` logged in as `center` is refused as it joins."""
    consumer = AIOKafkaConsumer(topic, **center, group_id=group, auto_offset_reset="earliest")
    try:
        with pytest.raises(error):
            await consumer.start()
    finally:
        await consumer.stop()


async def _connects(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 30)
        await asyncio.wait_for(admin.list_topics(), 30)
    finally:
        await admin.close()


async def test_the_right_settings_connect(secured):
    await _connects(secured.settings(CENTER_A))  # the baseline of the refusals below


async def test_a_wrong_password_is_refused(secured, caplog):
    with pytest.raises(KafkaConnectionError):
        await _connects(secured.settings(CENTER_A, password="not-the-password"))
    assert "SaslAuthenticationFailed" in caplog.text


async def test_a_client_that_does_not_trust_the_brokers_ca_does_not_connect(
    secured, tmp_path, caplog
):
    stranger = Authority.create(tmp_path / "other-ca", "another CA")
    with pytest.raises(KafkaConnectionError):
        await _connects(secured.settings(CENTER_A, ssl_cafile=stranger.ca_file))
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
async def test_a_client_without_tls_or_without_a_login_gets_nothing(secured, protocol):
    kafka = KafkaSettings(
        bootstrap_servers=secured.bootstrap,
        security_protocol=protocol,
        ssl_cafile=secured.ca_file if protocol == "SSL" else None,
    )
    with pytest.raises(KafkaConnectionError):
        await _connects(kafka)


def test_the_dlq_command_reads_dead_letters_over_tls_from_the_environment(secured):
    """`referrals-dlq list` as an operator runs it in a service's pod: REFERRALS_KAFKA__* only."""
    topic = f"secured.intake.poisoned.{uuid.uuid4().hex[:8]}"
    kafka = secured.settings(INTAKE)

    async def poison() -> None:
        await ensure_topics(kafka, [topic], partitions=1)
        producer = AIOKafkaProducer(**client_options(kafka), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                topics.dead_letter(topic),
                b"{}",
                key=b"k",
                headers=[("dlq.error_type", b"InvalidEvent"), ("dlq.consumer", b"records")],
            )
        finally:
            await producer.stop()

    asyncio.run(poison())
    listed = _dlq_list(topic, _environment(secured, INTAKE) | {"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "1 dead letter(s)" in listed.stdout
    assert "InvalidEvent" in listed.stdout
    # Without the credentials the same command is refused rather than reading anything.
    plain = {k: v for k, v in os.environ.items() if not k.startswith("REFERRALS_KAFKA__")}
    refused = _dlq_list(topic, plain | {"REFERRALS_KAFKA__BOOTSTRAP_SERVERS": secured.bootstrap})
    assert refused.returncode != 0
    assert "InvalidEvent" not in refused.stdout


def _dlq_list(topic: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "referrals_common.messaging.dlq_cli", "list", topic],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _environment(secured: SecuredKafka, user: str) -> dict[str, str]:
    """This process's environment with `REFERRALS_KAFKA__*` logging in as `user` over TLS."""
    return os.environ | {
        "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": secured.bootstrap,
        "REFERRALS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "REFERRALS_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "REFERRALS_KAFKA__USERNAME": user,
        "REFERRALS_KAFKA__PASSWORD": secured.passwords[user],
        "REFERRALS_KAFKA__SSL_CAFILE": str(secured.ca_file),
    }
