"""The platform's processes, declared once in deploy/roles.yaml: which services (and the web app)
exist, the roles each runs, their ports, health checks, resources, scaling and image packages.

`devstack up` starts every long-running role from it (`devstack.platform`), `devstack render`
writes docker-compose.yml's process entries and deploy/k8s/base's per-service files from it
(`devstack.render`), and tests/deploy read it to check both.

Why a YAML file beside the deployment files rather than a Python constant: operators read and
edit it next to the Compose and Kubernetes files it produces, and nothing in it is code; this
module gives it a strict, typed shape (unknown keys are errors)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_NAME = "roles.yaml"


def manifest_path() -> Path:
    """deploy/roles.yaml of the repository this package runs from (an installed wheel carries
    its own copy beside this module)."""
    packaged = Path(__file__).with_name(MANIFEST_NAME)
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / MANIFEST_NAME


def repository_root() -> Path:
    """The repository deploy/roles.yaml belongs to (where `devstack render` writes)."""
    return Path(__file__).resolve().parents[4]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Size(_Strict):
    requests: dict[str, str]
    limits: dict[str, str]


class Autoscale(_Strict):
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    cpu: int = Field(default=70, ge=1, le=100)
    """Target average CPU utilisation (percent)."""


class ConfigVolume(_Strict):
    config_map: str
    mount: str


class Process(_Strict):
    """One role or one job of a service, as the manifest says it."""

    resources: str
    replicas: int | None = None
    autoscale: Autoscale | None = None
    about: str = ""
    """What the process does (a comment in the generated files); a default by role otherwise."""
    api: bool = False
    """Serves the service's HTTP API on `api_port` (role `api` always does)."""
    stop_grace_seconds: int | None = None
    tmp_size: str = "256Mi"
    compose_after: tuple[str, ...] = ()
    """Compose services this process waits for beyond its service's own jobs (healthy, or
    completed for a job)."""
    after: str | None = None
    """A job: the job of the same service that must have finished first."""

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> Process:
        if self.replicas is not None and self.autoscale is not None:
            raise ValueError("a process has replicas or autoscale, not both")
        return self


class Compose(_Strict):
    env_file: list[dict[str, str]] = Field(default_factory=list)
    depends_on: tuple[str, ...] = ()
    """Jobs every process of the service waits for (completed successfully)."""


class Service(_Strict):
    summary: str
    description: str
    api_port: int | None = None
    app: bool = False
    """The patient's web app rather than one of the five services (labels, naming)."""
    source: str = ""
    """The workspace member's directory (default services/<name>)."""
    kafka: bool = True
    """Reads Kafka (its own SASL principal on a secured cluster)."""
    vendor: Literal["none", "web"] = "none"
    """The Dockerfile's vendor stage: `web` adds the web app's pinned htmx."""
    system_packages: tuple[str, ...] = ()
    """Debian packages the runtime image installs (besides tini, which every image has)."""
    secrets: dict[str, str] = Field(default_factory=dict)
    """Environment variable → key in Secret `<name>-secrets`; a key ending in `?` is optional."""
    config_volumes: dict[str, ConfigVolume] = Field(default_factory=dict)
    compose: Compose = Compose()
    roles: dict[str, Process]
    jobs: dict[str, Process] = Field(default_factory=dict)


class Manifest(_Strict):
    image_tag: str
    metrics_port: int
    sizes: dict[str, Size]
    services: dict[str, Service]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for name, service in self.services.items():
            for role, process in {**service.roles, **service.jobs}.items():
                if process.resources not in self.sizes:
                    raise ValueError(f"{name} {role}: no size {process.resources!r}")
                if process.after is not None and process.after not in service.jobs:
                    raise ValueError(f"{name} {role}: runs after an unknown job {process.after}")
            serves = [r for r, p in service.roles.items() if r == "api" or p.api]
            if bool(serves) != (service.api_port is not None):
                raise ValueError(f"{name}: an API role needs api_port, and api_port an API role")
            if set(service.roles) & set(service.jobs):
                raise ValueError(f"{name}: a name is either a role or a job")
        return self

    # ---- what the consumers of the manifest ask ------------------------------------------

    def platform(self) -> dict[str, Service]:
        """The five services (not the web app), in the manifest's order."""
        return {name: s for name, s in self.services.items() if not s.app}

    def roles(self) -> dict[str, tuple[str, ...]]:
        """service → its long-running roles, for the five services."""
        return {name: tuple(s.roles) for name, s in self.platform().items()}

    def jobs(self) -> dict[str, tuple[str, ...]]:
        return {name: tuple(s.jobs) for name, s in self.platform().items()}

    def api_ports(self) -> dict[str, int]:
        """service → port of its HTTP API, for the services that have one (not the web app)."""
        return {n: s.api_port for n, s in self.platform().items() if s.api_port is not None}

    def is_api(self, service: str, role: str) -> bool:
        process = self.services[service].roles.get(role)
        return process is not None and (role == "api" or process.api)

    def process_name(self, service: str, role: str) -> str:
        """The name of a process everywhere (devstack, Compose, Kubernetes): `<service>-<role>`,
        or the web app's own name for its server."""
        if self.services[service].app and self.is_api(service, role):
            return service
        return f"{service}-{role}"

    def component(self, service: str, role: str) -> str:
        """The `referrals.role` / `app.kubernetes.io/component` of a process."""
        return self.process_name(service, role).removeprefix(f"{service}-")

    def source(self, service: str) -> str:
        return self.services[service].source or f"services/{service}"

    def command(self, service: str, role: str, *, host: str, port: int | None = None) -> list[str]:
        """The arguments after `referrals-<service>`: the role, and where an API listens."""
        if not self.is_api(service, role):
            return [role]
        port = port or self.services[service].api_port
        return [role, "--host", host, "--port", str(port)]

    def health_url(self, service: str, role: str, *, host: str = "127.0.0.1") -> str:
        if self.is_api(service, role):
            return f"http://{host}:{self.services[service].api_port}/health"
        return f"http://{host}:{self.metrics_port}/metrics"


@cache
def load(path: Path | None = None) -> Manifest:
    """The manifest (deploy/roles.yaml), validated."""
    return Manifest.model_validate(yaml.safe_load((path or manifest_path()).read_text()))
