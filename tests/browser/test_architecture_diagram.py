"""docs/architecture.md's diagram is the code's, and it draws: the generated block is what
`devstack render` writes today (services from deploy/roles.yaml, topics' producers and consumers
from the contracts), and the official Mermaid library, in Debian's Chromium, renders it with a
box for every service, topic and outside party and an arrow for every edge."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rich.console import Console

from devstack import diagram, install
from devstack.roles import Manifest, load
from tests.browser.support import REPO

pytestmark = pytest.mark.browser


def _block() -> str:
    text = (REPO / diagram.DOCUMENT).read_text(encoding="utf-8")
    return text[text.index(diagram.BEGIN) : text.index(diagram.END) + len(diagram.END) + 1]


def _mermaid(block: str) -> str:
    return block.split("```mermaid\n", 1)[1].split("```", 1)[0]


def test_the_committed_diagram_is_the_one_the_code_draws() -> None:
    assert _block() == diagram.draw(), "run `make render` and commit docs/architecture.md"


def test_a_role_added_to_the_manifest_reaches_the_diagram() -> None:
    data = load().model_dump()
    data["services"]["partners"]["roles"]["archiver"] = {"resources": "small", "replicas": 1}
    drawn = diagram.draw(Manifest.model_validate(data))
    assert "api · consumer · relay · scheduler · archiver" in drawn


def test_an_edge_to_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagram, "EDGES", (*diagram.EDGES, ("web", "billing", "HTTP API")))
    with pytest.raises(ValueError, match="billing"):
        diagram.draw()


def test_mermaid_renders_every_node_and_edge(browser: Any) -> None:
    code = _mermaid(_block())
    nodes = set(re.findall(r"^\s+([a-z_0-9]+)[\[(]", code, flags=re.MULTILINE))
    edges = [line for line in code.splitlines() if re.search(r"--|-\.", line)]
    for service in load().services:
        assert service in nodes
    home = install.ensure_node_tool(Console(stderr=True), "mermaid")
    script = home / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"

    page = browser.new_page()
    try:
        page.set_content("<!doctype html><html><body><div id='out'></div></body></html>")
        page.add_script_tag(path=str(script))
        svg = page.evaluate(
            """async (code) => {
                mermaid.initialize({startOnLoad: false, securityLevel: "strict"});
                await mermaid.parse(code);
                const {svg} = await mermaid.render("architecture", code);
                document.getElementById("out").innerHTML = svg;
                return svg;
            }""",
            code,
        )
        drawn_nodes = page.locator("#out g.node").count()
        drawn_edges = page.locator("#out .edgePaths path, #out path.flowchart-link").count()
    finally:
        page.close()

    assert svg.startswith("<svg")
    assert drawn_nodes == len(nodes), (drawn_nodes, sorted(nodes))
    assert drawn_edges >= len(edges), (drawn_edges, len(edges))
    for label in ("referrals.routing.v1", "17 event types", "Patient, on a phone"):
        assert label in svg


def test_mermaid_renders_every_services_modules(browser: Any) -> None:
    """The modules' diagrams (devstack/modules.py): one per service, a box per module, an arrow
    per import between two of them."""
    from devstack import modules

    text = (REPO / diagram.DOCUMENT).read_text(encoding="utf-8")
    block = text[text.index(modules.BEGIN) : text.index(modules.END)]
    codes = [part.split("```", 1)[0] for part in block.split("```mermaid\n")[1:]]
    assert len(codes) == len(modules.SERVICES)
    home = install.ensure_node_tool(Console(stderr=True), "mermaid")
    script = home / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    page = browser.new_page()
    try:
        page.set_content("<!doctype html><html><body><div id='out'></div></body></html>")
        page.add_script_tag(path=str(script))
        for service, code in zip(modules.SERVICES, codes, strict=True):
            nodes, arrows = modules.graph(REPO, service)
            page.evaluate(
                """async ([name, code]) => {
                    mermaid.initialize({startOnLoad: false, securityLevel: "strict"});
                    await mermaid.parse(code);
                    const {svg} = await mermaid.render(name, code);
                    document.getElementById("out").innerHTML = svg;
                }""",
                [f"modules_{service}", code],
            )
            drawn_nodes = page.locator("#out g.node").count()
            drawn_edges = page.locator("#out .edgePaths path, #out path.flowchart-link").count()
            assert drawn_nodes == len(nodes), (service, drawn_nodes, nodes)
            assert drawn_edges >= len(arrows), (service, drawn_edges, len(arrows))
    finally:
        page.close()
