"""Smoke tests: the harness really runs Kafka, MinIO and PostgreSQL. They prove the harness, not
the product."""

import asyncio
import io
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from devstack import install, parts
from devstack.process import StartupError, stop_group

pytestmark = pytest.mark.integration


async def test_a_message_produced_to_kafka_is_consumed_with_its_key_and_headers(
    kafka_bootstrap, new_topic
):
    topic = await new_topic("smoke", partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = [(f"case-{i}".encode(), f"payload-{i}".encode()) for i in range(20)]
        for key, value in sent:
            await producer.send_and_wait(topic, value, key=key, headers=[("h", b"1")])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received = []
    try:
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    received += [(r.key, r.value, dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    assert sorted((k, v) for k, v, _ in received) == sorted(sent)
    assert all(h == {"h": b"1"} for _, _, h in received)


def test_an_object_put_in_minio_is_read_back_byte_for_byte(s3_client, new_bucket):
    bucket = new_bucket("smoke")
    body = uuid.uuid4().bytes * 4096
    s3_client.put_object(
        bucket,
        "case-1/doc.bin",
        io.BytesIO(body),
        length=len(body),
        content_type="application/octet-stream",
    )
    response = s3_client.get_object(bucket, "case-1/doc.bin")
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()
    assert [o.object_name for o in s3_client.list_objects(bucket, recursive=True)] == [
        "case-1/doc.bin"
    ]


async def test_postgres_runs_queries_and_transactions_in_a_fresh_database(new_database):
    dsn = await new_database("smoke")
    conn = await asyncpg.connect(dsn)
    try:
        assert (await conn.fetchval("show server_version")).startswith("18.")
        await conn.execute("create table t (id int primary key)")
        with pytest.raises(asyncpg.UniqueViolationError):  # noqa: PT012 - the whole transaction
            async with conn.transaction():
                await conn.execute("insert into t values (1)")
                await conn.execute("insert into t values (1)")
        assert await conn.fetchval("select count(*) from t") == 0
    finally:
        await conn.close()


def test_a_part_that_cannot_start_is_named_with_its_log(tmp_path, local_stack):
    """PostgreSQL on a port that is already taken fails fast with a clear error."""
    taken = int(local_stack.postgres_dsn.rsplit(":", 1)[1].split("/")[0])
    running, dsn = parts.start_postgres(install.postgres_bin_dir(), tmp_path / "pg", "pw", taken)
    try:
        with pytest.raises(StartupError) as err:
            parts.wait_ready(running, dsn, timeout=30)
        assert err.value.part == "postgres"
        assert str(running.log) in str(err.value)
    finally:
        stop_group(running.pid)


def test_the_test_stack_lives_in_a_private_temporary_directory(local_stack):
    state = Path(local_stack.root) / "stack.json"
    assert Path(local_stack.root).is_relative_to(tempfile.gettempdir())
    assert state.stat().st_mode & 0o077 == 0, "the state file holds credentials"
    assert local_stack.kafka_bootstrap.startswith("127.0.0.1:")
    assert local_stack.s3_endpoint.startswith("127.0.0.1:")


def test_a_stopped_stack_leaves_no_process_and_frees_its_ports(tmp_path):
    import psutil

    from devstack import stack as stack_mod
    from devstack.process import port_accepts

    info = stack_mod.start(tmp_path / "second", Console(stderr=True), databases=("intake",))
    try:
        assert info.database_dsns["intake"].endswith("/intake")
        tree = {
            p.pid
            for pid in info.pids.values()
            for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        }
        assert len(tree) >= 3
    finally:
        stack_mod.stop(info)
    assert not [
        pid
        for pid in tree
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    for address in (info.kafka_bootstrap, info.s3_endpoint):
        assert not port_accepts(int(address.rsplit(":", 1)[1]))
