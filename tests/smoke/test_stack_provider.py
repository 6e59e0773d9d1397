"""Which provider starts the fixtures' Kafka, MinIO and PostgreSQL (`devstack.teststack`):
testcontainers when a Docker engine answers, devstack otherwise, REFERRALS_TEST_STACK to force
one. The decision is checked with engines that answer and engines that refuse (stand-in clients,
and the real Docker SDK against a loopback server that speaks the engine's ping API or a port
where nothing listens), and the session's own stack is checked to come from the provider this
machine calls for."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from docker.errors import DockerException
from requests.exceptions import ConnectionError as RequestsConnectionError

from devstack import stack as stack_mod
from devstack import teststack
from devstack.process import free_port, port_accepts


class _Client:
    """A stand-in for `docker.DockerClient`: answers a ping, or fails it."""

    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.closed = False

    def ping(self) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def close(self) -> None:
        self.closed = True


def _factory(answer: bool | Exception) -> tuple[Any, list[_Client]]:
    made: list[_Client] = []

    def make(**_: object) -> _Client:
        client = _Client(answer)
        made.append(client)
        return client

    return make, made


def _refused(**_: object) -> _Client:
    raise DockerException("Error while fetching server API version: no such file or directory")


# ---- the decision ---------------------------------------------------------------------------


@pytest.mark.unit
def test_an_engine_that_answers_means_testcontainers() -> None:
    make, made = _factory(True)
    assert teststack.docker_answers(make) is True
    assert made[0].closed, "the probe's client is closed"
    chosen = teststack.provider({}, lambda: teststack.docker_answers(make))
    assert isinstance(chosen, teststack.ContainersProvider)
    assert chosen.name == teststack.TESTCONTAINERS


@pytest.mark.unit
@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(_refused, id="no-engine-at-the-socket"),
        pytest.param(_factory(RequestsConnectionError("refused"))[0], id="ping-refused"),
        pytest.param(_factory(DockerException("500 Server Error"))[0], id="ping-fails"),
        pytest.param(_factory(False)[0], id="ping-says-no"),
    ],
)
def test_an_engine_that_does_not_answer_means_devstack(factory: Any) -> None:
    assert teststack.docker_answers(factory) is False
    chosen = teststack.provider({}, lambda: teststack.docker_answers(factory))
    assert isinstance(chosen, teststack.DevstackProvider)
    assert chosen.name == teststack.DEVSTACK


@pytest.mark.unit
def test_the_environment_forces_a_provider_without_asking_docker() -> None:
    def must_not_ask() -> bool:
        raise AssertionError("a forced provider must not ping Docker")

    for value, expected in (
        ("devstack", teststack.DEVSTACK),
        ("testcontainers", teststack.TESTCONTAINERS),
        (" TestContainers ", teststack.TESTCONTAINERS),
    ):
        env = {teststack.PROVIDER_ENV: value}
        assert teststack.choose_provider(env, must_not_ask) == expected
    assert teststack.choose_provider({teststack.PROVIDER_ENV: "auto"}, lambda: True) == (
        teststack.TESTCONTAINERS
    )
    assert teststack.choose_provider({teststack.PROVIDER_ENV: ""}, lambda: False) == (
        teststack.DEVSTACK
    )
    with pytest.raises(ValueError, match="expected devstack, testcontainers or auto"):
        teststack.choose_provider({teststack.PROVIDER_ENV: "podman"}, must_not_ask)


# ---- the real Docker SDK on loopback ------------------------------------------------------


class _EngineApi(BaseHTTPRequestHandler):
    """The two calls the Docker SDK makes before anything else: the API version, the ping."""

    def do_GET(self) -> None:
        if self.path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        elif self.path.endswith("/version"):
            version = {"ApiVersion": "1.47", "MinAPIVersion": "1.24", "Version": "27.5.1"}
            body, kind = json.dumps(version).encode(), "application/json"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def answering_engine() -> Iterator[str]:
    """DOCKER_HOST of a loopback server that answers the engine's version and ping calls."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EngineApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_the_docker_sdk_finds_an_engine_that_answers_on_docker_host(
    answering_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", answering_engine)
    monkeypatch.delenv(teststack.PROVIDER_ENV, raising=False)
    assert teststack.docker_answers() is True
    assert teststack.choose_provider({}, teststack.docker_answers) == teststack.TESTCONTAINERS


@pytest.mark.integration
def test_the_docker_sdk_finds_no_engine_where_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()
    assert not port_accepts(port)
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert teststack.docker_answers() is False
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    assert teststack.docker_answers() is False
    assert teststack.choose_provider({}, teststack.docker_answers) == teststack.DEVSTACK


@pytest.mark.integration
def test_the_containers_are_the_composes_images_with_the_local_stacks_settings(
    answering_engine: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The containers provider, built (not started) against an engine that answers: the
    images docker-compose.yml runs (Confluent's for Kafka, which testcontainers drives), the
    local broker's settings, MinIO's encryption key and the stack's own credentials."""
    import yaml

    monkeypatch.setenv("DOCKER_HOST", answering_engine)
    kafka, minio, postgres = teststack.ContainersProvider().containers(tmp_path)
    creds = stack_mod.Secrets.load_or_create(tmp_path)
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    images = {name: compose["services"][name]["image"] for name in ("minio", "postgres")}
    assert minio.image == images["minio"] == teststack.MINIO_IMAGE
    assert postgres.image == images["postgres"] == teststack.POSTGRES_IMAGE
    assert kafka.image == teststack.KAFKA_IMAGE and kafka.kraft_enabled
    assert kafka.env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert kafka.env["KAFKA_GROUP_COORDINATOR_APPEND_LINGER_MS"] == "0"
    assert minio.env["MINIO_ROOT_USER"] == creds.s3_access_key
    assert minio.env["MINIO_ROOT_PASSWORD"] == creds.s3_secret_key
    assert minio.env["MINIO_KMS_SECRET_KEY"] == creds.kms_key()
    assert (postgres.username, postgres.password) == ("postgres", creds.postgres_password)


# ---- this session's stack ----------------------------------------------------------------


@pytest.mark.integration
def test_this_sessions_stack_comes_from_the_provider_this_machine_calls_for(
    stack_provider: teststack.StackProvider, local_stack: stack_mod.StackInfo
) -> None:
    """Without a Docker engine (or with REFERRALS_TEST_STACK=devstack) the fixtures run the
    project's own processes, and those are what answer at the stack's addresses."""
    import os

    expected = teststack.choose_provider(os.environ, teststack.docker_answers)
    assert stack_provider.name == expected
    if expected == teststack.DEVSTACK:
        assert isinstance(stack_provider, teststack.DevstackProvider)
        assert {"kafka", "minio", "postgres"} <= set(local_stack.pids)
        assert all(local_stack.alive().values()), local_stack.alive()
    else:
        assert isinstance(stack_provider, teststack.ContainersProvider)
        assert set(local_stack.pids) == {"sinks"}, "the parts are containers, not processes"
    for address in (local_stack.kafka_bootstrap, local_stack.s3_endpoint):
        host, port = address.rsplit(":", 1)
        assert port_accepts(int(port), host), address
    dsn_host_port = local_stack.postgres_dsn.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = dsn_host_port.rsplit(":", 1)
    assert port_accepts(int(port), host)
