"""The topics the code wants compacted (`TOPIC_CONFIGS`: the centers' credentials, whose last
event per key must outlive any retention) are made compacted by every way topics are made: the
services and devstack (`ensure_topics`), Compose's and Kubernetes' `kafka-topics` job."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from referrals_common.contracts import topics
from tests.deploy.support import REPO

pytestmark = pytest.mark.deploy

COMPACTED = {t for t, c in topics.TOPIC_CONFIGS.items() if c.get("cleanup.policy") == "compact"}


def test_the_credentials_topic_is_the_compacted_one() -> None:
    assert {topics.CREDENTIALS} == COMPACTED


def test_the_compose_topics_job_compacts_them() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    job = compose["services"]["kafka-topics"]
    assert set(job["environment"]["KAFKA_COMPACTED_TOPICS"].split()) == COMPACTED
    assert {spec.split(":")[0] for spec in job["command"]} >= COMPACTED


def test_the_kubernetes_topics_job_compacts_them() -> None:
    docs: list[dict[str, Any]] = [
        d
        for d in yaml.safe_load_all((REPO / "deploy/k8s/base/kafka-topics-job.yaml").read_text())
        if d
    ]
    job = next(d for d in docs if d["kind"] == "Job")
    env = {
        e["name"]: e.get("value")
        for c in job["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert set((env["KAFKA_COMPACTED_TOPICS"] or "").split()) == COMPACTED


def test_the_script_gives_the_policy_to_the_topic_and_not_its_dead_letters() -> None:
    script = (REPO / "deploy/k8s/base/create-topics.sh").read_text()
    assert 'case "$compacted" in *" $name "*) policy="compact"' in script
    assert '--config "cleanup.policy=$policy"' in script
