"""deploy/k8s: every manifest valid against the Kubernetes API schemas (strict: unknown fields are
errors), and the rules that matter for this platform: every process deployed and probed, pinned
images, non-root hardened pods, resources, Secrets that exist, consumers within partitions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

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
    is_pinned,
    platform_topics,
    subscribed_topics,
)

pytestmark = pytest.mark.deploy

K8S = REPO / "deploy/k8s"
BASE = K8S / "base"
SECRET_TEMPLATES = K8S / "secrets/secrets.template.yaml"
# The oldest Kubernetes release the manifests are meant for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
# ConfigMaps the operator creates (documented in docs/deployment.md), not the base.
OPERATOR_CONFIGMAPS = {"partners-registry"}
CONSUMES = "referrals/consumes"
MONITORING = K8S / "monitoring"
# The trace viewer as the platform's pods reach it: Service `zipkin` of namespace `monitoring`.
ZIPKIN_URL = "http://zipkin.monitoring.svc:9411"


def _yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in {".yaml", ".yml"})


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{p.relative_to(REPO)}#{i}", d)
        for p in _yaml_files()
        for i, d in enumerate(_documents(p))
    ]


def _is_kustomization(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the base deploys, in the kustomization's order."""
    return [doc for name in kustomization["resources"] for doc in _documents(BASE / name)]


@pytest.fixture(scope="module")
def secret_templates() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents(SECRET_TEMPLATES) if d["kind"] == "Secret"}


def _by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in resources if d["kind"] == kind}


