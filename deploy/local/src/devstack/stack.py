"""The whole local stack: start Kafka, MinIO and PostgreSQL together, provision, describe, stop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from devstack import install, object_store, parts
from devstack.process import clock as process_clock
from devstack.process import free_port, started_before, stop_group

SERVICES = ("intake", "records", "translation", "partners", "notifications")
WEB = "web"
"""The patient's web app (frontend/, `referrals_web`): a database of its own, like a service's."""
DATABASES = (*SERVICES, WEB)
"""Every database a platform stack provisions: one per service, and the web app's."""
STATE_FILE = "stack.json"

# Ports a developer's stack prefers (so bookmarks keep working); any that is taken, and every port
# of a test stack, is chosen free by the kernel instead.
DEV_PORTS = {
    "kafka": 19092,
    "minio": 19000,
    "minio_console": 19001,
    "postgres": 15432,
    "mailsink": 11025,
    "smssink": 11026,
}


@dataclass
class StackInfo:
    """Where every part of a running stack is, and how to reach it."""

    root: str
    kafka_bootstrap: str
    s3_endpoint: str
    s3_console: str
    s3_access_key: str
    s3_secret_key: str
    """MinIO's root user: the administrator's (buckets, users, policies, the tests' fixtures),
    never a service's; see `s3_users`."""
    postgres_dsn: str
    smtp: str = ""
    """host:port of the local mail sink."""
    mail_dir: str = ""
    """Where the mail sink keeps every message it received (.eml files)."""
    sms_url: str = ""
    """Base URL of the local SMS sink (a Twilio-compatible Messages API on loopback)."""
    sms_dir: str = ""
    """Where the SMS sink keeps every text it accepted (.json files)."""
    sms_auth_token: str = ""
    """The auth token the SMS sink accepts for its account (`parts.SMS_ACCOUNT_SID`)."""
    database_dsns: dict[str, str] = field(default_factory=dict)
    s3_users: dict[str, dict[str, str]] = field(default_factory=dict)
    """service → {"access_key", "secret_key"}: the MinIO user of each service that uses object
    storage (records read-write, translation read-only; `devstack.object_store`)."""
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0  # on devstack.process.clock(): seconds since boot

    def env(self) -> dict[str, str]:
        """Environment variables the platform's settings read (see referrals_common.settings).

        MinIO's root credentials are not among them: each service that uses object storage
        gets its own user as `REFERRALS_<SERVICE>_S3__ACCESS_KEY` / `__SECRET_KEY`."""
        env = {
            "REFERRALS_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "REFERRALS_S3__ENDPOINT": self.s3_endpoint,
            "REFERRALS_POSTGRES__ADMIN_DSN": self.postgres_dsn,
        }
        for service, user in self.s3_users.items():
            env[f"REFERRALS_{service.upper()}_S3__ACCESS_KEY"] = user["access_key"]
            env[f"REFERRALS_{service.upper()}_S3__SECRET_KEY"] = user["secret_key"]
        for service, dsn in self.database_dsns.items():
            env[f"REFERRALS_{service.upper()}_POSTGRES__DSN"] = dsn
        if self.smtp:
            host, port = self.smtp.rsplit(":", 1)
            env["REFERRALS_NOTIFICATIONS_SMTP__HOST"] = host
            env["REFERRALS_NOTIFICATIONS_SMTP__PORT"] = port
            env["REFERRALS_NOTIFICATIONS_SMTP__TLS"] = "none"
        env |= self.sms_env("NOTIFICATIONS")
        return env

    def sms_env(self, prefix: str) -> dict[str, str]:
        """`REFERRALS_<prefix>_SMS__*` naming the SMS sink as a Twilio-compatible provider, and
        the sink's `host:port` as the one loopback entry of that process's outbound guard (the
        sink is reached through `referrals_common.outbound` like any provider); nothing when
        the stack has no sink."""
        if not (self.sms_url and self.sms_auth_token):
            return {}
        sink = self.sms_url.split("://", 1)[-1].rstrip("/")
        return {
            f"REFERRALS_{prefix}_SMS__BASE_URL": self.sms_url,
            f"REFERRALS_{prefix}_SMS__ACCOUNT_SID": parts.SMS_ACCOUNT_SID,
            f"REFERRALS_{prefix}_SMS__AUTH_TOKEN": self.sms_auth_token,
            f"REFERRALS_{prefix}_SMS__FROM_NUMBER": parts.SMS_FROM_NUMBER,
            f"REFERRALS_{prefix}_OUTBOUND_ALLOWED_TARGETS": json.dumps([sink]),
        }

    def save(self) -> Path:
        path = Path(self.root) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)  # it holds the stack's credentials
        return path

    @classmethod
    def load(cls, root: Path) -> StackInfo | None:
        path = root / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def alive(self) -> dict[str, bool]:
        return {name: self.owns(pid) for name, pid in self.pids.items()}

    def owns(self, pid: int) -> bool:
        """Whether `pid` is still the process this stack started (see `started_before`)."""
        return started_before(pid, self.started_at)


@dataclass
class Secrets:
    s3_access_key: str
    s3_secret_key: str
    postgres_password: str
    minio_kms_key: str = ""

    def kms_key(self) -> str:
        """`<key name>:<base64 of 32 bytes>`, the form MINIO_KMS_SECRET_KEY takes."""
        return (
            self.minio_kms_key
            or "referrals-sse:"
            + base64.b64encode(hashlib.sha256(self.s3_secret_key.encode()).digest()).decode()
        )

    @classmethod
    def load_or_create(cls, root: Path) -> Secrets:
        path = root / "secrets.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        made = cls(
            "referrals-" + secrets.token_hex(4),
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            "referrals-sse:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        path.write_text(json.dumps(asdict(made)))
        path.chmod(0o600)
        return made


