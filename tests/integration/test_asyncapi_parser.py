"""The AsyncAPI document is valid for the official parser, `@asyncapi/parser` from npm.

The parser (pinned in deploy/local/node/asyncapi/package-lock.json) is installed once into the
user cache by `devstack install` (`make test` runs it first) or, failing that, by the first test
here (`devstack.install.ensure_node_tool`, `npm ci`), and runs under the machine's Node.js. Both
the committed docs/contracts/asyncapi.json and the document the code generates now are parsed:
no diagnostic of severity error, and none of any other severity either (today's count is 0).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from referrals_common.contracts.schema import ASYNCAPI_FILE, asyncapi_document

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "contracts" / ASYNCAPI_FILE
VALIDATE = REPO / "deploy" / "local" / "node" / "asyncapi" / "validate.cjs"


@pytest.fixture(scope="module")
def parser_modules() -> Path:
    from devstack import install

    home = install.ensure_node_tool(Console(stderr=True), "asyncapi")
    return home / "node_modules"


def parse(parser_modules: Path, document: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(VALIDATE), "-"],
        input=document,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(parser_modules)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def report(result: dict[str, Any]) -> str:
    return "\n".join(
        f"{d['severity']} {d['code']} at {d['path'] or '<root>'}: {d['message']}"
        for d in result["diagnostics"]
    )


@pytest.mark.parametrize("which", ["committed", "generated"])
def test_the_asyncapi_document_is_valid_for_the_official_parser(parser_modules, which):
    text = (
        COMMITTED.read_text(encoding="utf-8")
        if which == "committed"
        else json.dumps(asyncapi_document())
    )
    result = parse(parser_modules, text)
    print(f"@asyncapi/parser on the {which} document: {result['counts']}")
    assert result["valid"], report(result)
    assert result["counts"]["error"] == 0, report(result)
    assert result["diagnostics"] == [], report(result)


def test_the_parser_reports_an_invalid_document(parser_modules):
    """The check can fail: an operation naming a channel that does not exist is an error."""
    document = asyncapi_document()
    document["operations"]["receiveReferralOffers"]["channel"] = {"$ref": "#/channels/nowhere"}
    result = parse(parser_modules, json.dumps(document))
    assert result["counts"]["error"] > 0, report(result)
