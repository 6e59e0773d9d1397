"""What the browser tests share: Debian's Chromium, the phone and desktop contexts, axe-core
checks and screenshots (the fixtures are in conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from devstack.install import CHROMIUM_PACKAGE

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM_ARGS = [
    # This machine's closed network refuses Chromium's background connections (updates,
    # field trials, sync); without these Chromium keeps trying while a test runs.
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "locale": "uk-UA",
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
DESKTOP = {"viewport": {"width": 1366, "height": 900}, "locale": "en-GB"}
BLOCKING_IMPACTS = ("serious", "critical")
TIMEOUT_MS = 30_000


def chromium_executable() -> str:
    """Debian's Chromium, or a failure that says how to install it (never a skip: a browser
    test that did not run proves nothing)."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "the browser tests drive Debian's Chromium, and `chromium` is not on PATH: install "
            f"the Debian package `{CHROMIUM_PACKAGE}` (`make test` installs it through `devstack "
            f"install`, as root or with passwordless sudo; or apt-get install -y "
            f"{CHROMIUM_PACKAGE}); "
            "Playwright's own browser download is not used",
            pytrace=False,
        )
    return path


def axe_report(violations: list[dict[str, Any]]) -> str:
    """Each violation as a person reads it: rule, impact, what it means, where, how to fix."""
    lines = [f"{len(violations)} serious or critical accessibility violation(s):"]
    for violation in violations:
        lines.append(
            f"\n- {violation['id']} ({violation['impact']}): {violation['help']}"
            f"\n  {violation['helpUrl']}"
        )
        for node in violation["nodes"][:8]:
            target = " ".join(str(t) for t in node.get("target", []))
            lines.append(f"  • {target}\n    {node.get('html', '')[:200]}")
            summary = node.get("failureSummary") or ""
            lines += [f"    {line.strip()}" for line in summary.splitlines() if line.strip()]
        if len(violation["nodes"]) > 8:
            lines.append(f"  … and {len(violation['nodes']) - 8} more")
    return "\n".join(lines)


def axe_check(page: Any, *, context: str | None = None) -> list[dict[str, Any]]:
    """Run axe-core (bundled with axe-playwright-python) on `page` as it is now and fail on any
    serious or critical violation; return the lesser ones (moderate, minor)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context=context)
    violations = results.response["violations"]
    blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
    assert not blocking, f"{page.url}\n{axe_report(blocking)}"
    return [v for v in violations if v.get("impact") not in BLOCKING_IMPACTS]


def screenshot(page: Any, name: str) -> Path:
    """The whole page as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path
