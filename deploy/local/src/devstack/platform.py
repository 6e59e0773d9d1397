"""The five services on top of the local stack (each one process, or every role its own), the
patient's web app and a trace viewer.

`start(stack, ...)` runs, in order:

1. the trace viewer (Zipkin, from Maven Central, with its web UI) in the background;
2. every service's migrations (one process per service, side by side);
3. provisioning (`devstack.provision`: sample centers, their inbox topics, the demo's keys), once
   per stack: the keys are kept in `<root>/keys.json` (mode 600);
4. every service as one process running all its long-running roles
   (`python -m referrals_<service>.cli all`), forked by the launcher (`devstack.launcher`,
   process `launcher`, started first) from the libraries it imported once, so that the six
   Python processes share those pages; or with `processes="role"` every role as its own
   process (`python -m referrals_<service>.cli <role>`, started on its own), as
   deploy/roles.yaml lists them (`devstack.roles`): API, consumer and outbox relay, partners'
   scheduler and notifications' sender;
5. the patient's web app (frontend/, `python -m referrals_web`, forked by the launcher too): its
   migrations, a staff account of the center console for one sample center (with that center's
   key) and an operator of the ops screen (/ops), then its server, talking to the public APIs
   with the front end's key (and the ops screen with the operator key), its one-time codes
   going to the mail sink, and htmx from the npm tool set deploy/local/node/web;
6. Prometheus scraping every process, with the platform's recording and alert rules, and
   Alertmanager sending its alerts to the mail sink (`devstack.monitoring`);
7. waits until each API and the web app answer `/health`, each other process serves its
   metrics, and Prometheus and Alertmanager say they are ready.

Secrets (case-token signing key, field keys, notifications' key pair, key peppers) are made once
per stack in `<root>/platform-secrets.json` (mode 600). Every process exports its spans to the
trace viewer and serves Prometheus metrics (`/metrics` on the API port, else its own port).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, TypedDict

from rich.console import Console

from devstack import install, launcher, monitoring, roles
from devstack.parts import Running
from devstack.process import (
    FEW_MALLOC_ARENAS,
    StartupError,
    free_port,
    spawn,
    started_before,
    stop_group,
    wait_until,
)
from devstack.process import (
    clock as process_clock,
)
from devstack.provision import SampleKeys
from devstack.stack import Secrets, StackInfo, provision_databases
from referrals_common.contracts import topics
from referrals_common.messaging.kafka import ensure_topics

MANIFEST = roles.load()
ROLES: dict[str, tuple[str, ...]] = MANIFEST.roles()
"""service → its long-running roles (deploy/roles.yaml)."""
DEV_API_PORTS = MANIFEST.api_ports()
"""The ports a developer's APIs prefer: the ones they have in containers (deploy/roles.yaml)."""
WEB = "web"
"""The patient's web app: its process name, its database (`devstack.stack.DATABASES`) and its npm
tool set (deploy/local/node/web: htmx)."""
DEV_WEB_PORT = MANIFEST.services[WEB].api_port or 8010
WEB_ENV_FILE = "web-env.json"
CONSOLE_STAFF = {
    "center": "sample-breast-center-berlin",
    "email": "doctor@sample-breast-center-berlin.localhost",
    "name": "Dr. Lena Sample",
}
"""The center console's staff member `start` makes: of the center a C50 case for Germany goes to
first (`centers.sample.yaml`), so `make demo`-like cases reach the console."""
OPS_OPERATOR = {"email": "operator@referrals.localhost", "name": "Olha Operator"}
"""The ops screen's operator `start` makes (/ops): signs in with a code from the mail sink."""
DEV_ZIPKIN_PORT = 9411
DEV_METRICS_BASE = 9460
STATE_FILE = "platform.json"
LAUNCHER = "launcher"
LAUNCHER_SOCKET = "launcher.sock"
ENV_FILE = "platform-env.json"
POOL_SIZE = 4
"""PostgreSQL connections each platform process keeps at most (`REFERRALS_POSTGRES__POOL_SIZE`)."""
ZIPKIN_VERSION = "3.6.1"
ZIPKIN_MAX_SPANS = int(os.environ.get("DEVSTACK_ZIPKIN_SPANS", "6000"))
"""Spans Zipkin's in-memory storage keeps: beyond it, the oldest traces are dropped. 6,000 is
about 25 journeys like `make demo`'s (at most ~230 spans each, quick database statements being
counted on their parent span rather than kept: `referrals_common.statement_digest`): a small
clinic's recent hours. Its heap (`ZIPKIN_HEAP`) is what the JVM adds to a floor of ~120 MiB, so
the two are set together (`DEVSTACK_ZIPKIN_SPANS`, `DEVSTACK_ZIPKIN_HEAP`) where more history is
wanted."""
ZIPKIN_HEAP = os.environ.get("DEVSTACK_ZIPKIN_HEAP", "48m")
"""Zipkin's maximum heap: `ZIPKIN_MAX_SPANS` spans of the platform's size (about 2 KiB of heap
each), with room for the queries and the intake of a burst (measured: 150,000 spans sent at
~3,000 a second, each 3,000 answered by a query for every trace of the last day: 6,000 and 7,500
kept in 48m, peak 173-178 MiB PSS, no error (3 runs of 7,500); 10,000 in 48m and 6,000 in 40m ran
out of heap; 10,000 in 64m had been 201-205, 20,000 in 128m 247)."""
ZIPKIN_BLOCKING_THREADS = int(os.environ.get("DEVSTACK_ZIPKIN_BLOCKING_THREADS", "8"))
"""Threads of Zipkin's server (Armeria) for the span intake and queries. Armeria's default of 200
is reached by any steady intake (its pool makes a thread per task until it has them all), and
their stacks took ~19 MiB: measured, 20,000 spans posted, 162 → 143 MiB PSS with 8 (222 → 30
threads), the same CPU; 144,000 spans from 12 clients at once were stored at ~5,700 a second
with 8 against ~7,700 with 200, on a machine two other jobs were busy with, several times what
the platform sends."""
ZIPKIN_JAVA_OPTIONS = (
    "-Xms32m",
    f"-Xmx{ZIPKIN_HEAP}",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    f"-Dcom.linecorp.armeria.numCommonBlockingTaskThreads={ZIPKIN_BLOCKING_THREADS}",
)
"""Zipkin's JVM options, the same for `make up`, Compose and Kubernetes (tests/deploy checks)."""


