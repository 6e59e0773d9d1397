"""docker-compose.yml: accepted by the real Docker Compose CLI, and the whole platform in it.

The CLI is built from source once (`devstack.install.ensure_compose`, into the user cache) and
run as `docker compose config`, with a private DOCKER_CONFIG holding it as a CLI plugin; without
a `docker` client the plugin binary runs on its own. No Docker engine is needed: `config` parses,
interpolates, merges and validates the file against the Compose Specification.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from devstack import platform
from tests.deploy.support import (
    ANY_ADDRESS,
    API_PORTS,
    JOBS,
    METRICS_PORT,
    REPO,
    ROLES,
    SERVICES,
    TMP,
    WEB,
    WEB_COMMANDS,
    WEB_PORT,
    cli_commands,
    interpolate,
    is_pinned,
    platform_topics,
    uses_variable_without_default,
)

pytestmark = pytest.mark.deploy

COMPOSE_FILE = REPO / "docker-compose.yml"
# The first run builds the Compose CLI (about 1-2 minutes on two idle cores, more on a busy
# machine) inside the first test that needs it.
BUILDS_THE_CLI = pytest.mark.timeout(1200)
INFRASTRUCTURE = {"kafka", "minio", "postgres", "zipkin", "mailpit"}
# The trace viewer as the services reach it: the Compose service `zipkin` on its port.
ZIPKIN = "http://zipkin:9411"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as YAML sees it (anchors and merge keys resolved), before interpolation."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _labels(spec: dict[str, Any]) -> dict[str, str]:
    labels = spec.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) for item in labels)
    return labels


def _processes(services: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(service, role) -> compose service name, for every process of the five services."""
    found: dict[tuple[str, str], str] = {}
    for name, spec in services.items():
        labels = _labels(spec)
        if "referrals.service" in labels:
            key = (labels["referrals.service"], labels["referrals.role"])
            assert key not in found, f"{name} and {found[key]} are both {key}"
            found[key] = name
    return found


def _command(spec: dict[str, Any]) -> list[str]:
    command = spec.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would change what the file means (the
    variables it interpolates, COMPOSE_* settings): the defaults in the file are what is checked."""
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    return {
        k: v
        for k, v in os.environ.items()
        if k not in variables and not k.startswith(("COMPOSE_", "DOCKER_"))
    }


# ---- the real Compose CLI -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_cli() -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment that run `docker compose` (or the plugin binary alone)."""
    from devstack import install

    if shutil.which("go") is None and not _plugin_path(install).exists():
        pytest.skip("Go is needed once to build the Docker Compose CLI (devstack.install)")
    plugin = install.ensure_compose(Console(stderr=True))
    env = _clean_env()
    docker = shutil.which("docker")
    if docker is not None:
        env["DOCKER_CONFIG"] = str(plugin.parent.parent)
        return [docker, "compose"], env
    return [str(plugin)], env


def _plugin_path(install: Any) -> Path:
    return (
        install.cache_dir()
        / f"compose-{install.COMPOSE_VERSION}"
        / "docker-config"
        / "cli-plugins"
        / "docker-compose"
    )


