"""deploy/prometheus and deploy/grafana: the configuration every way of running the platform uses
is valid for Prometheus itself (`promtool check config`, `check rules`), the alert rules do what
their unit tests say (`promtool test rules`), Alertmanager's routing is valid (`amtool`), and
the targets cover every process; the dashboards read only what the platform exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from devstack import monitoring
from tests.deploy.support import API_PORTS, METRICS_PORT, REPO, ROLES

pytestmark = pytest.mark.deploy

PROMETHEUS = REPO / "deploy/prometheus"
DASHBOARDS = REPO / "deploy/grafana/dashboards"


@pytest.fixture(scope="module")
def binaries() -> monitoring.Binaries:
    return monitoring.ensure_prometheus(Console(stderr=True))


def _run(argv: list[Any], cwd: Path | None = None) -> str:
    out = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_the_rules_are_valid(binaries: monitoring.Binaries) -> None:
    rules = sorted((PROMETHEUS / "rules").glob("*.yml"))
    assert {r.name for r in rules} == {"alerts.yml", "recording.yml", "case-deadlines.yml"}
    _run([binaries.promtool, "check", "rules", *rules])


def test_the_alert_rules_pass_their_unit_tests(binaries: monitoring.Binaries) -> None:
    out = _run([binaries.promtool, "test", "rules", "tests/alerts.test.yml"], cwd=PROMETHEUS)
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test_and_a_runbook_entry() -> None:
    alerts = [
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "rules/alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    tested = (PROMETHEUS / "tests/alerts.test.yml").read_text()
    runbook = (REPO / "docs/runbook.md").read_text()
    # Alerts on a failure count (notifications, webhooks) and `up` are covered by the same
    # mechanics as DeadLettersWritten and OutboxStale; the others have a test of their own.
    must_test = {"CaseStuckInState", "DeadLettersWritten", "ConsumerLagging", "OutboxStale"}
    assert must_test <= set(alerts)
    for alert in must_test:
        assert f"alertname: {alert}" in tested, alert
    for alert in alerts:
        assert f"`{alert}`" in runbook, f"docs/runbook.md says nothing of {alert}"


def test_compose_configuration_is_valid(binaries: monitoring.Binaries) -> None:
    _run([binaries.promtool, "check", "config", PROMETHEUS / "prometheus.yml"])
    _run([binaries.amtool, "check-config", PROMETHEUS / "alertmanager.yml"])


def test_devstack_configuration_is_valid_and_scrapes_every_process(
    binaries: monitoring.Binaries, tmp_path: Path
) -> None:
    metrics = {
        f"{service}-{role}": f"http://127.0.0.1:{9460 + n}/metrics"
        for n, (service, role) in enumerate(
            (s, r) for s, roles in sorted(ROLES.items()) for r in sorted(roles)
        )
    }
    config = monitoring.write_config(tmp_path, metrics, "127.0.0.1:9093")
    _run([binaries.promtool, "check", "config", config])
    targets = yaml.safe_load((tmp_path / "targets/devstack.yml").read_text())
    assert {t["labels"]["process"] for t in targets} == set(metrics)
    # The same configuration as compose's but for the intervals and Alertmanager's address.
    shared = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    local = yaml.safe_load(config.read_text())
    assert local["scrape_configs"] == shared["scrape_configs"]
    assert local["rule_files"] == shared["rule_files"]
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(monitoring.alertmanager_config("127.0.0.1:2525"))
    )
    _run([binaries.amtool, "check-config", tmp_path / "alertmanager.yml"])


def test_compose_targets_are_every_process_on_its_metrics_port() -> None:
    targets = yaml.safe_load((PROMETHEUS / "targets/compose.yml").read_text())
    got = {t["labels"]["process"]: t["targets"] for t in targets}
    want = {
        f"{service}-{role}": [
            f"{service}-{role}:{API_PORTS[service] if role == 'api' else METRICS_PORT}"
        ]
        for service, roles in ROLES.items()
        for role in roles
    }
    assert got == want


def _panel_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                found.append((path.stem, panel["title"], target["expr"]))
    return found


def test_four_dashboards_of_panels_that_query_the_provisioned_data_source() -> None:
    assert {p.stem for p in DASHBOARDS.glob("*.json")} == {
        "journey-funnel",
        "center-sla",
        "pipeline-health",
        "dead-letters",
    }
    sources = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = sources["datasources"][0]["uid"]
    for path in DASHBOARDS.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])


def test_dashboards_read_only_metrics_the_platform_exports_or_records() -> None:
    from referrals_common import metrics

    exported = {
        m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")
    }
    recorded = {
        rule["record"]
        for group in yaml.safe_load((PROMETHEUS / "rules/recording.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    for board, title, expr in _panel_queries():
        for name in re.findall(r"\b(referrals[:_][a-z0-9_:]+)", expr):
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert name in recorded or base in exported, f"{board} / {title}: {name}"


K8S_MONITORING = REPO / "deploy/k8s/monitoring"
K8S_BASE = REPO / "deploy/k8s/base"


def _k8s_config() -> dict[str, Any]:
    return yaml.safe_load((K8S_MONITORING / "prometheus/prometheus.conf").read_text())


def _generated_files(name: str) -> dict[str, Path]:
    """The files of the monitoring kustomization's ConfigMap `name`: key → source."""
    kustomization = yaml.safe_load((K8S_MONITORING / "kustomization.yaml").read_text())
    return {
        key: K8S_MONITORING / source
        for generator in kustomization["configMapGenerator"]
        if generator["name"] == name
        for key, source in (f.split("=", 1) for f in generator["files"])
    }


