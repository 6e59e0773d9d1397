"""One case, one story in the trace viewer: a case declined by the first center, re-routed and
given an opinion, found whole by one query for its case id.

The journey is the demo's (`devstack.demo.run_journey`: the sample center declines first). The
case's traces are then read back from Zipkin's API in two ways: by the case id tag (what ops and
`devstack timeline` do) and, independently, every trace of the test's time window that touches
the case at all (its id anywhere in a span, or the trace of one of its events or steps). The
second must hold nothing the first misses: no orphan trace.

Then ops read the same journey where they work: partners' ops API (`GET /v1/ops/cases/{id}/
timeline`, the shared `referrals_common.case_timeline` reading the viewer, with partners' own
offers and answers), and the web app's ops screen, signed in as devstack's operator: the web
app's spans (its page, its call to partners) carry the case id too, in the same trace as the
partners request they caused.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import platform as platform_mod
from devstack import timeline
from devstack.demo import Journey, run_journey
from devstack.mailsink import list_messages

pytestmark = pytest.mark.e2e

SERVICES = {"intake", "records", "translation", "partners", "notifications"}
TRACES_SENT_S = platform_mod.TRACE_EXPORT_DELAY_MS / 1000 + 1.5
"""Time for every process to send the spans it finished (each every TRACE_EXPORT_DELAY_MS)."""


@pytest.fixture(scope="module")
async def journey(running_platform: tuple[Any, Any]) -> Journey:
    stack, platform = running_platform
    started = time.time()
    result = await run_journey(stack, platform, timeout=240)
    result.started_at = started  # type: ignore[attr-defined]
    await asyncio.sleep(TRACES_SENT_S)  # the last spans leave the processes' batches
    return result


def case_traces_by_tag(journey: Journey) -> list[list[dict[str, Any]]]:
    return timeline.case_traces(journey.trace_viewer, journey.case_id, lookback_days=1)


def traces_touching_the_case(journey: Journey) -> dict[str, list[dict[str, Any]]]:
    """Every trace of the journey's time window with the case id in a span (an attribute, a
    URL) or carrying one of the case's events or steps: the case's traces, found without the
    case id tag (so the same count can be taken of code that has no such tag)."""
    since_ms = int((time.time() - journey.started_at) * 1000) + 60_000  # type: ignore[attr-defined]
    known = {e.trace_id for e in journey.events} | {s.trace_id for s in journey.steps}
    known |= {a["trace_id"] for a in journey.center_actions if a.get("trace_id")}
    every: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=journey.trace_viewer, timeout=30) as client:
        services = client.get("/api/v2/services").json()
        for service in services:
            found = client.get(
                "/api/v2/traces",
                params={"serviceName": service, "lookback": since_ms, "limit": 100_000},
            ).json()
            for spans in found:
                every[spans[0]["traceId"]] = spans
    case_hex = journey.case_id.replace("-", "")

    def touches(trace_id: str, spans: list[dict[str, Any]]) -> bool:
        if trace_id in known or trace_id == case_hex:
            return True
        return any(
            journey.case_id in value for span in spans for value in span.get("tags", {}).values()
        )

    # The platform's traces: a center's own download from object storage (a presigned link,
    # no platform process in it) is the center's business, not a trace the platform writes.
    return {
        trace_id: spans
        for trace_id, spans in every.items()
        if touches(trace_id, spans)
        and any(span["localEndpoint"]["serviceName"] in SERVICES for span in spans)
    }


def _not_known_yet_answers(spans: list[dict[str, Any]]) -> set[str]:
    """Ids of records' request spans about a referral (`… /v1/referrals/{referral_id}…`) that
    were answered 409 without a case id (the referral was not known there yet), and of every
    span under them (their queries)."""
    status_tags = ("http.response.status_code", "http.status_code")
    roots = {
        span["id"]
        for span in spans
        if span["localEndpoint"]["serviceName"] == "records"
        and " /v1/referrals/{referral_id}" in span["name"]
        and timeline.CASE_TAG not in span.get("tags", {})
        and any(span.get("tags", {}).get(tag) == "409" for tag in status_tags)
    }
    children: dict[str, list[str]] = {}
    for span in spans:
        if "parentId" in span:
            children.setdefault(span["parentId"], []).append(span["id"])
    found, todo = set(), list(roots)
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo += children.get(current, [])
    return found


def report(label: str, traces: list[list[dict[str, Any]]]) -> str:
    spans = [span for t in traces for span in t]
    by_service = Counter(span["localEndpoint"]["serviceName"] for span in spans)
    untagged = sum(1 for span in spans if timeline.CASE_TAG not in span.get("tags", {}))
    return (
        f"{label}: {len(spans)} spans in {len(traces)} traces "
        f"({untagged} spans without the case id); by service {dict(sorted(by_service.items()))}"
    )


async def test_one_query_by_case_id_returns_the_whole_journey(journey: Journey) -> None:
    traces = await asyncio.to_thread(case_traces_by_tag, journey)
    print("\n" + report(f"case {journey.case_id} by tag", traces))
    entries = timeline.entries(traces)
    services = {e.service for e in entries}
    assert services >= SERVICES, f"missing services: {SERVICES - services}"
    names = [e.name for e in entries]
    types = [e.event_type for e in entries]
    # Create → decline → re-route → opinion, in that order.
    created = names.index("post /v1/cases")
    declined = types.index("referrals.referral.declined.v1")
    requested = [i for i, t in enumerate(types) if t == "referrals.referral.requested.v1"]
    delivered = types.index("referrals.referral.opinion_delivered.v1")
    assert created < requested[0] < declined < requested[-1] < delivered
    assert any(n.startswith("send referrals.partner-inbox.") for n in names)
    sent = [e.name for e in entries if e.service == "notifications"]
    assert "smtp send" in sent, f"no e-mail among the notifications' spans: {Counter(sent)}"
    assert any(n.startswith("post /v1/partner/referrals/{referral_id}/decline") for n in names), (
        "the center's decline is not found by the case id"
    )
    # The case's root span: its trace id is the case id.
    assert journey.case_id.replace("-", "") in {e.trace_id for e in entries}
    # A download by link names a token, not a case: records marks it with the grant's case.
    downloads = [e for e in entries if e.name == "get /v1/downloads/{token}"]
    assert downloads and {e.service for e in downloads} == {"records"}
    # Every platform span of the case's traces carries the case id, but for two known gaps: the
    # create request's queries run before the case id exists (its request span has it), and a
    # center that asks records about its referral before records' consumer has read
    # `referral.requested` is answered 409 `referral-not-known-yet` (and retries after its
    # Retry-After): records cannot tell which case a referral it has not heard of is about.
    # The front end's and the center's own spans are theirs.
    gaps = {
        spans[0]["traceId"] for spans in traces if any(s["name"] == "post /v1/cases" for s in spans)
    }
    not_known_yet = {sid for spans in traces for sid in _not_known_yet_answers(spans)}
    untagged = Counter(
        s["name"]
        for spans in traces
        for s in spans
        if s["localEndpoint"]["serviceName"] in SERVICES
        and timeline.CASE_TAG not in s.get("tags", {})
        and s["traceId"] not in gaps
        and s["id"] not in not_known_yet
    )
    assert not untagged, f"platform spans without the case id: {untagged}"


async def test_no_trace_about_the_case_lacks_its_case_id(journey: Journey) -> None:
    tagged = {t[0]["traceId"] for t in await asyncio.to_thread(case_traces_by_tag, journey)}
    touching = await asyncio.to_thread(traces_touching_the_case, journey)
    print("\n" + report(f"case {journey.case_id} touching", list(touching.values())))
    orphans = {
        trace_id: sorted({s["name"] for s in spans})[:5]
        for trace_id, spans in touching.items()
        if trace_id not in tagged
    }
    assert not orphans, f"traces about the case that the case id does not find: {orphans}"


async def test_the_ops_api_tells_the_same_journey_with_partners_records(
    journey: Journey, running_platform: tuple[Any, Any]
) -> None:
    _, platform = running_platform
    ops = {"X-Api-Key": str(platform.keys()["ops"])}
    async with httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30) as client:
        answer = await client.get(f"/v1/ops/cases/{journey.case_id}/timeline", headers=ops)
        refused = await client.get(
            f"/v1/ops/cases/{journey.case_id}/timeline",
            headers={"X-Api-Key": str(next(iter(platform.keys()["centers"].values())))},
        )
    assert answer.status_code == 200, answer.text
    assert refused.status_code == 401, refused.text
    found = answer.json()
    assert found["trace_viewer"] == "ok"
    assert set(found["services"]) >= SERVICES
    hex_id = journey.case_id.replace("-", "")
    assert found["root_trace_url"] == f"{platform.trace_viewer}/zipkin/traces/{hex_id}"
    names = [e["name"] for e in found["entries"]]
    assert "post /v1/cases" in names
    declined = [n for n in names if n.startswith("declined by ")]
    offered = [n for n in names if n.startswith("offered to ")]
    assert len(declined) == 1 and len(offered) >= 2, (declined, offered)
    spans = [e for e in found["entries"] if e["source"] == "trace"]
    assert all(e["trace_url"].startswith(platform.trace_viewer) for e in spans)
    # The same spans as `devstack timeline` finds (one implementation, two readers), which read
    # later finds a few more (the ops API's own request, about the case too).
    by_tag = timeline.entries(await asyncio.to_thread(case_traces_by_tag, journey))
    assert Counter((e["trace_id"], e["name"]) for e in spans) <= Counter(
        (e.trace_id, e.name) for e in by_tag
    )


def _ops_code(mail_dir: str, email: str, since: datetime) -> str:
    deadline = time.monotonic() + 30
    while True:
        found = [
            m
            for m in list_messages(Path(mail_dir))
            if email in m.recipients and m.received_at >= since and "ops screen" in m.subject
        ]
        if found:
            code = re.search(r"\b(\d{6})\b", found[-1].text() or "")
            assert code
            return code[1]
        assert time.monotonic() < deadline, f"no ops sign-in code for {email}"
        time.sleep(0.3)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


async def test_the_web_apps_spans_carry_the_case_id(
    journey: Journey, running_platform: tuple[Any, Any]
) -> None:
    stack, platform = running_platform
    email = platform.operator["email"]
    began = datetime.now(UTC) - timedelta(seconds=1)
    async with httpx.AsyncClient(base_url=platform.web, timeout=30) as web:
        form = await web.get("/ops/sign-in")
        asked = await web.post("/ops/sign-in", data={"csrf_token": _csrf(form), "email": email})
        assert asked.status_code == 303, asked.text[:500]
        code_page = await web.get("/ops/sign-in/code")
        code = await asyncio.to_thread(_ops_code, stack.mail_dir, email, began)
        signed = await web.post(
            "/ops/sign-in/code",
            data={"csrf_token": _csrf(code_page), "code": code, "action": "check"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ops"
        page = await web.get(f"/ops/cases/{journey.case_id}")
        assert page.status_code == 200, page.text[:500]
        assert "post /v1/cases" in page.text
    await asyncio.sleep(TRACES_SENT_S)  # the web app's spans leave its batch
    traces = await asyncio.to_thread(case_traces_by_tag, journey)
    web_spans = [s for t in traces for s in t if s["localEndpoint"]["serviceName"] == "web"]
    names = {s["name"] for s in web_spans}
    assert "GET /ops/cases/{case_id}" in names or any("/ops/cases" in n for n in names), names
    # The page's request and its calls to the platform carry the case id (the session's own
    # queries before the page ran cannot: the case is the page's, known once it runs).
    steps = [s for s in web_spans if not timeline.is_inner(s) or "db.system" not in s["tags"]]
    assert steps and all(s["tags"].get(timeline.CASE_TAG) == journey.case_id for s in steps), [
        (s["name"], s["tags"].get(timeline.CASE_TAG)) for s in steps
    ]
    # The web app's call and partners' answer are one trace: the context went along.
    page_trace = next(s["traceId"] for s in web_spans if "/ops/cases" in s["name"])
    partners_spans = [
        s
        for t in traces
        for s in t
        if s["traceId"] == page_trace and s["localEndpoint"]["serviceName"] == "partners"
    ]
    assert any("timeline" in s["name"] for s in partners_spans), [s["name"] for s in partners_spans]