class ProcessCommand(TypedDict):
    """How one process was started: its argv and the variables of that process only."""

    argv: list[str]
    env: dict[str, str]


@dataclass
class PlatformInfo:
    """Where every process of a running platform is."""

    root: str
    apis: dict[str, str]
    """service → base URL of its HTTP API."""
    trace_viewer: str = ""
    """Base URL of the Zipkin UI and API, or empty when started without one."""
    web: str = ""
    """Base URL of the patient's web app (process `web`), or empty when started without it."""
    staff: dict[str, str] = field(default_factory=dict)
    """The center console's staff account (`email`, `name`, `center`), made with the web app."""
    operator: dict[str, str] = field(default_factory=dict)
    """The ops screen's operator account (`email`, `name`), made with the web app."""
    pids: dict[str, int] = field(default_factory=dict)
    """`<service>` (or `<service>-<role>`, one process per role), `web` and `zipkin` → pid."""
    logs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    """process name (`<service>` or `<service>-<role>`) → URL of its Prometheus metrics."""
    prometheus: str = ""
    """Base URL of Prometheus (its UI and HTTP API), or empty when started without it."""
    alertmanager: str = ""
    """Base URL of Alertmanager, or empty when started without it."""
    launcher: str = ""
    """The socket of the launcher (process `launcher`, `devstack.launcher`) that forked the
    service processes and the web app from its preloaded libraries, or empty when each was
    started on its own (one process per role)."""
    keys_file: str = ""
    started_at: float = 0.0  # on devstack.process.clock(): seconds since boot
    commands: dict[str, ProcessCommand] = field(default_factory=dict)
    """process name → {"argv": [...], "env": {variables of that process only}}: what
    `restart` runs again (the shared environment is in `platform-env.json`, mode 600; the web
    app's own, all of it, in `web-env.json`, mode 600)."""

    def save(self) -> Path:
        path = Path(self.root) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, root: Path) -> PlatformInfo | None:
        path = root / STATE_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def alive(self) -> dict[str, bool]:
        return {name: self.owns(pid) for name, pid in self.pids.items()}

    def owns(self, pid: int) -> bool:
        """Whether `pid` is still the process this platform started (see `started_before`)."""
        return started_before(pid, self.started_at)

    def keys(self) -> SampleKeys:
        """The sample keys `devstack.provision` made for this platform."""
        keys: SampleKeys = json.loads(Path(self.keys_file).read_text())
        return keys

    def probe_url(self, name: str) -> str:
        """What says whether process `name` works: Zipkin's and an API's `/health`, another
        process's metrics."""
        if name == "zipkin":
            return f"{self.trace_viewer}/health"
        if name == WEB:
            return f"{self.web}/health"
        if name in {"prometheus", "alertmanager"}:
            return f"{getattr(self, name)}/-/ready"
        service = name.split("-", 1)[0]
        if (name.endswith("-api") or name == service) and service in self.apis:
            return f"{self.apis[service]}/health"
        return self.metrics.get(name, "")

    def health(self) -> dict[str, str]:
        """`up` (alive and answering its probe), `unhealthy` (alive, but its probe fails or
        times out: a trace viewer out of heap, a hung process) or `down`, per process."""
        alive = self.alive()

        def state(name: str) -> str:
            if not alive[name]:
                return "down"
            url = self.probe_url(name)
            if not url:
                return "up"
            works = (
                zipkin_healthy(self.trace_viewer)
                if name == "zipkin"
                else _http_ok(url, expect_json=name != WEB)
            )
            return "up" if works else "unhealthy"

        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(self.pids, pool.map(state, self.pids), strict=True))