def _k8s_documents(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and "kind" in doc
    ]


def test_kubernetes_uses_the_same_configuration_and_rules_with_dns_discovery() -> None:
    shared = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    k8s = _k8s_config()
    assert k8s["global"] == shared["global"]
    assert k8s["rule_files"] == shared["rule_files"]
    assert [j["job_name"] for j in k8s["scrape_configs"]] == [
        j["job_name"] for j in shared["scrape_configs"]
    ]
    job = k8s["scrape_configs"][0]
    assert set(job) == {"job_name", "dns_sd_configs", "relabel_configs"}
    assert k8s["scrape_configs"][1:] == shared["scrape_configs"][1:]
    rules = _generated_files("prometheus-rules")
    assert set(rules) == {p.name for p in (PROMETHEUS / "rules").glob("*.yml")}
    for name, copy in rules.items():
        assert copy.read_text() == (PROMETHEUS / "rules" / name).read_text(), name


def test_kubernetes_configuration_and_rules_pass_promtool(
    binaries: monitoring.Binaries, tmp_path: Path
) -> None:
    """The configuration and rules as the Prometheus pod sees them (its ConfigMaps mounted at
    /etc/prometheus/prometheus.yml and /etc/prometheus/rules) are valid for the project's
    promtool, which checks the rule files the configuration names along with it."""
    (deployment,) = [
        d
        for d in _k8s_documents(K8S_MONITORING)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "prometheus"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]
    assert mounts["config"] == "/etc/prometheus/prometheus.yml"
    assert mounts["rules"] == "/etc/prometheus/rules"
    ((key, config),) = _generated_files("prometheus-config").items()
    assert key == "prometheus.yml"
    (tmp_path / "rules").mkdir()
    shutil.copyfile(config, tmp_path / "prometheus.yml")
    for name, source in _generated_files("prometheus-rules").items():
        shutil.copyfile(source, tmp_path / "rules" / name)
    out = _run([binaries.promtool, "check", "config", tmp_path / "prometheus.yml"])
    assert f"SUCCESS: {len(_generated_files('prometheus-rules'))} rule files found" in out
    _run([binaries.promtool, "check", "rules", *sorted((tmp_path / "rules").glob("*.yml"))])


