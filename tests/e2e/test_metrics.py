"""The business metrics move as a case moves, scraped by the platform's real Prometheus from the
real processes; every Grafana panel's query has data there; a case left waiting beyond its
state's deadline fires CaseStuckInState, which Alertmanager e-mails to the mail sink.

Screenshots of Prometheus's own pages (the funnel's graph, the stuck-case alert firing) go to
docs/screenshots/prom-*.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import monitoring
from devstack.demo import FrontEnd, Journey, run_journey
from devstack.mailsink import list_messages

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy/grafana/dashboards"
SCREENSHOTS = REPO / "docs/screenshots"
STUCK_AFTER_SECONDS = 20
"""The test's deadline of `action_required` (production: two weeks)."""
SHORT_DEADLINES = f"""groups:
  - name: referrals-case-deadlines
    interval: 5s
    rules:
      - record: referrals:case_state_deadline_seconds
        expr: vector({STUCK_AFTER_SECONDS})
        labels: {{state: action_required}}
"""


async def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{prometheus}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


async def total(prometheus: str, expr: str) -> float:
    """The sum of an instant query's values (0 when it has none)."""
    return sum(float(r["value"][1]) for r in await query(prometheus, expr))


async def until(
    prometheus: str, expr: str, done: Callable[[float], bool], *, timeout: float = 90
) -> float:
    """Poll `expr` until `done(value)`; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await total(prometheus, expr)
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr} is {value} after {timeout:.0f} s")
        await asyncio.sleep(1)


@pytest.fixture(scope="module")
def prometheus(running_platform: tuple[Any, Any]) -> str:
    _, platform = running_platform
    assert platform.prometheus, "the test platform was started without Prometheus"
    return str(platform.prometheus)


def counters(accepting: str, declining: str) -> dict[str, str]:
    """The queries of what the journey moves: `accepting` and `declining` are center codes."""
    referrals = "sum(referrals_center_referrals_total{{center_code={!r},event={!r}}})"
    return {
        "offered": referrals.format(accepting, "offered"),
        "accepted": referrals.format(accepting, "accepted"),
        "opinions": referrals.format(accepting, "opinion_delivered"),
        "declined": referrals.format(declining, "declined"),
        "time_to_opinion": "sum(referrals_time_to_opinion_seconds_count"
        f"{{center_code={accepting!r}}})",
        "first_offers": "sum(referrals_time_to_first_offer_seconds_count)",
        "emails_sent": "sum(referrals_notification_deliveries_total"
        '{channel="email",outcome="sent"})',
        "opinion_delivered": 'sum(referrals_case_transitions_total{to_state="opinion_delivered"})',
        "left_submitted": 'sum(referrals_case_time_in_state_seconds_count{state="submitted"})',
    }


@pytest.fixture(scope="module")
async def moved(
    running_platform: tuple[Any, Any], prometheus: str
) -> tuple[Journey, dict[str, float], dict[str, str]]:
    """The journey played once, with every counter's value before it (any center)."""
    stack, platform = running_platform
    processes = len(platform.metrics)
    await until(prometheus, 'sum(up{job="referrals"})', lambda v: v >= processes, timeout=60)
    everything = "sum by (center_code, event) (referrals_center_referrals_total)"
    per_center = {
        (r["metric"]["center_code"], r["metric"]["event"]): float(r["value"][1])
        for r in await query(prometheus, everything)
    }
    opinion_times = {
        r["metric"]["center_code"]: float(r["value"][1])
        for r in await query(
            prometheus, "sum by (center_code) (referrals_time_to_opinion_seconds_count)"
        )
    }
    before = {k: await total(prometheus, e) for k, e in counters("-", "-").items()}
    journey = await run_journey(stack, platform, timeout=240)
    accepted = [e.data for e in journey.events if e.type == "referrals.referral.accepted.v1"]
    declined = [e.data for e in journey.events if e.type == "referrals.referral.declined.v1"]
    accepting, declining = accepted[-1]["center_code"], declined[0]["center_code"]
    before |= {
        "offered": per_center.get((accepting, "offered"), 0.0),
        "accepted": per_center.get((accepting, "accepted"), 0.0),
        "opinions": per_center.get((accepting, "opinion_delivered"), 0.0),
        "declined": per_center.get((declining, "declined"), 0.0),
    }
    before["time_to_opinion"] = opinion_times.get(accepting, 0.0)
    return journey, before, counters(accepting, declining)


