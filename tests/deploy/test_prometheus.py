"""deploy/prometheus and deploy/grafana: the configuration every way of running the platform uses
is valid for Prometheus itself (`promtool check config`, `check rules`), the alert rules do what
their unit tests say (`promtool test rules`), Alertmanager's routing is valid (`amtool`), and
the targets cover every process; the dashboards read only what the platform exports."""

from __future__ import annotations

import json
import re
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


def test_kubernetes_uses_the_same_configuration_and_rules_with_pod_discovery() -> None:
    shared = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    k8s = yaml.safe_load((K8S_MONITORING / "prometheus/prometheus.conf").read_text())
    assert k8s["global"] == shared["global"]
    assert k8s["rule_files"] == shared["rule_files"]
    assert [j["job_name"] for j in k8s["scrape_configs"]] == [
        j["job_name"] for j in shared["scrape_configs"]
    ]
    job = k8s["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["referrals"]}}]
    # The same `process` label as compose's and devstack's targets (<service>-<role>).
    labels = [r for r in job["relabel_configs"] if r.get("target_label") == "process"]
    assert labels[0]["source_labels"] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_name",
        "__meta_kubernetes_pod_label_app_kubernetes_io_component",
    ]
    assert labels[0]["separator"] == "-"
    assert k8s["scrape_configs"][1:] == shared["scrape_configs"][1:]
    kustomization = yaml.safe_load((K8S_MONITORING / "kustomization.yaml").read_text())
    rules = {
        key: K8S_MONITORING / source
        for generator in kustomization["configMapGenerator"]
        if generator["name"] == "prometheus-rules"
        for key, source in (f.split("=", 1) for f in generator["files"])
    }
    assert set(rules) == {p.name for p in (PROMETHEUS / "rules").glob("*.yml")}
    for name, copy in rules.items():
        assert copy.read_text() == (PROMETHEUS / "rules" / name).read_text(), name


def test_kubernetes_pods_carry_what_discovery_reads() -> None:
    """Every Deployment of the base is annotated for scraping, on the port its metrics are on,
    with the labels the `process` label is made of."""
    for path in sorted((REPO / "deploy/k8s/base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment" or doc["metadata"]["name"] == "web":
                continue
            name = doc["metadata"]["name"]
            template = doc["spec"]["template"]["metadata"]
            service, role = name.split("-", 1)
            assert template["labels"]["app.kubernetes.io/name"] == service, name
            assert template["labels"]["app.kubernetes.io/component"] == role, name
            annotations = template["annotations"]
            assert annotations["prometheus.io/scrape"] == "true", name
            port = API_PORTS[service] if role == "api" else METRICS_PORT
            assert annotations["prometheus.io/port"] == str(port), name


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
