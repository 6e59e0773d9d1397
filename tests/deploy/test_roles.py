"""deploy/roles.yaml, the one list of the platform's processes: devstack starts what it lists,
Compose's process entries and the Kubernetes workloads are what `devstack render` writes from it
(a committed file that drifts fails here), and each role is a real command of its service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from devstack import diagram, render, roles
from tests.deploy.support import MANIFEST, REPO, cli_commands

pytestmark = pytest.mark.deploy


def test_the_committed_files_are_what_devstack_render_writes() -> None:
    stale = [str(p.relative_to(REPO)) for p in render.drift(REPO)]
    assert not stale, (
        f"{stale} differ from what deploy/roles.yaml gives: run `devstack render` and commit"
    )


def _copy_of_the_repository(tmp_path: Path) -> Path:
    (tmp_path / render.K8S_BASE).mkdir(parents=True)
    shutil.copyfile(REPO / render.COMPOSE_FILE, tmp_path / render.COMPOSE_FILE)
    (tmp_path / render.COMPOSE_TARGETS).parent.mkdir(parents=True)
    shutil.copyfile(REPO / render.COMPOSE_TARGETS, tmp_path / render.COMPOSE_TARGETS)
    for path in (REPO / render.K8S_BASE).glob("*.yaml"):
        shutil.copyfile(path, tmp_path / render.K8S_BASE / path.name)
    for name in (render.PROMETHEUS_CONFIG, render.K8S_PROMETHEUS_CONFIG, diagram.DOCUMENT):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, tmp_path / name)
    shutil.copytree(  # the modules' diagram is drawn from their sources
        REPO / "services",
        tmp_path / "services",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return tmp_path


def test_a_hand_edit_of_a_generated_file_is_drift(tmp_path: Path) -> None:
    root = _copy_of_the_repository(tmp_path)
    render.write(root)
    assert render.drift(root) == []
    k8s = root / render.K8S_BASE / "partners.yaml"
    k8s.write_text(k8s.read_text().replace("replicas: 2", "replicas: 3", 1))
    compose = root / render.COMPOSE_FILE
    compose.write_text(compose.read_text().replace('command: ["relay"]', 'command: ["relay2"]', 1))
    assert set(render.drift(root)) == {k8s, compose}
    render.write(root)
    assert render.drift(root) == []
    assert "replicas: 3" not in k8s.read_text()


def test_a_role_added_to_the_manifest_reaches_compose_and_kubernetes(tmp_path: Path) -> None:
    """What the generator writes follows the manifest: a new role becomes a Compose service and
    a Deployment, and the files on disk drift until rendered again."""
    root = _copy_of_the_repository(tmp_path)
    data = yaml.safe_load(roles.manifest_path().read_text())
    data["services"]["partners"]["roles"]["archiver"] = {"resources": "small", "replicas": 1}
    changed = roles.Manifest.model_validate(data)
    files = render.render(root, changed)
    compose = yaml.safe_load(files[root / render.COMPOSE_FILE])["services"]
    assert compose["partners-archiver"]["command"] == ["archiver"]
    assert compose["partners-archiver"]["labels"]["referrals.role"] == "archiver"
    k8s = [
        d
        for d in yaml.safe_load_all(files[root / render.K8S_BASE / "partners.yaml"])
        if d and d["kind"] == "Deployment"
    ]
    archiver = next(d for d in k8s if d["metadata"]["name"] == "partners-archiver")
    assert archiver["spec"]["replicas"] == 1
    assert archiver["spec"]["template"]["spec"]["containers"][0]["args"] == ["archiver"]
    # ... and a target of Kubernetes' Prometheus, through a headless Service of its own.
    metrics = next(
        d
        for d in yaml.safe_load_all(files[root / render.K8S_BASE / "partners.yaml"])
        if d and d["kind"] == "Service" and d["metadata"]["name"] == "partners-archiver-metrics"
    )
    assert metrics["spec"]["clusterIP"] == "None"
    scrape = yaml.safe_load(files[root / render.K8S_PROMETHEUS_CONFIG])["scrape_configs"][0]
    names = [n for sd in scrape["dns_sd_configs"] for n in sd["names"]]
    assert "partners-archiver-metrics.referrals.svc" in names
    assert set(files) >= set(render.drift(root))


def test_the_manifest_refuses_what_it_does_not_know() -> None:
    data = yaml.safe_load(roles.manifest_path().read_text())
    data["services"]["intake"]["roles"]["api"]["replicaz"] = 3
    with pytest.raises(ValidationError, match="replicaz"):
        roles.Manifest.model_validate(data)
    data = yaml.safe_load(roles.manifest_path().read_text())
    data["services"]["intake"]["roles"]["relay"]["resources"] = "huge"
    with pytest.raises(ValidationError, match="no size 'huge'"):
        roles.Manifest.model_validate(data)
    data = yaml.safe_load(roles.manifest_path().read_text())
    del data["services"]["records"]["api_port"]
    with pytest.raises(ValidationError, match="api_port"):
        roles.Manifest.model_validate(data)


@pytest.mark.parametrize("service", list(MANIFEST.services))
def test_every_role_and_job_is_a_command_of_its_service(service: str) -> None:
    spec = MANIFEST.services[service]
    declared = {*spec.roles, *spec.jobs}
    missing = declared - cli_commands(service)
    assert not missing, f"referrals-{service} has no command {sorted(missing)}"


def test_devstack_starts_every_role_the_manifest_lists() -> None:
    from devstack import platform

    assert MANIFEST.roles() == platform.ROLES
    assert MANIFEST.api_ports() == platform.DEV_API_PORTS
    assert MANIFEST.services[platform.WEB].api_port == platform.DEV_WEB_PORT
    for service, service_roles in MANIFEST.roles().items():
        for role in service_roles:
            command = MANIFEST.command(service, role, host="127.0.0.1", port=1234)
            assert command[0] == role
            assert (command[1:] == ["--host", "127.0.0.1", "--port", "1234"]) == (
                service in MANIFEST.api_ports() and role == "api"
            ), (service, role)