def test_promtool_refuses_the_pod_discovery_it_cannot_check(
    binaries: monitoring.Binaries, tmp_path: Path
) -> None:
    """Why Kubernetes' scrape configuration discovers by DNS: the project's promtool (Debian's
    build) fails on `kubernetes_sd_configs`, so a configuration using it could not be checked.
    Should a promtool that knows it come along, this fails, and pod discovery may come back."""
    config = _k8s_config()
    job = config["scrape_configs"][0]
    del job["dns_sd_configs"]
    job["kubernetes_sd_configs"] = [{"role": "pod", "namespaces": {"names": ["referrals"]}}]
    config["rule_files"] = []
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [str(binaries.promtool), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "kubernetes_sd_configs not found" in out.stdout + out.stderr


def test_kubernetes_discovery_finds_every_process_through_its_headless_service() -> None:
    """Each DNS name the configuration queries is a headless Service of the base (its A records
    are the pods' addresses, not a cluster IP), selecting the pods of exactly one Deployment, on
    the port that Deployment serves /metrics on; together they are every long-running process;
    the `process` label the relabelling makes is <service>-<role> as in compose and devstack;
    and the base's NetworkPolicy lets namespace `monitoring` reach each port."""
    from devstack import render, roles

    manifest = roles.load()
    job = _k8s_config()["scrape_configs"][0]
    (relabel,) = job["relabel_configs"]
    assert relabel["source_labels"] == ["__meta_dns_name"]
    assert relabel["target_label"] == "process"
    assert relabel.get("replacement", "$1") == "$1"  # Prometheus's default: the first group
    base = _k8s_documents(K8S_BASE)
    services = {d["metadata"]["name"]: d for d in base if d["kind"] == "Service"}
    deployments = [d for d in base if d["kind"] == "Deployment"]
    found: dict[str, int] = {}
    for sd in job["dns_sd_configs"]:
        assert sd["type"] == "A", sd
        for name in sd["names"]:
            service_name, namespace, svc = name.split(".")
            assert (namespace, svc) == ("referrals", "svc"), name
            match = re.fullmatch(relabel["regex"], name)  # Prometheus anchors its regexes
            assert match, name
            process = match.group(1)
            assert process not in found, f"{process} is scraped twice"
            found[process] = sd["port"]
            spec = services[service_name]["spec"]
            assert spec["clusterIP"] == "None", f"{service_name} is not headless"
            assert spec["publishNotReadyAddresses"] is True, service_name
            (port,) = spec["ports"]
            assert port["port"] == sd["port"], service_name
            selected = [
                d
                for d in deployments
                if all(
                    d["spec"]["template"]["metadata"]["labels"].get(k) == v
                    for k, v in spec["selector"].items()
                )
            ]
            assert [d["metadata"]["name"] for d in selected] == [process], service_name
            (container,) = selected[0]["spec"]["template"]["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports[port["targetPort"]] == sd["port"], service_name
    want = {
        manifest.process_name(service, role): render.metrics_port(manifest, service, role)
        for service, spec in manifest.services.items()
        for role in spec.roles
    }
    assert found == want
    assert {f"{s}-{r}" for s, roles_ in ROLES.items() for r in roles_} <= set(found)
    scrape = next(
        d
        for d in base
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-metrics-scrape"
    )
    (rule,) = scrape["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert set(found.values()) <= {p["port"] for p in rule["ports"]}
    assert METRICS_PORT in found.values()


def test_kubernetes_relabelling_labels_each_discovered_pod_with_its_process(
    binaries: monitoring.Binaries, tmp_path: Path
) -> None:
    """What DNS discovery gives Prometheus for each pod (its address on the configured port and
    `__meta_dns_name`, the name queried), run through the Kubernetes job's own relabelling by
    promtool (`check service-discovery`, a file of those discovered targets standing in for the
    cluster's DNS): every pod of every process is scraped in job `referrals` (what ProcessDown
    watches) and labelled `process` <service>-<role>, as in compose and devstack."""
    from devstack import render, roles

    manifest = roles.load()
    config = _k8s_config()
    job = config["scrape_configs"][0]
    discovered = []
    for n, (name, port) in enumerate(
        (name, sd["port"]) for sd in job.pop("dns_sd_configs") for name in sd["names"]
    ):
        for pod in (1, 2):  # two replicas: two A records behind one name
            address = f"10.0.{n}.{pod}:{port}"
            discovered.append({"targets": [address], "labels": {"__meta_dns_name": name}})
    (tmp_path / "discovered.yml").write_text(yaml.safe_dump(discovered))
    job["file_sd_configs"] = [{"files": [str(tmp_path / "discovered.yml")]}]
    config["rule_files"] = []
    config.pop("alerting")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [
            str(binaries.promtool),
            "check",
            "service-discovery",
            "--timeout=10s",
            str(tmp_path / "prometheus.yml"),
            job["job_name"],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    targets = json.loads(out.stdout[: out.stdout.rindex("]") + 1])
    assert len(targets) == len(discovered)
    got: dict[str, set[str]] = {}
    for target in targets:
        labels = target["labels"]
        assert labels["job"] == "referrals", labels
        assert labels["__metrics_path__"] == "/metrics", labels
        got.setdefault(labels["process"], set()).add(labels["__address__"].rsplit(":", 1)[1])
    want = {
        manifest.process_name(service, role): {str(render.metrics_port(manifest, service, role))}
        for service, spec in manifest.services.items()
        for role in spec.roles
    }
    assert got == want


def test_kubernetes_prometheus_needs_no_access_to_the_kubernetes_api() -> None:
    """DNS discovery reads no Kubernetes object: no Role, no binding, no account token."""
    monitoring_docs = _k8s_documents(K8S_MONITORING)
    kinds = {d["kind"] for d in monitoring_docs}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert "ServiceAccount" not in kinds
    for doc in monitoring_docs:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            assert pod.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
            assert "serviceAccountName" not in pod, doc["metadata"]["name"]
    assert not [d for d in _k8s_documents(K8S_BASE) if d["kind"] == "ServiceMonitor"]


def test_compose_runs_prometheus_and_alertmanager_with_the_shared_files() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    prometheus, alertmanager = compose["prometheus"], compose["alertmanager"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert any(
        v.startswith("./deploy/prometheus/alertmanager.yml:") for v in alertmanager["volumes"]
    )
    routing = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    (email,) = routing["receivers"][0]["email_configs"]
    assert email["smarthost"] == "mailpit:1025"
    assert "alertmanager" in str(
        yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["alerting"]
    )
