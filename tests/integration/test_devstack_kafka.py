"""The local stack's own Kafka start-up, on the real broker jars."""

from __future__ import annotations

import time
import uuid

import pytest

from devstack import parts
from devstack.install import KAFKA_VERSION, cache_dir
from devstack.process import port_accepts, stop_group

pytestmark = pytest.mark.integration


def test_a_cluster_id_beginning_with_a_dash_formats_and_starts(tmp_path, monkeypatch) -> None:
    """Random cluster ids begin with "-" once in 64; given as a separate value after `-t`, the
    storage tool took it for an option and the stack failed to start."""
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(range(1, 16)))
    monkeypatch.setattr(parts.uuid, "uuid4", lambda: dashed)
    kafka, bootstrap = parts.start_kafka(cache_dir() / f"kafka-{KAFKA_VERSION}", tmp_path)
    try:
        assert (tmp_path / "kraft-logs" / "meta.properties").read_text().count("cluster.id=-")
        host, port = bootstrap.rsplit(":", 1)
        deadline = time.monotonic() + 60
        while not port_accepts(int(port), host) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert port_accepts(int(port), host), "the broker never listened"
    finally:
        stop_group(kafka.pid)
