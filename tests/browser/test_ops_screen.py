"""An operator follows one case and replays a dead letter in the browser, on the real platform.

A partner front end opens and submits the demo's case (C50.4, for Germany) through the public
APIs; routing offers it to a center. One of the case's own events is then put in the dead-letter
topic of referrals.cases.v1, with its original key and headers, as a consumer that failed on it
would (`DeadLetterPublisher`): replaying it is harmless (every consumer already applied it).

The operator `devstack` makes signs in to the ops screen on a laptop with the code the mail sink
received, finds the case by the reference the patient sees, reads its timeline across the
services (requests, events, partners' offer) with links into the trace viewer, opens the dead
letters of referrals.cases.v1, confirms the replay of the case's letter and sees it sent back;
partners' ops API then lists the replay under the web application's operator key.

axe-core on every ops page (0 serious or critical); screenshots in docs/screenshots/ops-0N-*.png.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from playwright.sync_api import expect

from devstack.mailsink import list_messages
from referrals_common.contracts import topics
from referrals_common.messaging.dlq import DeadLetterPublisher
from referrals_web.i18n import translations
from referrals_web.vocabulary import case_reference
from tests.browser.test_center_console import FrontEnd
from tests.browser.test_patient_journey import _offer, check_page, shoot

pytestmark = pytest.mark.browser

EN: Callable[[str], str] = translations("en").gettext
TIMEOUT_S = 120


async def _first_event_of(bootstrap: str, case_id: str) -> Any:
    """The first record of referrals.cases.v1 keyed by the case (its own event, as published)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topics.CASES, p) for p in consumer.partitions_for_topic(topics.CASES)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key == case_id.encode():
                        return record
        raise AssertionError(f"no event of case {case_id} on {topics.CASES}")
    finally:
        await consumer.stop()


async def _dead_letter_of(bootstrap: str, case_id: str) -> None:
    record = await _first_event_of(bootstrap, case_id)
    dead = DeadLetterPublisher(bootstrap)
    await dead.start()
    try:
        failed = SimpleNamespace(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            headers=list(record.headers),
        )
        error = TimeoutError("the browser test's stand-in for a database that was away")
        await dead.publish(failed, record.value, consumer="notifications", error=error)
    finally:
        await dead.stop()


