"""Reading a case's journey from Zipkin v2 spans (`referrals_common.case_timeline`), the one
implementation `devstack timeline` and partners' ops timeline share: steps in time order without
the database and storage calls inside them, errors recognised, the case's root trace and links."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest

from referrals_common.case_timeline import (
    entries,
    fetch_case_traces,
    is_inner,
    root_trace_id,
    trace_link,
)

pytestmark = pytest.mark.unit

CASE = "3f0f6c7d-2b1a-4c3d-9e8f-0123456789ab"


def span(name: str, at: int, *, kind: str = "SERVER", **tags: str) -> dict[str, object]:
    return {
        "traceId": "ab" * 16,
        "id": f"{at:016x}",
        "name": name,
        "timestamp": at,
        "duration": 10,
        "kind": kind,
        "localEndpoint": {"serviceName": "partners"},
        "tags": {"referrals.case_id": CASE, **tags},
    }


def test_steps_come_in_time_order_without_their_inner_calls() -> None:
    trace = [
        span("send referrals.routing.v1", 3_000, kind="PRODUCER"),
        span("select", 2_000, kind="CLIENT", **{"db.system": "postgresql"}),
        span(
            "post /v1/partner/referrals/{referral_id}/decline", 1_000, **{"http.status_code": "200"}
        ),
    ]
    found = entries([trace])
    assert [e.name for e in found] == [
        "post /v1/partner/referrals/{referral_id}/decline",
        "send referrals.routing.v1",
    ]
    assert found[0].status == "200" and not found[0].failed
    assert len(entries([trace], everything=True)) == 3
    assert is_inner(trace[1]) and not is_inner(trace[0])


def test_an_error_or_a_5xx_is_a_failed_step() -> None:
    failed = entries(
        [[span("process referrals.cases.v1", 1, kind="CONSUMER", error="ValueError: bad")]]
    )
    assert failed[0].failed and failed[0].status.startswith("error: ValueError")
    assert entries([[span("get /x", 2, **{"http.response.status_code": "503"})]])[0].failed


def test_the_case_root_trace_is_the_case_id_and_links_name_the_viewer() -> None:
    assert root_trace_id(CASE) == UUID(CASE).hex
    assert (
        trace_link("http://viewer:9411/", "ab" * 16)
        == f"http://viewer:9411/zipkin/traces/{'ab' * 16}"
    )


async def test_the_viewer_is_asked_by_the_case_tag_and_a_non_list_answer_is_refused() -> None:
    asked: list[httpx.Request] = []

    def viewer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if len(asked) == 1:
            return httpx.Response(200, json=[[span("post /v1/cases", 1)]])
        return httpx.Response(200, json={"error": "not a list"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(viewer)) as client:
        traces = await fetch_case_traces(client, "http://viewer", CASE, lookback_days=1)
        assert traces[0][0]["name"] == "post /v1/cases"
        with pytest.raises(httpx.DecodingError):
            await fetch_case_traces(client, "http://viewer", CASE)
    assert asked[0].url.path == "/api/v2/traces"
    assert asked[0].url.params["annotationQuery"] == f"referrals.case_id={CASE}"
    assert asked[0].url.params["lookback"] == "86400000"