# ------------------------------------------------------------------------------- secrets, env


def platform_secrets(root: Path) -> dict[str, str]:
    """The services' own secrets (and the web app's session key), made once per stack and kept
    private to its user; a stack made before the web app existed gets its key added."""
    import secrets

    path = root / "platform-secrets.json"
    if path.exists():
        kept: dict[str, str] = json.loads(path.read_text())
        if "web_session_secret" not in kept:
            kept["web_session_secret"] = secrets.token_urlsafe(32)
            path.write_text(json.dumps(kept))
            path.chmod(0o600)
        if "partners_policy_private_key" not in kept:
            from referrals_common.crypto import SealedBox

            policy_private, policy_public = SealedBox.generate_keypair_base64()
            kept["partners_policy_private_key"] = policy_private
            kept["partners_policy_public_key"] = policy_public
            path.write_text(json.dumps(kept))
            path.chmod(0o600)
        return kept
    from referrals_common.auth.case_tokens import generate_private_key_pem
    from referrals_common.crypto import FieldCipher, SealedBox

    private, public = SealedBox.generate_keypair_base64()
    policy_private, policy_public = SealedBox.generate_keypair_base64()
    made = {
        "signing_key_pem": generate_private_key_pem().decode(),
        "intake_field_key": FieldCipher.generate_key_base64(),
        "partners_field_key": FieldCipher.generate_key_base64(),
        "notifications_private_key": private,
        "notifications_public_key": public,
        "partners_policy_private_key": policy_private,
        "partners_policy_public_key": policy_public,
        "intake_pepper": secrets.token_urlsafe(24),
        "records_pepper": secrets.token_urlsafe(24),
        "partners_pepper": secrets.token_urlsafe(24),
        "web_session_secret": secrets.token_urlsafe(32),
    }
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


def environment(
    stack: StackInfo, secrets: dict[str, str], apis: dict[str, str], zipkin: str
) -> dict[str, str]:
    """Every variable the five services read (each takes its own prefix, see settings.py)."""
    from referrals_common.auth.case_tokens import public_jwks

    jwks = json.dumps(public_jwks(secrets["signing_key_pem"].encode()))
    env = {
        **stack.env(),
        "REFERRALS_ENVIRONMENT": "development",
        # `start` migrates every service once, before starting the roles.
        "REFERRALS_MIGRATE_ON_START": "false",
        "REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM": secrets["signing_key_pem"],
        "REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY": secrets["intake_field_key"],
        "REFERRALS_INTAKE_API_KEY_PEPPER": secrets["intake_pepper"],
        "REFERRALS_INTAKE_NOTIFICATIONS_PUBLIC_KEY": secrets["notifications_public_key"],
        "REFERRALS_INTAKE_PARTNERS_PUBLIC_KEY": secrets["partners_policy_public_key"],
        "REFERRALS_INTAKE_PUBLIC_BASE_URL": apis["intake"],
        "REFERRALS_RECORDS_PUBLIC_BASE_URL": apis["records"],
        "REFERRALS_PARTNERS_PUBLIC_BASE_URL": apis["partners"],
        "REFERRALS_RECORDS_CASE_TOKEN_JWKS": jwks,
        "REFERRALS_RECORDS_API_KEY_PEPPER": secrets["records_pepper"],
        "REFERRALS_PARTNERS_CASE_TOKEN_JWKS": jwks,
        "REFERRALS_PARTNERS_API_KEY_PEPPER": secrets["partners_pepper"],
        "REFERRALS_PARTNERS_FIELD_ENCRYPTION_KEY": secrets["partners_field_key"],
        "REFERRALS_PARTNERS_POLICY_PRIVATE_KEY": secrets["partners_policy_private_key"],
        "REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY": secrets["notifications_private_key"],
        "REFERRALS_NOTIFICATIONS_OPS_EMAIL": "ops@referrals.localhost",
        "REFERRALS_NOTIFICATIONS_SMTP__FROM_NAME": "Second opinion (local)",
        # One small machine: a process is one event loop on one core at most, and 4 statements
        # in flight keep it busy (its consumers' partitions, its relay, its API), where each
        # further PostgreSQL backend held ~4 MiB for good once a burst had opened it. Measured
        # under bench/pipeline.py's load: 8 a process, 64 backends and 253-286 MiB; 4, 40
        # backends and 180-198 MiB (Kubernetes: 10 per pod).
        "REFERRALS_POSTGRES__POOL_SIZE": str(POOL_SIZE),
        "PYTHONUNBUFFERED": "1",
    }
    if zipkin:
        env |= trace_environment(zipkin)
        # The ops timeline (partners' GET /v1/ops/cases/{id}/timeline) reads the viewer's API.
        env["REFERRALS_PARTNERS_TRACE_VIEWER_URL"] = zipkin
    return env


