"""The OpenAPI documents of intake, records and partners pass Spectral's `spectral:oas` ruleset.

Spectral (`@stoplight/spectral-cli` from npm, pinned in
deploy/local/node/spectral/package-lock.json) is installed once into the user cache by
`devstack install` (`make test` runs it first) or, failing that, by the first test here
(`devstack.install.ensure_node_tool`, `npm ci`), and runs under the machine's Node.js with the
ruleset of deploy/local/node/spectral/.spectral.yaml. Each document is the one the service's app
generates and serves at `/openapi.json`: no finding of severity error or warning (information
and hints are printed, and today there are none of those either).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from rich.console import Console

from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import create_app as create_records_app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULESET = REPO / "deploy" / "local" / "node" / "spectral" / ".spectral.yaml"
SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}
SEVERITIES = ("error", "warning", "information", "hint")
Findings = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def spectral() -> Path:
    from devstack import install

    home = install.ensure_node_tool(Console(stderr=True), "spectral")
    return home / "node_modules" / ".bin" / "spectral"


def lint(spectral: Path, documents: dict[str, dict[str, Any]], where: Path) -> Findings:
    """Spectral's findings on each of `documents` (by name), each with its severity's name; one
    run of Spectral for all of them (its start is the slow part)."""
    sources = {}
    for name, document in documents.items():
        sources[name] = where / f"{name}.openapi.json"
        sources[name].write_text(json.dumps(document, indent=1), encoding="utf-8")
    done = subprocess.run(
        [str(spectral), "lint", "--ruleset", str(RULESET), "--format", "json", "--quiet"]
        + [str(source) for source in sources.values()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Spectral exits 1 when it found an error; anything else it cannot say in JSON is a fault.
    assert done.returncode in (0, 1), done.stderr
    found: Findings = {name: [] for name in documents}
    by_source = {str(source.resolve()): name for name, source in sources.items()}
    for finding in json.loads(done.stdout or "[]"):
        finding["severity_name"] = SEVERITIES[finding["severity"]]
        found[by_source[str(Path(finding["source"]).resolve())]].append(finding)
    return found


@pytest.fixture(scope="module")
def findings(spectral, tmp_path_factory) -> Findings:
    documents = {service: factory().openapi() for service, factory in SERVICES.items()}
    return lint(spectral, documents, tmp_path_factory.mktemp("openapi"))


def report(findings: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{f['severity_name']} {f['code']} at {'.'.join(map(str, f['path'])) or '<root>'}: "
        f"{f['message']}"
        for f in findings
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_openapi_document_passes_spectral(findings, service):
    found = findings[service]
    counts = {name: sum(f["severity_name"] == name for f in found) for name in SEVERITIES}
    print(f"spectral:oas on {service}'s OpenAPI document: {counts}\n{report(found)}")
    assert counts["error"] == 0, report(found)
    assert counts["warning"] == 0, report(found)
    assert found == [], report(found)


def test_spectral_reports_a_weak_document(spectral, tmp_path):
    """The check can fail: an operation without tags or description, and a document without
    servers, are warnings."""
    document = create_partners_app().openapi()
    operation = next(iter(next(iter(document["paths"].values())).values()))
    operation.pop("tags", None)
    operation.pop("description", None)
    document.pop("servers", None)
    codes = {f["code"] for f in lint(spectral, {"weak": document}, tmp_path)["weak"]}
    assert {"operation-tags", "operation-description", "oas3-api-servers"} <= codes, codes