async def test_business_metrics_move_as_the_case_moves(
    moved: tuple[Journey, dict[str, float], dict[str, str]], prometheus: str
) -> None:
    journey, before, exprs = moved
    sent = sum(1 for e in journey.events if e.type == "referrals.notification.sent.v1")
    assert sent > 0
    at_least = {
        "offered": 1,
        "accepted": 1,
        "opinions": 1,
        "declined": 1,
        "time_to_opinion": 1,
        "first_offers": 1,
        "emails_sent": sent,
        "opinion_delivered": 1,
        "left_submitted": 1,
    }
    for key, more in at_least.items():
        await until(prometheus, exprs[key], lambda v, k=key, m=more: v >= before[k] + m)
    # Cases by state (intake's consumer counts them every few seconds): this one is done.
    await until(prometheus, 'max(referrals_cases{state="opinion_delivered"})', lambda v: v >= 1)
    # Counted once per fact, not once per attempt: one opinion for the one case.
    assert await total(prometheus, exprs["opinions"]) == before["opinions"] + 1


def _panel_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m")
                found.append((path.stem, panel["title"], expr.replace("$__range", "15m")))
    return found


async def test_every_dashboard_panel_has_data(
    moved: tuple[Journey, dict[str, float], dict[str, str]], prometheus: str
) -> None:
    queries = _panel_queries()
    assert len(queries) >= 20
    missing: list[str] = []
    deadline = time.monotonic() + 60
    for board, title, expr in queries:
        while True:
            rows = await query(prometheus, expr)
            values = [r["value"][1] for r in rows]
            if any(v not in {"NaN", "+Inf", "-Inf"} for v in values):
                break
            if time.monotonic() > deadline:
                missing.append(f"{board} / {title}: {expr} → {values or 'no series'}")
                break
            await asyncio.sleep(1)
    assert not missing, "panels without data:\n" + "\n".join(missing)


async def test_a_case_waiting_beyond_its_deadline_fires_the_alert_and_mails_ops(
    moved: tuple[Journey, dict[str, float], dict[str, str]],
    running_platform: tuple[Any, Any],
    prometheus: str,
) -> None:
    stack, platform = running_platform
    rules = Path(platform.root) / "prometheus" / "rules" / "case-deadlines.yml"
    kept = rules.read_text()
    rules.write_text(SHORT_DEADLINES)
    monitoring.reload(prometheus)
    front = FrontEnd(platform, Journey(), time.monotonic())
    try:
        # A discharge summary in Ukrainian for Germany: the case waits for a translation that
        # never comes (action_required).
        await front.create_case()
        await front.upload(
            "upload the discharge summary", "discharge_summary", "discharge_summary_uk.pdf"
        )
        await front.wait_documents(1, 60)
        await front.submit()
        await until(
            prometheus,
            'count(ALERTS{alertname="CaseStuckInState",alertstate="firing",state="action_required"})',
            lambda v: v >= 1,
            timeout=120,
        )
        deadline = time.monotonic() + 60
        while not any(
            "CaseStuckInState" in m.subject and monitoring.OPS_EMAIL in m.recipients
            for m in list_messages(Path(stack.mail_dir))
        ):
            assert time.monotonic() < deadline, "Alertmanager sent no e-mail to the mail sink"
            await asyncio.sleep(1)
        await screenshots(prometheus)
    finally:
        await front.close()
        rules.write_text(kept)
        monitoring.reload(prometheus)


async def screenshots(prometheus: str) -> None:
    """Prometheus's graph of the funnel and its alerts page, into docs/screenshots."""
    from playwright.async_api import async_playwright

    from tests.browser.support import CHROMIUM_ARGS, chromium_executable

    args = [*CHROMIUM_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    funnel = httpx.URL(
        f"{prometheus}/graph",
        params={
            "g0.expr": "sum by (to_state) (referrals_case_transitions_total)",
            "g0.tab": "0",
            "g0.range_input": "15m",
            "g0.stacked": "0",
            "g1.expr": "sum by (center_code, event) (referrals_center_referrals_total)",
            "g1.tab": "1",
        },
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable(), args=args, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.goto(str(funnel))
            await page.wait_for_selector(
                ".rickshaw_graph svg path", state="attached", timeout=30_000
            )
            await page.wait_for_timeout(1000)
            # The page focuses the last expression (scrolled): shoot it from the top, whole.
            await page.set_viewport_size({"width": 1366, "height": 1420})
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(SCREENSHOTS / "prom-funnel.png"))
            await page.goto(f"{prometheus}/classic/alerts")
            stuck = page.locator("text=CaseStuckInState").first
            await stuck.click()
            await page.wait_for_timeout(500)
            await page.screenshot(
                path=str(SCREENSHOTS / "prom-stuck-case-alert.png"), full_page=True
            )
        finally:
            await browser.close()