def web_environment(
    stack: StackInfo,
    secrets: dict[str, str],
    apis: dict[str, str],
    web: str,
    front_end_key: str,
    vendor_dir: Path,
    zipkin: str,
    ops_key: str = "",
) -> dict[str, str]:
    """Every variable the patient's web app reads (`REFERRALS_WEB_*`), and nothing of the
    services': it reaches the platform only through the public APIs, as a front end, with the
    front end's API key (`keys.json`), and for the ops screen with the operator key; its
    one-time codes go to the mail sink, or by text to the SMS sink (the same Twilio-compatible
    account as notifications', its address the one loopback entry of the web app's outbound
    guard)."""
    smtp_host, smtp_port = stack.smtp.rsplit(":", 1) if stack.smtp else ("127.0.0.1", "25")
    env = {
        "REFERRALS_WEB_ENVIRONMENT": "development",
        "REFERRALS_WEB_INTAKE_URL": apis["intake"],
        "REFERRALS_WEB_RECORDS_URL": apis["records"],
        "REFERRALS_WEB_PARTNERS_URL": apis["partners"],
        "REFERRALS_WEB_FRONT_END_API_KEY": front_end_key,
        "REFERRALS_WEB_OPS_API_KEY": ops_key,
        "REFERRALS_WEB_POSTGRES__DSN": stack.database_dsns[WEB],
        "REFERRALS_WEB_SMTP__HOST": smtp_host,
        "REFERRALS_WEB_SMTP__PORT": smtp_port,
        "REFERRALS_WEB_VENDOR_DIR": str(vendor_dir),
        "REFERRALS_WEB_SESSION_SECRET": secrets["web_session_secret"],
        "REFERRALS_WEB_PUBLIC_BASE_URL": web,
        "OTEL_SERVICE_NAME": WEB,
        "OTEL_RESOURCE_ATTRIBUTES": f"referrals.role={WEB}",
        "PYTHONUNBUFFERED": "1",
        **stack.sms_env("WEB"),
    }
    return env | trace_environment(zipkin)


def add_console_staff(keys: SampleKeys, web_env: dict[str, str], logs: Path) -> dict[str, str]:
    """A staff account of the center console for `CONSOLE_STAFF`'s center (or, with another
    registry, its first center), made with the web app's own CLI and that center's key (given
    in the environment, never on the command line); again on every start, which changes
    nothing but keeps the key the stack has."""
    centers = keys["centers"]
    staff = dict(CONSOLE_STAFF)
    if staff["center"] not in centers:
        staff["center"] = sorted(centers)[0]
        staff["email"] = f"doctor@{staff['center']}.localhost"
    argv = [sys.executable, "-m", "referrals_web", "staff", "add"]
    argv += ["--email", staff["email"], "--center", staff["center"], "--name", staff["name"]]
    _run_all(
        {f"{WEB}-staff": argv},
        {**web_env, "REFERRALS_WEB_CENTER_KEY": centers[staff["center"]]},
        logs,
        "the console's staff account",
    )
    return staff


def add_ops_operator(web_env: dict[str, str], logs: Path) -> dict[str, str]:
    """The ops screen's operator (`OPS_OPERATOR`), made with the web app's own CLI; again on
    every start, which changes nothing."""
    argv = [sys.executable, "-m", "referrals_web", "ops", "add"]
    argv += ["--email", OPS_OPERATOR["email"], "--name", OPS_OPERATOR["name"]]
    _run_all({f"{WEB}-operator": argv}, web_env, logs, "the ops screen's operator account")
    return dict(OPS_OPERATOR)


