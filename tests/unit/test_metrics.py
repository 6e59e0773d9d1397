"""Prometheus metrics: the API's latency histogram by route template, `/metrics` outside auth
and the schema, the metrics server of processes without an API, and its settings."""

import os
import socket
import urllib.error
import urllib.request
import uuid

import httpx
import pytest
import typer
from fastapi import APIRouter, Depends, Header
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from referrals_common.api.problems import ProblemError
from referrals_common.metrics import serve_metrics, start_metrics_server
from referrals_common.service_app import create_service_app
from referrals_common.service_cli import ServiceCli
from referrals_common.settings import MetricsSettings, ServiceSettings

pytestmark = pytest.mark.unit

DURATION = "referrals_http_request_duration_seconds"


class Runtime:
    """A runtime passed in is used as is and left to its owner: nothing to dispose."""


async def require_key(x_api_key: str | None = Header(None)) -> None:
    if x_api_key != "front-end-key":
        raise ProblemError("an API key is required", status=401)


def make_app(service: str):
    router = APIRouter(dependencies=[Depends(require_key)])

    @router.get("/v1/cases/{case_id}")
    async def get_case(case_id: str) -> dict[str, str]:
        return {"case_id": case_id}

    @router.post("/v1/cases/{case_id}/boom")
    async def boom(case_id: str) -> None:
        raise RuntimeError("a bug")

    return create_service_app(
        title="test",
        description="test",
        router=router,
        build_runtime=Runtime,
        runtime=Runtime(),
        service=service,
    )


def client_of(app) -> httpx.AsyncClient:
    # In process: the app is called through ASGI, no server and no socket.
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def count(service: str, method: str, route: str, status: str) -> float:
    labels = {"service": service, "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value(f"{DURATION}_count", labels) or 0.0


def series_of(service: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in REGISTRY.collect()
        if family.name == DURATION
        for sample in family.samples
        if sample.labels.get("service") == service and sample.name == f"{DURATION}_count"
    ]


async def test_the_latency_histogram_records_each_request_under_its_route_template():
    service = f"unit-{uuid.uuid4().hex[:8]}"
    key = {"X-Api-Key": "front-end-key"}
    async with client_of(make_app(service)) as client:
        assert (await client.get("/v1/cases/c-1", headers=key)).status_code == 200
        assert (await client.get("/v1/cases/c-2", headers=key)).status_code == 200
        assert (await client.get("/v1/cases/c-3")).status_code == 401
        assert (await client.post("/v1/cases/c-4/boom", headers=key)).status_code == 500
        assert (await client.get("/v1/nowhere/c-5")).status_code == 404
        assert (await client.request("BREW", "/v1/cases/c-6")).status_code == 405

    template = "/v1/cases/{case_id}"
    assert count(service, "GET", template, "200") == 2
    assert count(service, "GET", template, "401") == 1
    assert count(service, "POST", "/v1/cases/{case_id}/boom", "500") == 1
    assert count(service, "GET", "unmatched", "404") == 1, "unknown paths share one series"
    assert count(service, "OTHER", template, "405") == 1, "unknown methods share one label"
    sum_ = REGISTRY.get_sample_value(
        f"{DURATION}_sum",
        {"service": service, "method": "GET", "route": template, "status": "200"},
    )
    assert sum_ is not None and sum_ > 0
    raw = [labels for labels in series_of(service) if "c-" in labels["route"]]
    assert raw == [], "no raw path becomes a label value"


async def test_metrics_answer_in_the_text_exposition_format_without_a_key_and_outside_the_schema():
    service = f"unit-{uuid.uuid4().hex[:8]}"
    async with client_of(make_app(service)) as client:
        await client.get("/v1/cases/c-1", headers={"X-Api-Key": "front-end-key"})
        response = await client.get("/metrics")
        openmetrics = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        paths = (await client.get("/openapi.json")).json()["paths"]

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families[DURATION].type == "histogram"
    mine = [s for s in families[DURATION].samples if s.labels.get("service") == service]
    assert {s.labels["route"] for s in mine} == {"/v1/cases/{case_id}"}
    for name in (
        "referrals_consumer_lag",
        "referrals_consumer_events",
        "referrals_consumer_dead_letters",
        "referrals_consumer_handler_duration_seconds",
        "referrals_outbox_backlog",
        "referrals_outbox_oldest_unpublished_age_seconds",
        "referrals_outbox_published",
    ):
        assert name in families, f"{name} is declared in the process's registry"
    assert "_created" not in response.text, "no *_created series"
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert "/metrics" not in paths and "/health" not in paths


def scrape(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http on loopback)
        assert response.status == 200
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def test_the_metrics_server_serves_the_registry_until_stopped():
    server = serve_metrics("127.0.0.1", 0)
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        families = scrape(server.url)
        assert "referrals_outbox_backlog" in families
        assert "process_cpu_seconds" in families or "python_info" in families
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)  # noqa: S310


def test_port_zero_means_no_metrics_server_and_the_environment_sets_host_and_port(monkeypatch):
    for key in list(os.environ):
        if key.startswith("REFERRALS_"):
            monkeypatch.delenv(key)
    assert ServiceSettings().metrics == MetricsSettings(host="127.0.0.1", port=0)
    assert start_metrics_server(MetricsSettings()) is None
    monkeypatch.setenv("REFERRALS_METRICS__HOST", "10.1.2.3")
    monkeypatch.setenv("REFERRALS_METRICS__PORT", "9464")
    settings = ServiceSettings()
    assert (settings.metrics.host, settings.metrics.port) == ("10.1.2.3", 9464)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_service_command_starts_the_metrics_server_once_from_its_settings():
    port = free_port()
    settings = ServiceSettings(metrics=MetricsSettings(port=port))
    cli = ServiceCli(
        "unit", lambda: settings, package="unit", default_port=None, consumer_help="consume"
    )
    cli.start_metrics(settings)
    try:
        assert cli.metrics_server.port == port
        cli.start_metrics(settings)  # a second call keeps the server it has
        assert "referrals_consumer_lag" in scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        cli.metrics_server.stop()

    off = ServiceCli(
        "unit", ServiceSettings, package="unit", default_port=None, consumer_help="consume"
    )
    off.start_metrics(ServiceSettings())
    assert off.metrics_server is None


def test_a_taken_metrics_port_stops_the_command_with_a_clear_message(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ServiceSettings(metrics=MetricsSettings(port=port))
        cli = ServiceCli(
            "unit", lambda: settings, package="unit", default_port=None, consumer_help="consume"
        )
        with pytest.raises(typer.Exit):
            cli.start_metrics(settings)
    err = capsys.readouterr().err
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err
    assert "REFERRALS_METRICS__PORT" in err
