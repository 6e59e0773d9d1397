"""Browser tests: Playwright for Python driving Debian's Chromium (`/usr/bin/chromium`, package
`chromium`; Playwright's own browser download is never used) against the patient's web app that
the `running_platform` fixture starts with the whole platform (`devstack.platform`).

What a test gets:

- `web_url`: the web app's base URL on that platform;
- `phone` / `phone_context`: a page in (and) a fresh phone's context (390×844, Ukrainian, touch);
- `desktop` / `desktop_context`: the same for a laptop (1366×900, English);

and from tests/browser/support.py:

- `axe_check(page)`: axe-core on the page as it is, failing on any serious or critical violation
  with a report that names each rule, why it matters and the elements that break it;
- `screenshot(page, name)`: the whole page as `docs/screenshots/<name>.png`, the proof UX.md
  asks for.

Mark every test module `pytestmark = pytest.mark.browser`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import CHROMIUM_ARGS, DESKTOP, PHONE, TIMEOUT_MS, chromium_executable


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests (package scope: Playwright's synchronous API
    is closed before the asynchronous tests of other packages run on their event loop)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    args = [*CHROMIUM_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def web_url(running_platform: tuple[Any, Any]) -> str:
    """Base URL of the patient's web app on the test platform (no trailing slash)."""
    _, platform = running_platform
    assert platform.web, "the test platform was started without the web app"
    return str(platform.web).rstrip("/")


def _context(browser: Any, options: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def phone_context(browser: Any) -> Iterator[Any]:
    """A fresh phone's context (no cookies): 390×844 CSS pixels, Ukrainian first, touch."""
    yield from _context(browser, PHONE)


@pytest.fixture
def desktop_context(browser: Any) -> Iterator[Any]:
    """A fresh laptop's context (no cookies): 1366×900 CSS pixels, English."""
    yield from _context(browser, DESKTOP)


@pytest.fixture
def phone(phone_context: Any) -> Any:
    """A page in `phone_context`."""
    return phone_context.new_page()


@pytest.fixture
def desktop(desktop_context: Any) -> Any:
    """A page in `desktop_context`."""
    return desktop_context.new_page()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests right after the end-to-end tests: both use `running_platform`, so
    the platform is started once for both, and never beside the chaos tests' own platform (which
    run before the end-to-end tests)."""
    browser = [i for i in items if "tests/browser/" in i.nodeid]
    if not browser:
        return
    rest = [i for i in items if "tests/browser/" not in i.nodeid]
    after = max((n for n, i in enumerate(rest) if "tests/e2e/" in i.nodeid), default=None)
    if after is None:
        return
    items[:] = [*rest[: after + 1], *browser, *rest[after + 1 :]]
