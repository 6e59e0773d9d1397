"""docs/architecture.md's diagrams of the services' modules are drawn from their imports
(`devstack.modules`, read with ast): the arrows the code has are there, an import added to a
module becomes an arrow, relative imports count, and migrations and private modules are left
out."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack import diagram, modules
from tests.deploy.support import REPO


def test_the_arrows_are_the_imports_the_services_have() -> None:
    nodes, arrows = modules.graph(REPO, "intake")
    assert {"api/deps", "api/front_end", "bootstrap", "service", "repository"} <= set(nodes)
    assert ("api/deps", "bootstrap") in arrows
    assert ("service", "repository") in arrows
    assert not [a for a in arrows if a[0].startswith("api/") and a[1] == "main"]
    assert not [n for n in nodes if n.startswith("migrations")]
    partners = modules.graph(REPO, "partners")[1]
    assert ("api/centers", "api/deps") in partners


def test_an_import_added_to_a_module_becomes_an_arrow(tmp_path: Path) -> None:
    shutil.copytree(REPO / "services" / "translation", tmp_path / "services" / "translation")
    package = tmp_path / "services" / "translation" / "src" / "referrals_translation"
    assert ("ocr", "repository") not in modules.graph(tmp_path, "translation")[1]
    (package / "ocr.py").write_text(
        (package / "ocr.py").read_text() + "\nfrom .repository import TranslationRepository\n"
    )
    (package / "archive.py").write_text("from referrals_translation import models\n")
    nodes, arrows = modules.graph(tmp_path, "translation")
    assert ("ocr", "repository") in arrows  # a relative import
    assert "archive" in nodes and ("archive", "models") in arrows
    assert "_worker_preload" not in nodes


def test_the_committed_block_is_the_one_the_code_draws() -> None:
    text = (REPO / diagram.DOCUMENT).read_text(encoding="utf-8")
    block = text[text.index(modules.BEGIN) : text.index(modules.END) + len(modules.END) + 1]
    assert block == modules.draw(REPO), "run `make render` and commit docs/architecture.md"
    assert block.count("```mermaid") == len(modules.SERVICES)