def _pod_specs(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in resources:
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _processes(resources: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(service, role) -> workload, for the five services' Deployments and Jobs."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in resources:
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        labels = doc["metadata"]["labels"]
        service = labels.get("app.kubernetes.io/name")
        if service in SERVICES:
            key = (service, labels["app.kubernetes.io/component"])
            assert key not in found, f"two workloads for {key}"
            found[key] = doc
    return found


# ---- schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "doc"),
    # a kustomization is not a Kubernetes object (test_kustomization_... checks it)
    [pytest.param(w, d, id=w) for w, d in _all_documents() if not _is_kustomization(d)],
)
def test_manifest_is_valid_kubernetes(where: str, doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.caused_by.absolute_path)
            pytest.fail(f"{where} is not valid for Kubernetes {version} at {path}: {error.message}")


def test_there_are_manifests_to_check() -> None:
    kinds = {d["kind"] for _, d in _all_documents()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ConfigMap"} <= kinds
    assert {"Secret", "Namespace", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_kustomization_deploys_every_base_manifest(kustomization: dict[str, Any]) -> None:
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == "referrals"
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            assert (BASE / entry.split("=")[-1]).is_file(), entry
    # the Secret templates stay out of the base: applying them would overwrite real Secrets
    assert not any("secret" in name for name in listed)
    for image in kustomization.get("images", []):
        assert image["newTag"] != "latest" and any(c.isdigit() for c in image["newTag"])


def test_namespace_enforces_the_restricted_pod_security_profile(
    resources: list[dict[str, Any]],
) -> None:
    namespace = _by_kind(resources, "Namespace")["referrals"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- what runs ------------------------------------------------------------------------------


def test_every_process_of_every_service_is_deployed(resources: list[dict[str, Any]]) -> None:
    processes = _processes(resources)
    expected = {(s, r) for s in SERVICES for r in ROLES[s] | JOBS[s]}
    assert set(processes) == expected
    for (service, role), doc in processes.items():
        kind = "Job" if role in JOBS[service] else "Deployment"
        assert doc["kind"] == kind, f"{service} {role} should be a {kind}"
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        args = container.get("args") or []
        assert args and args[0] == role, f"{doc['metadata']['name']} runs {args}"
        assert role in cli_commands(service), f"referrals-{service} has no command {role}"
        assert container["image"].split(":")[0] == f"referrals-{service}"
        assert "command" not in container, "the image's entrypoint is the service's CLI"
        if role == "api":
            assert args == ["api", "--host", ANY_ADDRESS, "--port", str(API_PORTS[service])]
    assert _by_kind(resources, "Job")["kafka-topics"]


def test_every_image_is_pinned(resources: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(resources):
        for container in _containers(pod):
            assert is_pinned(container["image"]), f"{where}: {container['image']} is not pinned"


def test_pods_run_as_non_root_with_nothing_to_spare(resources: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(resources):
        security = pod.get("securityContext") or {}
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in _containers(pod):
            own = container.get("securityContext") or {}
            assert own.get("runAsNonRoot", security.get("runAsNonRoot")) is True, where
            uid = own.get("runAsUser", security.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, f"{where}: a numeric non-root user"
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not own.get("capabilities", {}).get("add"), where
            assert own.get("privileged") is not True, where
            assert own.get("readOnlyRootFilesystem") is True, where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert TMP in mounts, f"{where}: a writable /tmp beside a read-only root"


def test_every_container_has_resources(resources: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(resources):
        for container in _containers(pod):
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests for cpu and memory"
            assert "memory" in limits, f"{where}: a memory limit"
            for resource, request in requests.items():
                if resource in limits:
                    assert _quantity(request) <= _quantity(limits[resource]), (where, resource)


def _quantity(value: str | int | float) -> float:
    text = str(value)
    units = {
        "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }  # fmt: skip
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def test_deployments_are_probed_where_they_serve(resources: list[dict[str, Any]]) -> None:
    for (service, role), doc in _processes(resources).items():
        if doc["kind"] != "Deployment":
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        port, path = (
            (API_PORTS[service], "/health") if role == "api" else (METRICS_PORT, "/metrics")
        )
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container.get(probe, {}).get("httpGet")
            assert get, f"{doc['metadata']['name']} has no {probe}"
            assert get["path"] == path, (doc["metadata"]["name"], probe)
            assert ports.get(get["port"], get["port"]) == port, (doc["metadata"]["name"], probe)
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/port") == str(port)


def test_apis_have_a_service_an_autoscaler_and_a_disruption_budget(
    resources: list[dict[str, Any]],
) -> None:
    services = _by_kind(resources, "Service")
    autoscalers = _by_kind(resources, "HorizontalPodAutoscaler")
    budgets = _by_kind(resources, "PodDisruptionBudget")
    for service, port in API_PORTS.items():
        name = f"{service}-api"
        deployment = _by_kind(resources, "Deployment")[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        svc = services[name]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        assert [p["port"] for p in svc["spec"]["ports"]] == [port]
        hpa = autoscalers[name]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert all(labels.get(k) == v for k, v in selector.items())


def test_consumers_never_outnumber_partitions(resources: list[dict[str, Any]]) -> None:
    """A consumer group gives each partition to one member: replicas beyond the partitions of the
    topics a consumer reads would sit idle. Partitions are declared in ConfigMap kafka-topics."""
    partitions = {
        t: int(n) for t, n in _by_kind(resources, "ConfigMap")["kafka-topics"]["data"].items()
    }
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in _by_kind(resources, "HorizontalPodAutoscaler").values()
    }
    consumers = {k: d for k, d in _processes(resources).items() if k[1] == "consumer"}
    assert {s for s, _ in consumers} == {s for s in SERVICES if "consumer" in ROLES[s]}
    for (service, _), doc in consumers.items():
        name = doc["metadata"]["name"]
        topics = set(doc["metadata"].get("annotations", {}).get(CONSUMES, "").split(","))
        assert topics == subscribed_topics(service), f"{name}: {CONSUMES} must list its topics"
        assert topics <= set(partitions), f"{name} reads topics without declared partitions"
        limit = min(partitions[t] for t in topics)
        if name in autoscalers:
            assert "replicas" not in doc["spec"], f"{name}: the HPA owns the replica count"
            most = autoscalers[name]["spec"]["maxReplicas"]
        else:
            most = doc["spec"].get("replicas", 1)
        assert 1 <= most <= limit, f"{name} may run {most} replicas for {limit} partitions"


def test_topics_are_the_platforms(resources: list[dict[str, Any]]) -> None:
    data = _by_kind(resources, "ConfigMap")["kafka-topics"]["data"]
    assert set(data) == platform_topics()
    assert all(int(n) >= 1 for n in data.values())
    job = _by_kind(resources, "Job")["kafka-topics"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["KAFKA_REPLICATION_FACTOR"]) >= 3
    assert 2 <= int(env["KAFKA_MIN_INSYNC_REPLICAS"]) < int(env["KAFKA_REPLICATION_FACTOR"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts[env["TOPICS_DIR"]]]["configMap"]["name"] == "kafka-topics"


# ---- references -----------------------------------------------------------------------------


def test_every_secret_reference_exists_in_the_templates(
    resources: list[dict[str, Any]], secret_templates: dict[str, dict[str, Any]]
) -> None:
    documented = SECRET_TEMPLATES.read_text()
    for where, pod in _pod_specs(resources):
        for container in _containers(pod):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                template = secret_templates.get(ref["name"])
                if ref.get("optional"):
                    # optional keys stay out of the template (an empty value is not "unset");
                    # its header documents them
                    assert ref["key"] in documented, f"{where}: document optional {ref}"
                    continue
                assert template is not None, f"{where}: no template for Secret {ref['name']}"
                keys = {**template.get("stringData", {}), **template.get("data", {})}
                assert ref["key"] in keys, f"{where}: Secret {ref['name']} has no key {ref['key']}"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secret_templates, where
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert name in secret_templates or (
                    volume["secret"].get("optional") and name in documented
                ), f"{where}: Secret volume {name}"


def test_secret_templates_hold_only_placeholders(
    secret_templates: dict[str, dict[str, Any]],
) -> None:
    """Applied by mistake, no template value can start a service in production."""
    from referrals_common.settings import PLACEHOLDER_MARKERS

    for name, template in secret_templates.items():
        assert template["metadata"].get("namespace") == "referrals", name
        for key, value in template.get("stringData", {}).items():
            if key.endswith("access-key"):
                continue  # a user name, not a secret
            assert any(m in value.lower() for m in PLACEHOLDER_MARKERS), f"{name}/{key}"


def test_every_configmap_reference_exists(
    resources: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    configmaps = _by_kind(resources, "ConfigMap")
    generated = {g["name"] for g in kustomization.get("configMapGenerator", [])}
    docs = (REPO / "docs/deployment.md").read_text()
    for where, pod in _pod_specs(resources):
        references: list[tuple[str, str | None, bool]] = []
        for container in _containers(pod):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    ref = source["configMapRef"]
                    references.append((ref["name"], None, bool(ref.get("optional"))))
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    references.append((ref["name"], ref["key"], bool(ref.get("optional"))))
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                ref = volume["configMap"]
                references.append((ref["name"], None, bool(ref.get("optional"))))
        for name, key, optional in references:
            if name in configmaps:
                if key is not None:
                    assert key in configmaps[name]["data"], f"{where}: {name} has no {key}"
            elif name in OPERATOR_CONFIGMAPS:
                assert name in docs, f"docs/deployment.md must say how to create {name}"
            else:
                assert name in generated or optional, f"{where}: no ConfigMap {name}"


def _settings_class(service: str) -> type:
    from importlib import import_module

    config = import_module(f"referrals_{service}.config")
    return next(
        v
        for k, v in vars(config).items()
        if k.endswith("Settings") and getattr(v, "service_name", None) == service
    )


def _container_env(
    container: dict[str, Any], configmaps: dict[str, dict[str, Any]], secrets: dict[str, str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        source = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if (ref["name"], ref["key"]) in secrets:
                env[item["name"]] = secrets[(ref["name"], ref["key"])]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            if ref["name"] in configmaps:
                env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
            else:
                assert ref.get("optional"), ref
    return env


def test_every_process_starts_in_production_with_real_secrets_and_not_with_the_templates(
    resources: list[dict[str, Any]],
    secret_templates: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ConfigMap and the Secrets give each service what its settings demand at start-up in
    production; the templates' placeholders are refused."""
    from pydantic import ValidationError

    configmaps = _by_kind(resources, "ConfigMap")
    real = {  # random values that hold none of the placeholder markers
        (name, key): f"v{os.urandom(12).hex()}"
        for name, template in secret_templates.items()
        for key in template.get("stringData", {})
    }
    for name, template in secret_templates.items():
        if "postgres-dsn" in template.get("stringData", {}):
            service = name.removesuffix("-secrets")
            real[(name, "postgres-dsn")] = (
                f"postgresql://{service}:{os.urandom(8).hex()}@db.internal:5432/{service}"
            )
    placeholders = {
        (name, key): value
        for name, template in secret_templates.items()
        for key, value in template.get("stringData", {}).items()
    }
    for (service, role), doc in _processes(resources).items():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        settings_class = _settings_class(service)
        for secrets, accepted in ((real, True), (placeholders, False)):
            for key in list(os.environ):
                if key.startswith(("REFERRALS_", "PGSSL")):
                    monkeypatch.delenv(key)
            for key, value in _container_env(container, configmaps, secrets).items():
                monkeypatch.setenv(key, value)
            if accepted:
                settings = settings_class()
                assert settings.environment == "production"
                dsn = settings.postgres.dsn.get_secret_value()
                assert dsn == real[(f"{service}-secrets", "postgres-dsn")], (service, role)
                if service == "partners":  # the ops timeline reads the cluster's Zipkin
                    from referrals_partners.operations import TraceViewer

                    viewer = TraceViewer.from_settings(settings)
                    assert viewer is not None and viewer.url == ZIPKIN_URL, role
            else:
                with pytest.raises(ValidationError, match="placeholder"):
                    settings_class()


def test_on_a_sasl_ssl_cluster_every_process_logs_in_as_its_own_service(
    resources: list[dict[str, Any]],
    secret_templates: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """An overlay sets only REFERRALS_KAFKA__SECURITY_PROTOCOL=SASL_SSL and adds the optional
    Kafka keys to each service's Secret and the ConfigMap kafka-ca: every process (migration
    Jobs too, which validate the same settings) then connects as its own principal over TLS."""
    from devstack.tls import Authority
    from referrals_common.messaging.kafka import client_options

    ca = Authority.create(tmp_path).ca_file.read_text()
    configmaps = _by_kind(resources, "ConfigMap")
    configmaps["referrals-config"] = {
        "data": configmaps["referrals-config"]["data"]
        | {"REFERRALS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}
    }
    configmaps["kafka-ca"] = {"data": {"ca.crt": ca}}
    secrets = {
        (name, key): f"v{os.urandom(12).hex()}"
        for name, template in secret_templates.items()
        for key in template.get("stringData", {})
    }
    for name in secret_templates:
        service = name.removesuffix("-secrets")
        secrets[(name, "postgres-dsn")] = f"postgresql://{service}:pw{os.urandom(6).hex()}@db/x"
        secrets[(name, "kafka-username")] = f"svc-{service}"
        secrets[(name, "kafka-password")] = f"k{os.urandom(12).hex()}"
    for (service, role), doc in _processes(resources).items():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        for key in list(os.environ):
            if key.startswith(("REFERRALS_", "PGSSL")):
                monkeypatch.delenv(key)
        for key, value in _container_env(container, configmaps, secrets).items():
            monkeypatch.setenv(key, value)
        kafka = _settings_class(service)().kafka
        assert kafka.username == f"svc-{service}", (service, role)
        options = client_options(kafka)
        assert options["sasl_plain_password"] == secrets[(f"{service}-secrets", "kafka-password")]
        assert options["ssl_context"].get_ca_certs(), (service, role)


def test_each_service_logs_in_to_minio_as_its_own_user(
    resources: list[dict[str, Any]], secret_templates: dict[str, dict[str, Any]]
) -> None:
    """Job minio-users makes records' and translation's MinIO users from the very Secret keys the
    services read; only that Job reads the administrator's Secret; the services that use no
    object storage get no S3 credentials."""
    from devstack import object_store

    job = _by_kind(resources, "Job")["minio-users"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("minio/mc:")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    for service in object_store.ACCESS:
        for kind in ("access", "secret"):
            ref = refs[f"{service.upper()}_S3_{kind.upper()}_KEY"]
            assert ref == {"name": f"{service}-secrets", "key": f"s3-{kind}-key"}, ref
    assert refs["MINIO_ADMIN_USER"]["name"] == refs["MINIO_ADMIN_PASSWORD"]["name"] == "minio-admin"
    assert "minio-admin" in secret_templates
    config = _by_kind(resources, "ConfigMap")["referrals-config"]["data"]
    assert "REFERRALS_S3__ACCESS_KEY" not in config
    for (service, role), doc in _processes(resources).items():
        (process,) = doc["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in process.get("env", [])}
        used = {e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") for e in env.values()}
        assert "minio-admin" not in used, f"{service} {role} reads MinIO's administrator"
        credentials = {n for n in env if n.endswith(("_S3__ACCESS_KEY", "_S3__SECRET_KEY"))}
        if service not in object_store.ACCESS:
            assert not credentials, (service, role)
            continue
        own = f"REFERRALS_{service.upper()}_S3__"
        assert credentials == {f"{own}ACCESS_KEY", f"{own}SECRET_KEY"}, (service, role)
        for kind in ("access", "secret"):
            ref = env[f"{own}{kind.upper()}_KEY"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": f"{service}-secrets", "key": f"s3-{kind}-key"}, (service, role)


def test_minio_users_script_makes_the_local_stacks_policies() -> None:
    """The script behind Job minio-users (and Compose's job) writes the same policies devstack
    gives the local stack's users (devstack.object_store, checked against a real MinIO by
    tests/security/test_object_store_access.py), and grants each service its own."""
    import json
    import re

    from devstack import object_store

    script = (BASE / "minio-users.sh").read_text()
    for access in set(object_store.ACCESS.values()):
        found = re.search(rf'cat >"\$policies/{access}.json" <<EOF\n(.*?)\nEOF\n', script, re.S)
        assert found, f"no {access} policy in minio-users.sh"
        document = json.loads(found.group(1).replace("${BUCKET}", "some-bucket"))
        assert document == object_store.policy(access, "some-bucket"), access
    for service, access in object_store.ACCESS.items():
        upper = service.upper()
        assert f'grant "${upper}_S3_ACCESS_KEY" "${upper}_S3_SECRET_KEY" {access}' in script
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    assert generated["minio-users"] == ["minio-users.sh"]


# ---- the patient's web app ------------------------------------------------------------------


def test_the_web_app_is_deployed_probed_and_scaled(resources: list[dict[str, Any]]) -> None:
    """Deployment `web` (`referrals-web serve`, probed on /health), its Service, autoscaler and
    disruption budget, the migration Job, and a network policy that lets traffic reach its port."""
    deployment = _by_kind(resources, "Deployment")[WEB]
    job = _by_kind(resources, "Job")[f"{WEB}-migrate"]
    for doc in (deployment, job):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert container["image"].split(":")[0] == f"referrals-{WEB}"
        assert "command" not in container, "the image's entrypoint is the web app's CLI"
        assert container["args"][0] in WEB_COMMANDS & cli_commands(WEB)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == WEB
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "--host", ANY_ADDRESS, "--port", str(WEB_PORT)]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert ports.get(get["port"], get["port"]) == WEB_PORT, probe
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _by_kind(resources, "Service")[WEB]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert [p["port"] for p in service["spec"]["ports"]] == [WEB_PORT]
    hpa = _by_kind(resources, "HorizontalPodAutoscaler")[WEB]
    assert hpa["spec"]["scaleTargetRef"]["name"] == WEB
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    budget = _by_kind(resources, "PodDisruptionBudget")[WEB]["spec"]["selector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in budget.items())
    admitted = [
        policy
        for policy in _by_kind(resources, "NetworkPolicy").values()
        if all(
            labels.get(k) == v
            for k, v in policy["spec"]["podSelector"].get("matchLabels", {}).items()
        )
        and any(
            port.get("port") == WEB_PORT
            for rule in policy["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        )
    ]
    assert admitted, f"no NetworkPolicy admits traffic to the web app's port {WEB_PORT}"


def test_the_web_app_calls_the_apis_services_in_the_namespace(
    resources: list[dict[str, Any]],
) -> None:
    config = _by_kind(resources, "ConfigMap")["referrals-config"]["data"]
    services = _by_kind(resources, "Service")
    for service, port in API_PORTS.items():
        url = config[f"REFERRALS_WEB_{service.upper()}_URL"]
        assert url == f"http://{service}-api:{port}", url
        assert [p["port"] for p in services[f"{service}-api"]["spec"]["ports"]] == [port]
    assert config["REFERRALS_WEB_PUBLIC_BASE_URL"].startswith("https://")


def test_the_web_app_starts_in_production_with_real_secrets_and_not_with_the_templates(
    resources: list[dict[str, Any]],
    secret_templates: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ConfigMap and Secret web-secrets give the web app what its settings demand in
    production, and nothing of the services' secrets; the template's placeholders are refused."""
    from pydantic import ValidationError

    from referrals_web.config import WebSettings

    configmaps = _by_kind(resources, "ConfigMap")
    template = secret_templates[f"{WEB}-secrets"]["stringData"]
    real = {(f"{WEB}-secrets", key): f"v{os.urandom(12).hex()}" for key in template}
    real[(f"{WEB}-secrets", "postgres-dsn")] = (
        f"postgresql://{WEB}:{os.urandom(8).hex()}@db.internal:5432/{WEB}"
    )
    placeholders = {(f"{WEB}-secrets", key): value for key, value in template.items()}
    for doc in (
        _by_kind(resources, "Deployment")[WEB],
        _by_kind(resources, "Job")[f"{WEB}-migrate"],
    ):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        names = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert names == {f"{WEB}-secrets"}, f"{doc['metadata']['name']} reads {names}"
        for secrets, accepted in ((real, True), (placeholders, False)):
            for key in list(os.environ):
                if key.startswith(("REFERRALS_", "PGSSL")):
                    monkeypatch.delenv(key)
            for key, value in _container_env(container, configmaps, secrets).items():
                monkeypatch.setenv(key, value)
            if accepted:
                settings = WebSettings()
                assert settings.environment == "production"
                dsn = settings.postgres.dsn.get_secret_value()
                assert dsn == real[(f"{WEB}-secrets", "postgres-dsn")]
                assert settings.intake_url == f"http://intake-api:{API_PORTS['intake']}"
            else:
                with pytest.raises(ValidationError, match="placeholder"):
                    WebSettings()


# ---- the trace viewer -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitoring() -> list[dict[str, Any]]:
    """Every object deploy/k8s/monitoring deploys."""
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {
        p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml"
    }
    return [doc for name in kustomization["resources"] for doc in _documents(MONITORING / name)]


def test_every_process_traces_to_zipkin_with_the_local_platforms_exporter(
    resources: list[dict[str, Any]],
    monitoring: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared ConfigMap, which every process reads, sends spans to monitoring's Zipkin with
    the exporter and variables `make up` sets (devstack.platform.trace_environment), and names
    the same server as the ops timeline's viewer (partners' settings: the production test
    above); the Service it names is there, on that port."""
    from devstack import platform
    from referrals_common import telemetry

    config = _by_kind(resources, "ConfigMap")["referrals-config"]["data"]
    local = platform.trace_environment(ZIPKIN_URL)
    for key in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_ZIPKIN_ENDPOINT"):
        assert config[key] == local[key], key
    assert not [k for k in config if k.startswith("OTEL_EXPORTER_OTLP")]
    assert config["REFERRALS_PARTNERS_TRACE_VIEWER_URL"] == ZIPKIN_URL
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)
    for key, value in config.items():
        if key.startswith("OTEL_"):
            monkeypatch.setenv(key, value)
    assert telemetry._exporter_choice() == "zipkin"
    for doc in _by_kind(resources, "Deployment").values():
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
        assert "referrals-config" in sources, doc["metadata"]["name"]
    service = _by_kind(monitoring, "Service")["zipkin"]
    assert f"http://zipkin.{service['metadata']['namespace']}.svc:9411" == ZIPKIN_URL
    assert [p["port"] for p in service["spec"]["ports"]] == [9411]


def test_zipkin_is_bounded_hardened_and_reached_only_from_the_platform(
    monitoring: list[dict[str, Any]],
) -> None:
    """The same Zipkin as `make up`'s and Compose's (version, span bound, heap, exit when the
    heap runs out), one replica (memory storage is per process), a hardened pod whose container
    limit holds the heap, probed on /health; only namespace `referrals` reaches its port."""
    from devstack import platform

    deployment = _by_kind(monitoring, "Deployment")["zipkin"]
    assert deployment["metadata"]["namespace"] == "monitoring"
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"openzipkin/zipkin-slim:{platform.ZIPKIN_VERSION}"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_TYPE"] == "mem"
    assert int(env["MEM_MAX_SPANS"]) == platform.ZIPKIN_MAX_SPANS
    java = env["JAVA_OPTS"].split()
    assert java == list(platform.ZIPKIN_JAVA_OPTIONS)  # heap, exit when out, 8 server threads
    heap = _quantity(platform.ZIPKIN_HEAP.removesuffix("m") + "Mi")
    assert heap < _quantity(container["resources"]["limits"]["memory"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    own = container["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    assert TMP in {m["mountPath"] for m in container["volumeMounts"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe
    (policy,) = [
        p
        for p in _by_kind(monitoring, "NetworkPolicy").values()
        if p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "zipkin"}
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "referrals"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9411}]


def test_no_jaeger_remains() -> None:
    """One trace viewer everywhere: no manifest names Jaeger, its collector or its ports."""
    for path in sorted(p for p in K8S.rglob("*") if p.is_file()):
        text = path.read_text().lower()
        assert "jaeger" not in text, path
        assert ":4318" not in text and ":4317" not in text, path