def _run_compose(cli: tuple[list[str], dict[str, str]], *args: str) -> subprocess.CompletedProcess:
    argv, env = cli
    return subprocess.run(
        [*argv, "-f", str(COMPOSE_FILE), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@BUILDS_THE_CLI
def test_the_compose_cli_is_the_pinned_build(compose_cli: tuple[list[str], dict[str, str]]) -> None:
    from devstack import install

    argv, env = compose_cli
    done = subprocess.run([*argv, "version"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert install.COMPOSE_VERSION in done.stdout


@BUILDS_THE_CLI
def test_docker_compose_config_accepts_the_file(
    compose_cli: tuple[list[str], dict[str, str]],
) -> None:
    done = _run_compose(compose_cli, "config", "--quiet")
    assert done.returncode == 0, f"docker compose config refused docker-compose.yml:\n{done.stderr}"
    assert "WARN" not in done.stderr, done.stderr


@BUILDS_THE_CLI
def test_compose_renders_what_the_yaml_says(
    compose_cli: tuple[list[str], dict[str, str]], services: dict[str, dict[str, Any]]
) -> None:
    """Compose's own model (merges, interpolation) agrees with the YAML the checks below read."""
    done = _run_compose(compose_cli, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)["services"]
    assert set(rendered) == set(services)
    for name, spec in services.items():
        model = rendered[name]
        assert model.get("image") == interpolate(spec["image"]), name
        assert list(model.get("command") or []) == _command(spec), name
        declared = spec.get("healthcheck") or {}
        assert bool((model.get("healthcheck") or {}).get("test")) == bool(declared.get("test")), (
            name
        )
        environment = spec.get("environment") or {}
        for key, value in environment.items():
            if value is not None:
                assert model["environment"][key] == interpolate(str(value)), (name, key)


# ---- the platform in the file -------------------------------------------------------------------


def test_every_process_of_every_service_is_a_compose_service(
    services: dict[str, dict[str, Any]],
) -> None:
    processes = _processes(services)
    expected = {(s, r) for s in SERVICES for r in ROLES[s] | JOBS[s]}
    assert set(processes) == expected
    for (service, role), name in processes.items():
        command = _command(services[name])
        assert command and command[0] == role, f"{name} runs {command}"
        assert role in cli_commands(service), f"referrals-{service} has no command {role}"
        image = interpolate(services[name]["image"])
        assert image.split(":")[0] == f"referrals-{service}", name
        build = services[name].get("build") or {}
        assert build.get("dockerfile") == "Dockerfile", f"{name}: the one Dockerfile"
        assert build.get("context") == ".", name
        assert build["args"]["SERVICE"] == service, name
        assert build["args"]["SOURCE"] == f"services/{service}", name
    for service, port in API_PORTS.items():
        command = _command(services[processes[(service, "api")]])
        assert command == ["api", "--host", ANY_ADDRESS, "--port", str(port)]


def test_infrastructure_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= INFRASTRUCTURE
    images = {name: interpolate(services[name]["image"]) for name in INFRASTRUCTURE}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["minio"].startswith("minio/minio:")
    assert images["postgres"].startswith("postgres:")
    assert images["zipkin"] == f"openzipkin/zipkin-slim:{platform.ZIPKIN_VERSION}"  # make up's
    assert "127.0.0.1:9411:9411" in services["zipkin"]["ports"]
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert interpolate(services["minio"]["environment"]["MINIO_KMS_SECRET_KEY"])


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        assert "image" in spec, f"{name} names no image"
        image = interpolate(spec["image"])
        assert is_pinned(image), f"{name}: {image} is not pinned to a version"


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    processes = {name: key for key, name in _processes(services).items()}
    for name, spec in services.items():
        role = processes.get(name, (None, _labels(spec).get("referrals.role")))[1]
        job = role in {"migrate", "load-seed", "topics", "minio-users"}
        if job:
            assert spec.get("restart") == "no", f"{name} is a one-off job"
            continue
        health = spec.get("healthcheck") or {}
        assert not health.get("disable"), f"{name} has its healthcheck disabled"
        test = health.get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} has no healthcheck"
        if name in processes:
            service, role = processes[name]
            port = API_PORTS[service] if role == "api" else METRICS_PORT
            path = "/health" if role == "api" else "/metrics"
            assert f"http://127.0.0.1:{port}{path}" in " ".join(test), name
            assert spec.get("restart") == "unless-stopped", name


def test_processes_wait_for_their_jobs(services: dict[str, dict[str, Any]]) -> None:
    processes = _processes(services)
    for (service, role), name in processes.items():
        depends = services[name].get("depends_on") or {}
        if role == "migrate":
            assert depends.get("postgres", {}).get("condition") == "service_healthy", name
            continue
        if role == "load-seed":
            migrate = depends.get(processes[(service, "migrate")], {})
            assert migrate.get("condition") == "service_completed_successfully", name
            continue
        for job in (processes[(service, "migrate")], "kafka-topics"):
            condition = depends.get(job, {}).get("condition")
            assert condition == "service_completed_successfully", f"{name} must wait for {job}"
    assert services["kafka-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_services_containers_are_hardened(services: dict[str, dict[str, Any]]) -> None:
    for (_service, _role), name in _processes(services).items():
        spec = services[name]
        assert spec.get("read_only") is True, name
        assert "ALL" in (spec.get("cap_drop") or []), name
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), name
        assert TMP in (spec.get("tmpfs") or []), name


def test_settings_and_secrets(services: dict[str, dict[str, Any]]) -> None:
    """Shared settings for all, each service's own database, every `${VAR}` with a default."""
    for (service, _role), name in _processes(services).items():
        env = {k: interpolate(str(v)) for k, v in (services[name].get("environment") or {}).items()}
        assert env["REFERRALS_ENVIRONMENT"] == "development", name
        assert env["REFERRALS_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert not [k for k in env if k.startswith("OTEL_EXPORTER_OTLP")], name
        for key in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_ZIPKIN_ENDPOINT"):
            assert env[key] == platform.trace_environment(ZIPKIN)[key], (name, key)
        assert env["OTEL_SERVICE_NAME"] == service, name
        assert env["REFERRALS_METRICS__HOST"] == ANY_ADDRESS, name
        assert env["REFERRALS_METRICS__PORT"] == str(METRICS_PORT), name
        dsn = env[f"REFERRALS_{service.upper()}_POSTGRES__DSN"]
        assert re.fullmatch(rf"postgresql://{service}:[^@]+@postgres:5432/{service}", dsn), dsn
    text = COMPOSE_FILE.read_text()
    for line in text.splitlines():
        if not line.lstrip().startswith("#"):
            assert not uses_variable_without_default(line), f"no default in: {line.strip()}"


def test_postgres_creates_each_services_database_and_role(
    services: dict[str, dict[str, Any]],
) -> None:
    sql = (REPO / "deploy/compose/postgres-init.sql").read_text()
    script = (REPO / "deploy/compose/postgres-init.sh").read_text()
    postgres_env = services["postgres"]["environment"]
    for service in (*SERVICES, WEB):
        assert f"create role {service} login password :'{service}_password';" in sql
        assert f"create database {service} owner {service};" in sql
        assert f'-v {service}_password="${{{service.upper()}_DB_PASSWORD:?}}"' in script
        # the role's password and the services' DSNs come from the same variable and default
        password = interpolate(postgres_env[f"{service.upper()}_DB_PASSWORD"])
        for (owner, _role), name in _processes(services).items():
            if owner == service:
                dsn = interpolate(
                    services[name]["environment"][f"REFERRALS_{service.upper()}_POSTGRES__DSN"]
                )
                assert dsn.startswith(f"postgresql://{service}:{password}@"), name
    revoked = next(line for line in sql.splitlines() if line.startswith("revoke all on database"))
    for database in (*SERVICES, WEB):
        assert f" {database}," in revoked or f" {database} from public" in revoked, database
    mounts = " ".join(services["postgres"]["volumes"])
    assert "./deploy/compose/postgres-init.sh:/docker-entrypoint-initdb.d/" in mounts
    assert "./deploy/compose/postgres-init.sql:/opt/referrals/postgres-init.sql" in mounts


def test_topics_job_declares_the_platforms_topics(services: dict[str, dict[str, Any]]) -> None:
    job = services["kafka-topics"]
    specs = dict(item.split(":") for item in _command(job))
    assert set(specs) == platform_topics()
    assert all(int(n) >= 1 for n in specs.values())
    k8s = yaml.safe_load_all((REPO / "deploy/k8s/base/platform-config.yaml").read_text())
    partitions = next(d for d in k8s if d and d["metadata"]["name"] == "kafka-topics")["data"]
    assert specs == partitions, "Compose and Kubernetes declare the same partitions"
    script = job["volumes"][0].split(":")[0]
    assert (REPO / script).is_file()
    assert job["entrypoint"][-1] == job["volumes"][0].split(":")[1]


def _environment_of(services: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    """A service's environment as Compose passes it: env_file first, `environment` over it."""
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    for entry in services[name].get("env_file") or []:
        path = REPO / interpolate(entry["path"] if isinstance(entry, dict) else entry)
        env.update({k: v or "" for k, v in dotenv_values(path).items()})
    env.update({k: interpolate(str(v)) for k, v in services[name]["environment"].items()})
    return env


def test_development_keys_fit_together(services: dict[str, dict[str, Any]]) -> None:
    """Records and partners verify intake's tokens with the JWKS of intake's signing key;
    notifications opens what intake seals to its public key; MinIO's KMS key is 32 bytes."""
    from referrals_common.auth.case_tokens import CaseTokenIssuer, CaseTokenVerifier, public_jwks
    from referrals_common.crypto import FieldCipher, SealedBox
    from referrals_common.settings import PLACEHOLDER_MARKERS

    intake = _environment_of(services, "intake-api")
    pem = intake["REFERRALS_INTAKE_TOKENS__SIGNING_KEY_PEM"]
    assert "-----BEGIN PRIVATE KEY-----" in pem
    # refused outside development (the services reject placeholder-marked secrets there)
    assert any(marker in pem.lower() for marker in PLACEHOLDER_MARKERS)
    token = CaseTokenIssuer(pem.encode()).issue(uuid.uuid4(), client_id="compose")
    for name, var in (
        ("records-api", "REFERRALS_RECORDS_CASE_TOKEN_JWKS"),
        ("partners-api", "REFERRALS_PARTNERS_CASE_TOKEN_JWKS"),
    ):
        jwks = json.loads(_environment_of(services, name)[var])
        assert jwks == json.loads(json.dumps(public_jwks(pem.encode())))
        CaseTokenVerifier(jwks).verify(token.token)

    public = intake["REFERRALS_INTAKE_NOTIFICATIONS_PUBLIC_KEY"]
    private = _environment_of(services, "notifications-sender")[
        "REFERRALS_NOTIFICATIONS_CONTACT_PRIVATE_KEY"
    ]
    sealed = SealedBox(public_key_b64=public).seal_json({"email": "a@b.example"}, bound_to="case")
    assert SealedBox(private_key_b64=private).open_json(sealed, bound_to="case") == {
        "email": "a@b.example"
    }
    # The insurance policy: sealed by intake, opened by partners for the accepting center.
    policy_public = intake["REFERRALS_INTAKE_PARTNERS_PUBLIC_KEY"]
    policy_private = _environment_of(services, "partners-consumer")[
        "REFERRALS_PARTNERS_POLICY_PRIVATE_KEY"
    ]
    policy = SealedBox(public_key_b64=policy_public).seal_json({"n": "1"}, bound_to="c/r")
    assert SealedBox(private_key_b64=policy_private).open_json(policy, bound_to="c/r") == {"n": "1"}
    for name, var in (
        ("intake-api", "REFERRALS_INTAKE_FIELD_ENCRYPTION_KEY"),
        ("partners-api", "REFERRALS_PARTNERS_FIELD_ENCRYPTION_KEY"),
    ):
        FieldCipher.from_base64(_environment_of(services, name)[var])
    kms = interpolate(services["minio"]["environment"]["MINIO_KMS_SECRET_KEY"])
    key_name, _, key = kms.partition(":")
    assert key_name and len(base64.b64decode(key)) == 32


def test_each_process_starts_with_its_compose_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The services' own settings classes accept every process's environment."""
    from importlib import import_module

    for (service, _role), name in _processes(services).items():
        for key in list(os.environ):
            if key.startswith("REFERRALS_"):
                monkeypatch.delenv(key)
        env = _environment_of(services, name)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = import_module(f"referrals_{service}.config")
        settings_class = next(
            v
            for k, v in vars(config).items()
            if k.endswith("Settings") and getattr(v, "service_name", None) == service
        )
        settings = settings_class()
        assert settings.kafka.bootstrap_servers == "kafka:9092", name
        assert settings.postgres.dsn.get_secret_value().endswith(f"@postgres:5432/{service}")


def test_each_service_logs_in_to_minio_as_its_own_user(services: dict[str, dict[str, Any]]) -> None:
    """The minio-users job (the Kubernetes Job's script) makes records' and translation's users
    from the same variables and defaults the services read; no process gets MinIO's root user;
    intake, partners and notifications get no object-storage credentials at all."""
    from devstack import object_store

    job = services["minio-users"]
    job_env = {k: interpolate(str(v)) for k, v in job["environment"].items()}
    minio_env = services["minio"]["environment"]
    root_user = interpolate(minio_env["MINIO_ROOT_USER"])
    root_password = interpolate(minio_env["MINIO_ROOT_PASSWORD"])
    assert (job_env["MINIO_ADMIN_USER"], job_env["MINIO_ADMIN_PASSWORD"]) == (
        root_user,
        root_password,
    )
    assert job_env["BUCKET"] == object_store.DOCUMENTS_BUCKET
    assert interpolate(job["image"]).startswith("minio/mc:")
    script, target = job["volumes"][0].split(":")[:2]
    assert script == "./deploy/k8s/base/minio-users.sh" and (REPO / script).is_file()
    assert job["entrypoint"][-1] == target
    assert job["depends_on"]["minio"]["condition"] == "service_healthy"
    for (service, role), name in _processes(services).items():
        env = _environment_of(services, name)
        assert root_password not in env.values(), f"{name} holds MinIO's root password"
        credentials = {k for k in env if re.search(r"_S3__(ACCESS|SECRET)_KEY$", k)}
        if service not in object_store.ACCESS:
            assert not credentials, f"{name} needs no object storage: {credentials}"
            continue
        own = f"REFERRALS_{service.upper()}_S3__"
        assert credentials == {f"{own}ACCESS_KEY", f"{own}SECRET_KEY"}, name
        assert env[f"{own}ACCESS_KEY"] == job_env[f"{service.upper()}_S3_ACCESS_KEY"], name
        assert env[f"{own}SECRET_KEY"] == job_env[f"{service.upper()}_S3_SECRET_KEY"], name
        assert env[f"{own}ACCESS_KEY"] != root_user, name
        if role not in JOBS[service]:
            depends = services[name].get("depends_on") or {}
            condition = depends.get("minio-users", {}).get("condition")
            assert condition == "service_completed_successfully", f"{name} must wait for its user"


def test_the_trace_viewer_is_bounded(services: dict[str, dict[str, Any]]) -> None:
    """Zipkin keeps the bounded number of spans `make up`'s does, in a heap of the same size that
    its container's memory limit holds, and exits when that heap runs out rather than failing
    every request; Compose restarts it. A flood of spans cannot exhaust it."""
    zipkin = services["zipkin"]
    env = {k: str(v) for k, v in zipkin["environment"].items()}
    assert env["STORAGE_TYPE"] == "mem"
    assert int(env["MEM_MAX_SPANS"]) == platform.ZIPKIN_MAX_SPANS
    java = env["JAVA_OPTS"].split()
    assert java == list(platform.ZIPKIN_JAVA_OPTIONS)  # heap, exit when out, 8 server threads
    heap_mib = int(platform.ZIPKIN_HEAP.removesuffix("m"))
    limit = str(zipkin["mem_limit"])
    limit_mib = int(limit[:-1]) * (1024 if limit.endswith("g") else 1)
    assert limit[-1] in "gm" and heap_mib + 200 <= limit_mib  # the JVM's ~120 MiB floor beside it
    assert zipkin["restart"] == "unless-stopped"
    assert zipkin["healthcheck"]["test"] == ["CMD", "docker-healthcheck"]  # the image's own


def test_every_process_traces_to_zipkin_and_the_ops_timeline_reads_it(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process of the five services and the web app sends its spans to the Compose
    service `zipkin` with the exporter `make up` uses, and partners' ops timeline reads them
    back from the same server (its links open on the host's published port)."""
    from referrals_common import telemetry
    from referrals_partners.config import PartnersSettings
    from referrals_partners.operations import TraceViewer

    _, host_port, _ = services["zipkin"]["ports"][0].split(":")  # 127.0.0.1:<host>:<container>
    processes = [
        name
        for name, spec in services.items()
        if {"referrals.service", "referrals.app"} & set(_labels(spec))
    ]
    assert len(processes) > len(ROLES)
    for name in processes:
        env = _environment_of(services, name)
        assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == f"{ZIPKIN}/api/v2/spans", name
        for key in list(os.environ):
            if key.startswith("OTEL_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("OTEL_"):
                monkeypatch.setenv(key, value)
        assert telemetry._exporter_choice() == "zipkin", name
    for name, spec in services.items():
        if _labels(spec).get("referrals.service") != "partners":
            continue
        env = _environment_of(services, name)
        for key in list(os.environ):
            if key.startswith("REFERRALS_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        viewer = TraceViewer.from_settings(PartnersSettings())
        assert viewer is not None, f"{name}: the ops timeline reads no trace viewer"
        assert viewer.url == ZIPKIN, name
        assert viewer.public_url == f"http://localhost:{host_port}", name


def test_no_jaeger_remains() -> None:
    """One trace viewer everywhere: nothing of Compose names Jaeger or its OTLP ports."""
    for path in [COMPOSE_FILE, *sorted((REPO / "deploy/compose").iterdir())]:
        text = path.read_text().lower()
        assert "jaeger" not in text, path
        assert "4318" not in text and "16686" not in text, path


# ---- the patient's web app ----------------------------------------------------------------------


def test_the_web_app_is_a_hardened_compose_service(services: dict[str, dict[str, Any]]) -> None:
    """`web` serves the pages from the one Dockerfile's web image after its own migration job, once
    the three APIs and the mail sink are healthy; read-only, no capabilities, like the rest."""
    web, migrate = services[WEB], services[f"{WEB}-migrate"]
    for name, spec in ((WEB, web), (f"{WEB}-migrate", migrate)):
        assert interpolate(spec["image"]).split(":")[0] == f"referrals-{WEB}", name
        build = spec["build"]
        assert (build["context"], build["dockerfile"]) == (".", "Dockerfile"), name
        assert build["args"]["SOURCE"] == "frontend", name
        assert build["args"]["VENDOR"] == "web", "the web app's image carries its htmx"
        command = _command(spec)
        assert command[0] in WEB_COMMANDS and command[0] in cli_commands(WEB), name
        assert spec.get("read_only") is True, name
        assert "ALL" in (spec.get("cap_drop") or []), name
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), name
        assert TMP in (spec.get("tmpfs") or []), name
    assert _command(web) == ["serve", "--host", ANY_ADDRESS, "--port", str(WEB_PORT)]
    assert _command(migrate) == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert web["restart"] == "unless-stopped"
    assert f"http://127.0.0.1:{WEB_PORT}/health" in " ".join(web["healthcheck"]["test"])
    assert f"127.0.0.1:{WEB_PORT}:{WEB_PORT}" in web["ports"]
    depends = web["depends_on"]
    assert depends[f"{WEB}-migrate"]["condition"] == "service_completed_successfully"
    processes = _processes(services)
    for service in API_PORTS:
        assert depends[processes[(service, "api")]]["condition"] == "service_healthy", service
    assert depends["mailpit"]["condition"] == "service_healthy"


def test_the_web_app_reaches_the_platform_through_the_public_apis_only(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its settings name the three APIs' Compose services and ports, its own database (the role
    postgres-init makes, with the same password), Mailpit for one-time codes; it holds none of
    the services' secrets, nor Kafka's or MinIO's; its settings class accepts the environment."""
    from referrals_web.config import WebSettings

    processes = _processes(services)
    postgres_env = services["postgres"]["environment"]
    password = interpolate(postgres_env["WEB_DB_PASSWORD"])
    for name in (WEB, f"{WEB}-migrate"):
        env = _environment_of(services, name)
        for service, port in API_PORTS.items():
            api = processes[(service, "api")]
            assert env[f"REFERRALS_WEB_{service.upper()}_URL"] == f"http://{api}:{port}", name
        assert env["REFERRALS_WEB_POSTGRES__DSN"] == (
            f"postgresql://{WEB}:{password}@postgres:5432/{WEB}"
        )
        assert env["REFERRALS_WEB_SMTP__HOST"] == "mailpit"
        assert env["REFERRALS_WEB_ENVIRONMENT"] == "development"
        assert env["OTEL_SERVICE_NAME"] == WEB
        foreign = [
            k
            for k in env
            if k.startswith("REFERRALS_")
            and not k.startswith("REFERRALS_WEB_")
            and not k.startswith("REFERRALS_TELEMETRY__")
        ]
        assert not foreign, f"{name} needs none of the platform's settings: {foreign}"
        for key in list(os.environ):
            if key.startswith("REFERRALS_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = WebSettings()
        assert settings.intake_url == env["REFERRALS_WEB_INTAKE_URL"]
        assert settings.postgres.dsn.get_secret_value().endswith(f"@postgres:5432/{WEB}")
        assert settings.smtp.host == "mailpit"