def run_async(work: Any) -> Any:
    """Run a coroutine on an event loop of its own (Playwright's synchronous API owns this
    thread's)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def ops_code(mail_dir: str, email: str, since: datetime) -> str:
    """The newest ops sign-in code the mail sink received for `email` since `since`."""
    subject = EN("Your sign-in code for the ops screen")
    deadline = time.monotonic() + 30
    while True:
        found = [
            m
            for m in list_messages(Path(mail_dir))
            if email in m.recipients and m.subject == subject and m.received_at >= since
        ]
        if found:
            code = re.search(r"\b(\d{6})\b", found[-1].text() or "")
            assert code, found[-1].text()
            return code[1]
        assert time.monotonic() < deadline, f"no ops code for {email} in the mail sink"
        time.sleep(0.3)


def test_an_operator_follows_a_case_and_replays_its_dead_letter(
    desktop: Any, web_url: str, running_platform: tuple[Any, Any]
) -> None:
    stack, platform = running_platform
    _ = EN
    page = desktop
    assert platform.operator, "devstack made no operator for the ops screen"
    email = platform.operator["email"]
    front = FrontEnd(platform)
    try:
        case_id = front.open_and_submit()
    finally:
        front.close()
    reference = case_reference(case_id)
    offer = _offer(platform, reference, timeout=TIMEOUT_S)
    run_async(_dead_letter_of(stack.kafka_bootstrap, case_id))
    began = datetime.now(UTC) - timedelta(seconds=1)

    # Sign in: no session, so the ops screen sends the operator to its sign-in page.
    page.goto(f"{web_url}/ops")
    expect(page).to_have_url(re.compile(r"/ops/sign-in$"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    check_page(page)
    shoot(page, "ops-01-sign-in")
    page.get_by_label(_("Work e-mail address")).fill(email)
    page.get_by_role("button", name=_("Send me a code")).click()
    expect(page).to_have_url(re.compile(r"/ops/sign-in/code$"))
    check_page(page)
    page.get_by_label(_("Code")).fill(ops_code(stack.mail_dir, email, began))
    page.get_by_role("button", name=_("Sign in"), exact=True).click()

    # The overview: find a case, what is late, the dead letters per topic.
    expect(page).to_have_url(re.compile(r"/ops$"))
    expect(page.locator("#operator-name")).to_have_text(platform.operator["name"])
    dead_letters = page.locator("#dead-letters")
    expect(dead_letters.get_by_role("link", name=topics.CASES)).to_be_visible()
    check_page(page)
    shoot(page, "ops-02-overview")

    # Find the case by the reference the patient sees: its timeline across the services.
    page.get_by_label(_("The case's reference or id")).fill(reference)
    page.get_by_role("button", name=_("Find the case")).click()
    expect(page).to_have_url(re.compile(rf"/ops/cases/{case_id}$"))
    expect(page.locator("#case-id")).to_have_text(case_id)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text(f"offered to {offer['center']} (attempt 1)")
    expect(timeline).to_contain_text("post /v1/cases")
    expect(timeline).to_contain_text(f"dead letter on {topics.CASES}.dlq")
    expect(page.locator("#trace-viewer")).to_contain_text("intake")
    root = page.locator("#root-trace")
    expect(root).to_have_attribute("href", re.compile(rf"/zipkin/traces/{uuid.UUID(case_id).hex}$"))
    trace_links = timeline.get_by_role("link", name=re.compile(_("Open trace")))
    assert trace_links.count() > 3
    href = trace_links.first.get_attribute("href") or ""
    assert href.startswith(platform.trace_viewer), href
    with httpx.Client(timeout=10) as client:  # the link opens the trace in the viewer
        trace_id = href.rsplit("/", 1)[1]
        spans = client.get(f"{platform.trace_viewer}/api/v2/trace/{trace_id}")
        assert spans.status_code == 200 and spans.json(), spans.text[:300]
    check_page(page)
    shoot(page, "ops-03-case-timeline")

    # The dead letters of referrals.cases.v1: the case's, and its replay after a confirmation.
    page.get_by_role("link", name=_("Overview")).click()
    page.locator("#dead-letters").get_by_role("link", name=topics.CASES).click()
    expect(page).to_have_url(re.compile(rf"/ops/dead-letters/{re.escape(topics.CASES)}$"))
    row = page.locator("#dead-letters tr", has_text=case_id)
    expect(row).to_contain_text("TimeoutError")
    check_page(page)
    shoot(page, "ops-04-dead-letters")
    row.get_by_role("link", name=re.compile(_("Replay"))).click()
    expect(page.locator("#replay-topic")).to_have_text(topics.CASES)
    check_page(page)
    shoot(page, "ops-05-replay-confirm")
    page.get_by_role("button", name=_("Send it back")).click()
    expect(page).to_have_url(re.compile(rf"/ops/dead-letters/{re.escape(topics.CASES)}$"))
    expect(page.locator(".notice")).to_contain_text("was sent back to referrals.cases.v1")
    row = page.locator("#dead-letters tr", has_text=case_id)
    expect(row.locator("td").nth(4)).to_contain_text("1")
    check_page(page)

    # Partners recorded the replay, under the web application's operator key.
    ops = {"X-Api-Key": str(platform.keys()["ops"])}
    with httpx.Client(base_url=platform.apis["partners"], timeout=30) as client:
        listed = client.get(f"/v1/ops/dead-letters/{topics.CASES}", headers=ops)
        assert listed.status_code == 200, listed.text
        (letter,) = [d for d in listed.json() if d["case_id"] == case_id]
        assert len(letter["replays"]) == 1, letter