def ensure_web_vendor(console: Console) -> Path:
    """The directory the web app serves htmx from: `htmx.min.js` of the pinned npm tool set
    deploy/local/node/web, installed with `npm ci` on first use."""
    vendor = install.ensure_node_tool(console, WEB) / "node_modules" / "htmx.org" / "dist"
    if not (vendor / "htmx.min.js").is_file():
        raise install.InstallError(f"`npm ci` finished but {vendor}/htmx.min.js does not exist")
    return vendor


TRACE_EXPORT_DELAY_MS = int(os.environ.get("DEVSTACK_TRACE_EXPORT_DELAY_MS", "2000"))
"""How often a process sends the spans it finished to the trace viewer (the SDK's default is
5 s; Compose and Kubernetes keep it). Zipkin spends ~1 ms of CPU on a POST whatever its size and
~30 µs a span (measured: 6,000 spans in POSTs of 5 took 950-1,750 CPU-ms, in POSTs of 50,
300-320), and each process as much again to send it: every 0.5 s, as before, a dozen processes
sent small POSTs all through a run. A step's trace is complete 2 s after it."""


def trace_environment(zipkin: str) -> dict[str, str]:
    """The OpenTelemetry variables that send a process's spans to the trace viewer at `zipkin`
    (none when it is empty): for the services, the demo's front end and the sample center."""
    if not zipkin:
        return {"OTEL_TRACES_EXPORTER": "none"}
    return {
        "OTEL_TRACES_EXPORTER": "zipkin",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{zipkin}/api/v2/spans",
        "OTEL_BSP_SCHEDULE_DELAY": str(TRACE_EXPORT_DELAY_MS),
    }


# ------------------------------------------------------------------------------- trace viewer


def ensure_zipkin(console: Console) -> Path:
    """The Zipkin server's slim executable jar (API and web UI, memory storage, HTTP span intake;
    none of the Kafka, RabbitMQ or Scribe collectors nor Cassandra storage, which the platform
    does not use: ~20 MiB less memory than the full jar), resolved once from Maven Central."""
    home = install.cache_dir() / f"zipkin-{ZIPKIN_VERSION}"
    jar = home / f"zipkin-server-{ZIPKIN_VERSION}-slim.jar"
    if jar.exists():
        return jar
    install._require("java", "install a Java 17+ runtime (e.g. Debian's openjdk-17-jre-headless)")
    mvn = install._require("mvn", "install Apache Maven (e.g. Debian's maven)")
    home.mkdir(parents=True, exist_ok=True)
    install._run_with_progress(
        console,
        [
            mvn,
            "-B",
            "dependency:copy",
            f"-Dartifact=io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:slim",
            f"-DoutputDirectory={home}",
        ],
        cwd=home,
        what=f"resolving the Zipkin {ZIPKIN_VERSION} trace viewer from Maven Central (86 MB)",
    )
    if not jar.exists():
        raise install.InstallError(f"Maven finished but {jar} does not exist")
    return jar


def start_zipkin(
    jar: Path,
    data: Path,
    port: int,
    *,
    max_spans: int = ZIPKIN_MAX_SPANS,
    heap: str = ZIPKIN_HEAP,
) -> tuple[Running, str]:
    """Zipkin with in-memory storage on loopback: its UI, its query API and span intake.

    Bounded: the storage keeps at most `max_spans` spans (the oldest traces go first), which
    fit in its `heap` (defaults: `ZIPKIN_MAX_SPANS`, `ZIPKIN_HEAP`); should the heap run out
    all the same, the JVM exits rather than linger failing every request (`devstack status`
    then shows it down, and `make up` starts it again)."""
    log = data / "zipkin.log"
    proc = spawn(
        [
            "java",
            *(
                f"-Xmx{heap}" if option.startswith("-Xmx") else option
                for option in ZIPKIN_JAVA_OPTIONS
            ),
            "-jar",
            str(jar),
            f"--armeria.ports[0].port={port}",
            "--armeria.ports[0].ip=127.0.0.1",
            "--armeria.ports[0].protocols=http",
            "--logging.level.root=WARN",
        ],
        log=log,
        env={"STORAGE_TYPE": "mem", "MEM_MAX_SPANS": str(max_spans), **FEW_MALLOC_ARENAS},
        cwd=data,
    )
    return Running("zipkin", proc.pid, log), f"http://127.0.0.1:{port}"


