"""A Kafka broker secured as production brokers are: clients reach it only over TLS and log in
with SCRAM-SHA-512, and every request is checked against ACLs (nothing is allowed that no ACL
allows). The Kafka security tests run the platform's clients against it.

The local stack's own broker stays plain text on loopback. Here:
- the client listener is `SASL_SSL`, with a server certificate from a throw-away CA
  (`devstack.tls`) for 127.0.0.1 and localhost; the brokers' own traffic uses it too;
- SCRAM users are written into the cluster's metadata when its storage is formatted
  (`--add-scram`), `admin` among them, with random passwords;
- the controller listener (loopback, never advertised to clients) stays plain text, so its
  principal `User:ANONYMOUS` is a super user beside `User:admin`, as KRaft requires for the
  controller's own requests when the controller listener has no SASL;
- ACLs are granted with Kafka's own `kafka-acls` tool (`org.apache.kafka.tools.AclCommand`)
  logged in as `admin`, the commands the runbook gives for per-center ACLs.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.parts import Running, kafka_ready, start_kafka
from devstack.process import stop_group, wait_until
from devstack.tls import Authority
from referrals_common.messaging.kafka import client_options
from referrals_common.settings import KafkaSettings

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass
class SecuredKafka:
    running: Running
    bootstrap: str
    ca_file: Path
    kafka_home: Path
    data: Path
    passwords: dict[str, str] = field(repr=False)

    def settings(self, user: str, **changes: object) -> KafkaSettings:
        """How `user` connects: SASL_SSL, SCRAM-SHA-512, trusting the broker's CA."""
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "username": user,
            "password": self.passwords[user],
            "ssl_cafile": self.ca_file,
        }
        return KafkaSettings.model_validate(values | changes)

    def grant(
        self,
        user: str,
        operations: Iterable[str],
        *,
        topic: str | None = None,
        group: str | None = None,
        prefixed: bool = False,
    ) -> None:
        """Allow `User:<user>` the `operations` on a topic or a consumer group (its name taken
        as a prefix when `prefixed`), as `kafka-acls.sh --add` does."""
        if (topic is None) == (group is None):
            raise ValueError("grant names a topic or a group")
        resource = ["--topic", topic] if topic is not None else ["--group", str(group)]
        argv = [
            "java",
            "-Xmx256m",
            "-cp",
            f"{self.kafka_home / 'libs'}/*",
            "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server",
            self.bootstrap,
            "--command-config",
            str(self._admin_properties()),
            "--add",
            "--allow-principal",
            f"User:{user}",
            *(arg for op in operations for arg in ("--operation", op)),
            *resource,
            *(["--resource-pattern-type", "prefixed"] if prefixed else []),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-acls failed ({done.returncode}): {done.stderr[-2000:]}")

    def _admin_properties(self) -> Path:
        path = self.data / "admin.properties"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(
                "security.protocol=SASL_SSL\n"
                f"sasl.mechanism={MECHANISM}\n"
                f"sasl.jaas.config={_jaas(ADMIN, self.passwords[ADMIN])}\n"
                "ssl.truststore.type=PEM\n"
                f"ssl.truststore.location={self.ca_file}\n"
            )
        return path

    def stop(self) -> None:
        stop_group(self.running.pid, timeout=20)


def _jaas(user: str, password: str) -> str:
    return f'{SCRAM_LOGIN} required username="{user}" password="{password}";'


def start(
    kafka_home: Path, data: Path, users: Iterable[str], *, timeout: float = 120.0
) -> SecuredKafka:
    """Format and start a secured single-node broker in `data` with SCRAM users `users` (and
    `admin`); return once `admin` can describe the cluster over TLS."""
    data.mkdir(parents=True, exist_ok=True)
    authority = Authority.create(data / "tls")
    keystore = authority.issue(data / "tls", "broker")
    passwords = {user: secrets.token_urlsafe(18) for user in {ADMIN, *users}}

    def overrides(port: int, controller_port: int) -> dict[str, str]:
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(
                ADMIN, passwords[ADMIN]
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(authority.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    scram = [
        arg
        for user, password in sorted(passwords.items())
        for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
    ]
    running, bootstrap = start_kafka(kafka_home, data, overrides=overrides, format_options=scram)
    broker = SecuredKafka(running, bootstrap, authority.ca_file, kafka_home, data, passwords)
    try:
        admin = client_options(broker.settings(ADMIN))
        wait_until(
            "secured kafka",
            lambda: kafka_ready(bootstrap, **admin),
            pid=running.pid,
            log=running.log,
            timeout=timeout,
        )
    except BaseException:
        broker.stop()
        raise
    return broker