def start(
    root: Path,
    console: Console,
    *,
    prefer_dev_ports: bool = False,
    databases: tuple[str, ...] = DATABASES,
    timeout: float = 120.0,
) -> StackInfo:
    """Install what is missing, start the parts concurrently, wait until each is ready.

    If any part fails, the parts already started are stopped before the error propagates.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    kafka_home, minio_bin, pg_bin, _ = install.ensure_all(console)
    creds = Secrets.load_or_create(root)

    def port(name: str) -> int:
        return free_port(DEV_PORTS[name] if prefer_dev_ports else None)

    started: list[parts.Running] = []
    began = time.monotonic()
    try:
        kafka, bootstrap = parts.start_kafka(kafka_home, root / "kafka", port("kafka"))
        started.append(kafka)
        minio, s3, s3_console = parts.start_minio(
            minio_bin,
            root / "minio",
            creds.s3_access_key,
            creds.s3_secret_key,
            creds.kms_key(),
            port("minio"),
            port("minio_console"),
        )
        started.append(minio)
        pg, dsn = parts.start_postgres(
            pg_bin, root / "postgres", creds.postgres_password, port("postgres")
        )
        started.append(pg)
        sms_token = secrets.token_urlsafe(24)
        sinks, sink = parts.start_sinks(root, port("mailsink"), port("smssink"), sms_token)
        started.append(sinks)
        probes = {"kafka": bootstrap, "minio": s3, "postgres": dsn, "sinks": sink.probe}
        with (
            console.status("waiting for Kafka, MinIO, PostgreSQL and the mail and SMS sinks…"),
            ThreadPoolExecutor(max_workers=4) as pool,
        ):
            futures = [pool.submit(parts.wait_ready, r, probes[r.name], timeout) for r in started]
            for fut in futures:
                fut.result()
        info = StackInfo(
            root=str(root),
            kafka_bootstrap=bootstrap,
            s3_endpoint=s3,
            s3_console=s3_console,
            s3_access_key=creds.s3_access_key,
            s3_secret_key=creds.s3_secret_key,
            postgres_dsn=dsn,
            smtp=sink.smtp,
            mail_dir=str(sink.mail_dir),
            sms_url=sink.sms_url,
            sms_dir=str(sink.sms_dir),
            sms_auth_token=sms_token,
            pids={r.name: r.pid for r in started},
            logs={r.name: str(r.log) for r in started},
            started_at=process_clock(),
        )
        info.database_dsns = asyncio.run(provision_databases(dsn, databases, creds))
        # The documents bucket and the services' own MinIO users (never the root user).
        users = object_store.provision(s3, creds.s3_access_key, creds.s3_secret_key)
        info.s3_users = {
            service: {"access_key": user.access_key, "secret_key": user.secret_key}
            for service, user in users.items()
        }
        info.save()
        _restart_minio_after_provisioning(info, started, timeout)
        console.print(f"[green]✓[/] stack ready in {time.monotonic() - began:.1f} s")
        return info
    except BaseException:
        for running in reversed(started):
            stop_group(running.pid)
        raise


def _restart_minio_after_provisioning(
    info: StackInfo, started: list[parts.Running], timeout: float
) -> None:
    """Start MinIO again once its users are made, to give back what provisioning kept.

    MinIO's admin API derives the key of each request's and each answer's encrypted body with
    Argon2id (64 MiB a derivation) and keeps those buffers for good: making the services' users
    left it ~190 MiB larger (measured: 81 → 273 MiB PSS, 5 admin calls), for the whole life of
    the process. Restarted on the same drive, ports and keys, it keeps the users and the bucket
    and starts at its size before (~75 MiB); the services are not started yet."""
    from devstack import faults  # faults builds on this module

    faults.stop_minio(info, hard=False)
    faults.start_minio(info, timeout=timeout)
    started[:] = [
        parts.Running(r.name, info.pids["minio"], r.log) if r.name == "minio" else r
        for r in started
    ]


async def provision_databases(
    admin_dsn: str, names: tuple[str, ...], creds: Secrets
) -> dict[str, str]:
    """One database and one login role per service (and the web app): none can read another's
    tables."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    dsns: dict[str, str] = {}
    try:
        host_port = admin_dsn.rsplit("@", 1)[1].split("/", 1)[0]
        for name in names:
            password = f"{name}-{creds.postgres_password}"
            role_exists = await conn.fetchval("select 1 from pg_roles where rolname = $1", name)
            verb = "alter" if role_exists else "create"
            # Identifiers cannot be bound parameters; names come from our own constant list.
            await conn.execute(f"{verb} role \"{name}\" login password '{password}'")
            if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
                await conn.execute(f'create database "{name}" owner "{name}"')
                await conn.execute(f'revoke all on database "{name}" from public')
            dsns[name] = f"postgresql://{name}:{password}@{host_port}/{name}"
    finally:
        await conn.close()
    return dsns


def stop(info: StackInfo) -> None:
    """Stop every part (Kafka first, so it can shut down cleanly while the others still run)."""
    # "mailsink" and "smssink": the two processes a stack started before the sinks shared one
    for name in ("kafka", "minio", "postgres", "sinks", "mailsink", "smssink"):
        pid = info.pids.get(name)
        if pid is not None and info.owns(pid):
            stop_group(pid, timeout=30)


def purge(root: Path) -> None:
    """Remove a stopped stack's data directory."""
    if root.exists():
        shutil.rmtree(root)


def resolve_root(root: str | None) -> Path:
    return Path(root or os.environ.get("DEVSTACK_ROOT", ".devstack")).resolve()