def zipkin_healthy(base: str) -> bool:
    """Whether the Zipkin at `base` reports itself and its storage UP on `/health` (within two
    seconds): a JVM that ran out of heap may keep its pid and port while failing every call."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:  # noqa: S310
            return bool(json.load(response).get("status") == "UP")
    except (OSError, ValueError, AttributeError):
        return False


def _http_ok(url: str, *, expect_json: bool = True) -> bool:
    """Whether `url` answers 2xx; an API's `/health` must also answer JSON, as a metrics
    server that took the API's port answers every path with Prometheus text (the web app's,
    `expect_json=False`, may answer any type: it shares its port with no metrics server)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
            if (
                expect_json
                and url.endswith("/health")
                and response.headers.get_content_type() != "application/json"
            ):
                return False
            status: int = response.status
            return 200 <= status < 300
    except OSError:
        return False


# ------------------------------------------------------------------------------- the services


def _module(service: str) -> str:
    return f"referrals_{service}.cli"


Processes = Literal["service", "role"]
"""How a platform runs its services: one process each (`referrals-<service> all`), or one
process per role (`<service>-<role>`), as Compose and Kubernetes do."""
ALL_ROLES = "all"


def service_processes(processes: Processes) -> list[tuple[str, str, str]]:
    """(service, role, process name) of each service process: the role `all` named after its
    service, or every long-running role of deploy/roles.yaml named `<service>-<role>`."""
    if processes == "service":
        return [(svc, ALL_ROLES, svc) for svc in ROLES]
    return [
        (svc, role, f"{svc}-{role}")
        for svc, service_roles in ROLES.items()
        for role in service_roles
    ]


def _run_all(argvs: dict[str, list[str]], env: dict[str, str], logs: Path, what: str) -> None:
    """Run one-off commands side by side; fail with the failing one's log."""
    procs = {name: spawn(argv, log=logs / f"{name}.log", env=env) for name, argv in argvs.items()}
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise StartupError(f"{name} ({what})", f"exit {proc.returncode}", logs / f"{name}.log")


def start(
    stack: StackInfo,
    console: Console,
    *,
    prefer_dev_ports: bool = False,
    trace_viewer: bool = True,
    web: bool = True,
    timeout: float = 120.0,
    extra_env: dict[str, str] | None = None,
    metrics_stack: bool = True,
    prometheus_rules: dict[str, str] | None = None,
    processes: Processes = "service",
) -> PlatformInfo:
    """Start every service's processes and the patient's web app (unless `web=False`) on
    `stack` (see the module doc); stop them on failure. `extra_env` adds or overrides service
    settings (the tests' shorter information-request timings); `metrics_stack=False` starts
    no Prometheus or Alertmanager; `prometheus_rules` replaces or adds rule files by name.
    `processes="role"` runs every role of a service as its own process, as Compose and
    Kubernetes do (what the chaos tests kill one by one); by default each service is one
    process (`referrals-<service> all`), as fits one small machine."""
    root = Path(stack.root)
    logs = root / "services"
    logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def port(preferred: int) -> int:
        return free_port(preferred if prefer_dev_ports else None)

    apis = {svc: f"http://127.0.0.1:{port(p)}" for svc, p in DEV_API_PORTS.items()}
    started: list[Running] = []
    forker: Running | None = None
    info = PlatformInfo(root=str(root), apis=apis, started_at=process_clock())
    if web:
        if WEB not in stack.database_dsns:  # a stack started before the web app existed
            stack.database_dsns |= asyncio.run(
                provision_databases(stack.postgres_dsn, (WEB,), Secrets.load_or_create(root))
            )
            stack.save()
        info.web = f"http://127.0.0.1:{port(DEV_WEB_PORT)}"
    try:
        vendor = ensure_web_vendor(console) if web else None
        binaries = monitoring.ensure_prometheus(console) if metrics_stack else None
        zipkin = ""
        if trace_viewer:
            jar = ensure_zipkin(console)
            viewer, zipkin = start_zipkin(jar, root / "zipkin", port(DEV_ZIPKIN_PORT))
            started.append(viewer)
            info.trace_viewer = zipkin
        if processes == "service":
            # Started early: importing the shared libraries takes seconds, which the
            # migrations and provisioning below overlap.
            sock = root / LAUNCHER_SOCKET
            proc = spawn(
                [sys.executable, "-m", "devstack.launcher", str(sock)],
                log=logs / "launcher.log",
                # Read by glibc when a process starts: the forked processes inherit it.
                env=FEW_MALLOC_ARENAS,
            )
            forker = Running(LAUNCHER, proc.pid, logs / "launcher.log")
            info.launcher = str(sock)
        env = environment(stack, platform_secrets(root), apis, zipkin) | (extra_env or {})
        (root / "platform.env").write_text(
            "".join(f"export {k}={json.dumps(v)}\n" for k, v in env.items())
        )
        (root / "platform.env").chmod(0o600)
        (root / ENV_FILE).write_text(json.dumps(env))
        (root / ENV_FILE).chmod(0o600)
        with console.status("migrating the five services' databases…"):
            _run_all(
                {f"{s}-migrate": [sys.executable, "-m", _module(s), "migrate"] for s in ROLES},
                env,
                logs,
                "migrations",
            )
        # Every platform topic exists before any relay publishes: auto-creation is off, and a
        # topic nobody consumes (notifications') would otherwise never be created.
        asyncio.run(ensure_topics(stack.kafka_bootstrap, list(topics.PLATFORM_TOPICS)))
        keys_file = root / "keys.json"
        if not keys_file.exists():
            with console.status("loading the sample cancer centers and making the demo's keys…"):
                out = subprocess.run(
                    [sys.executable, "-m", "devstack.provision"],
                    env={**_os_environ(), **env},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    raise StartupError("provisioning", out.stderr[-3000:], None)
                keys_file.write_text(out.stdout)
                keys_file.chmod(0o600)
        info.keys_file = str(keys_file)
        web_env: dict[str, str] = {}
        if vendor is not None:
            web_env = web_environment(
                stack,
                platform_secrets(root),
                apis,
                info.web,
                info.keys()["front_end"],
                vendor,
                zipkin,
                ops_key=info.keys()["ops"],
            )
            (root / WEB_ENV_FILE).write_text(json.dumps(web_env))
            (root / WEB_ENV_FILE).chmod(0o600)
            with console.status("migrating the web app's database…"):
                _run_all(
                    {f"{WEB}-migrate": [sys.executable, "-m", "referrals_web", "migrate"]},
                    web_env,
                    logs,
                    "migrations",
                )
            info.staff = add_console_staff(info.keys(), web_env, logs)
            info.operator = add_ops_operator(web_env, logs)
        if forker is not None:
            wait_until(
                LAUNCHER,
                partial(launcher.ready, Path(info.launcher)),
                pid=forker.pid,
                log=forker.log,
                timeout=timeout,
            )
        metrics_port = DEV_METRICS_BASE
        for svc, role, name in service_processes(processes):
            api = svc in apis if role == ALL_ROLES else MANIFEST.is_api(svc, role)
            api_port = int(apis[svc].rsplit(":", 1)[1]) if api else None
            if role == ALL_ROLES:
                command = [
                    ALL_ROLES,
                    *(["--host", "127.0.0.1", "--port", str(api_port)] if api else []),
                ]
            else:
                command = MANIFEST.command(svc, role, host="127.0.0.1", port=api_port)
            argv = [sys.executable, "-m", _module(svc), *command]
            own_env = {"OTEL_RESOURCE_ATTRIBUTES": f"referrals.role={role}"}
            if api:
                info.metrics[name] = f"{apis[svc]}/metrics"
            else:
                mport = port(metrics_port)
                metrics_port += 1
                own_env |= {
                    "REFERRALS_METRICS__HOST": "127.0.0.1",
                    "REFERRALS_METRICS__PORT": str(mport),
                }
                info.metrics[name] = f"http://127.0.0.1:{mport}/metrics"
            log = logs / f"{name}.log"
            info.commands[name] = {"argv": argv, "env": own_env}
            started.append(Running(name, _start(info, argv, log, {**env, **own_env}), log))
        if web_env:
            # Only its own variables: the web app holds none of the services' secrets.
            argv = [sys.executable, "-m", "referrals_web", "serve"]
            argv += ["--host", "127.0.0.1", "--port", info.web.rsplit(":", 1)[1]]
            log = logs / f"{WEB}.log"
            info.commands[WEB] = {"argv": argv, "env": {}}
            started.append(Running(WEB, _start(info, argv, log, web_env), log))
        if binaries is not None:
            alerting, info.alertmanager = monitoring.start_alertmanager(
                binaries,
                root / "alertmanager",
                port(monitoring.DEV_ALERTMANAGER_PORT),
                stack.smtp,
            )
            started.append(alerting)
            scraping, info.prometheus = monitoring.start_prometheus(
                binaries,
                root / "prometheus",
                port(monitoring.DEV_PROMETHEUS_PORT),
                info.metrics,
                info.alertmanager,
                rules=prometheus_rules,
            )
            started.append(scraping)
        info.pids = {r.name: r.pid for r in started}
        info.logs = {r.name: str(r.log) for r in started}
        if forker is not None:
            info.pids[LAUNCHER] = forker.pid
            info.logs[LAUNCHER] = str(forker.log)
        # Every process started has metrics, else one of the probes set below.
        probes = {r.name: info.metrics.get(r.name, "") for r in started}
        for name in ("prometheus", "alertmanager"):
            if getattr(info, name):
                probes[name] = info.probe_url(name)
        probes.update(
            {
                f"{svc}-api" if processes == "role" else svc: f"{url}/health"
                for svc, url in apis.items()
            }
        )
        if zipkin:
            probes["zipkin"] = f"{zipkin}/health"
        if web_env:
            probes[WEB] = f"{info.web}/health"
        with (
            console.status(
                "waiting for the services, the web app, the trace viewer and Prometheus…"
            ),
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            futures = [
                pool.submit(
                    wait_until,
                    r.name,
                    partial(_http_ok, probes[r.name], expect_json=r.name != WEB),
                    pid=r.pid,
                    log=r.log,
                    timeout=timeout,
                    interval=0.3,
                )
                for r in started
            ]
            for fut in futures:
                fut.result()
        info.started_at = process_clock()  # after the last process started (see `owns`)
        info.save()
        others = bool(web_env) + bool(zipkin) + 2 * bool(info.prometheus)
        parts = [f"{len(started) - others} service processes"]
        parts += [*(["the web app"] if web_env else []), *(["the trace viewer"] if zipkin else [])]
        parts += ["Prometheus and Alertmanager"] if info.prometheus else []
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        console.print(f"[green]✓[/] {listed} ready in {time.monotonic() - began:.1f} s")
        return info
    except BaseException:
        for running in reversed(started):
            stop_group(running.pid, timeout=10)
        if forker is not None:
            stop_group(forker.pid, timeout=10)
        raise


def _start(info: PlatformInfo, argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Start a service process (or the web app) with `env` added to devstack's environment, as
    `spawn` does: forked by the platform's launcher when it has one that answers, else on its
    own; its pid."""
    if info.launcher:
        with contextlib.suppress(launcher.LauncherGone):
            sock = Path(info.launcher)
            return launcher.spawn(sock, argv, log=log, env={**_os_environ(), **env})
    return spawn(argv, log=log, env=FEW_MALLOC_ARENAS | env).pid


def exit_status(info: PlatformInfo, pid: int, *, timeout: float = 90.0) -> int | None:
    """The exit status of a platform process that ended (None: still running at `timeout`)."""
    if info.launcher:
        return launcher.exit_code(Path(info.launcher), pid, timeout=timeout)
    import psutil

    try:
        code: int | None = psutil.Process(pid).wait(timeout=timeout)
    except psutil.TimeoutExpired:
        return None
    return code


def _os_environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def kill(info: PlatformInfo, name: str) -> None:
    """SIGKILL one service process and its children, as a crash would (no clean shutdown)."""
    import os
    import signal

    pid = info.pids[name]
    if info.owns(pid):
        os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def restart(info: PlatformInfo, name: str, *, timeout: float = 120.0) -> int:
    """Start one service process again (after `kill` or a crash) with the command and
    environment it had; wait until it serves; return its new pid and record it."""
    command = info.commands[name]
    env = json.loads((Path(info.root) / (WEB_ENV_FILE if name == WEB else ENV_FILE)).read_text())
    log = Path(info.logs[name])
    pid = _start(info, command["argv"], log, {**env, **command["env"]})
    probe = info.probe_url(name)
    wait_until(
        name,
        lambda: _http_ok(probe, expect_json=name != WEB),
        pid=pid,
        log=log,
        timeout=timeout,
        interval=0.3,
    )
    info.pids[name] = pid
    info.started_at = process_clock()
    info.save()
    return pid


def stop(info: PlatformInfo) -> None:
    """Stop every service process (consumers first finish their batch on SIGTERM), then Zipkin."""
    names = [n for n in info.pids if n not in ("zipkin", LAUNCHER)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name in names:
            pid = info.pids[name]
            if info.owns(pid):
                pool.submit(stop_group, pid, timeout=15)
    forker = info.pids.get(LAUNCHER)
    if forker is not None and info.owns(forker):
        stop_group(forker, timeout=10)
    zipkin = info.pids.get("zipkin")
    if zipkin is not None and info.owns(zipkin):
        stop_group(zipkin, timeout=10)
