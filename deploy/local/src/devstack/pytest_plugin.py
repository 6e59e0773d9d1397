"""pytest fixtures that start the real stack (Kafka, MinIO, PostgreSQL) for a test session.

One interface, two providers (`devstack.teststack`): the parts run as containers
(testcontainers) when a Docker engine answers, as the project's own local processes (devstack)
otherwise; REFERRALS_TEST_STACK=devstack|testcontainers forces one. Fixture `stack_provider` says
which. Either way the stack runs on free ports with its state in a temporary directory, so it
never collides with a developer's running stack, and it is stopped at the end of the session
(or at interpreter exit if the session is interrupted). Each test that needs isolation asks for
its own database, topic or bucket through the factory fixtures below.

With CI=true a skipped test is reported as a failure: an integration test that did not run
proves nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from devstack import stack as stack_mod
from devstack import teststack

if TYPE_CHECKING:
    import pluggy
    from minio import Minio

    from devstack.platform import PlatformInfo


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped tests fail the run in CI (CI=true): {reason}"


def stack_root(name: str) -> Path:
    """A fresh directory for a test stack's data, outside pytest's own temporary root: pytest
    resets that root's permissions to the current user only when a session starts, which would
    lock PostgreSQL (run as its own system user when the tests run as root) out of its data
    directory if another session started meanwhile."""
    return Path(tempfile.mkdtemp(prefix=f"referrals-{name}-"))


@pytest.fixture(scope="session")
def stack_provider() -> teststack.StackProvider:
    """Who starts this session's Kafka, MinIO and PostgreSQL: testcontainers when a Docker
    engine answers, devstack otherwise (`devstack.teststack.choose_provider`)."""
    return teststack.provider()


@pytest.fixture(scope="session")
def local_stack(stack_provider: teststack.StackProvider) -> Iterator[stack_mod.StackInfo]:
    """A running stack for this test session, on free ports, its state in a fresh temporary
    directory, from `stack_provider`."""
    root = stack_root("stack")
    info = stack_provider.start(root, Console(stderr=True), databases=())
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            stack_provider.stop(info)
            shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    try:
        yield info
    finally:
        stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: stack_mod.StackInfo) -> str:
    return local_stack.kafka_bootstrap


@pytest.fixture(scope="session")
def postgres_admin_dsn(local_stack: stack_mod.StackInfo) -> str:
    return local_stack.postgres_dsn


@pytest.fixture(scope="session")
def s3_client(local_stack: stack_mod.StackInfo) -> Minio:
    from minio import Minio

    return Minio(
        local_stack.s3_endpoint,
        access_key=local_stack.s3_access_key,
        secret_key=local_stack.s3_secret_key,
        secure=False,
    )


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def new_database(postgres_admin_dsn: str) -> AsyncIterator[Callable[..., object]]:
    """Factory: `dsn = await new_database("intake")` makes an empty database, dropped afterwards."""
    import asyncpg

    made: list[str] = []
    admin = await asyncpg.connect(postgres_admin_dsn)

    async def make(prefix: str = "test") -> str:
        name = unique_name(prefix)
        await admin.execute(f'create database "{name}"')
        made.append(name)
        return postgres_admin_dsn.rsplit("/", 1)[0] + f"/{name}"

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[Callable[..., object]]:
    """Factory: `topic = await new_topic("cases", partitions=3)` creates a fresh topic."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()

    async def make(prefix: str = "test", partitions: int = 1) -> str:
        name = unique_name(prefix).replace("_", ".")
        await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
        return name

    try:
        yield make
    finally:
        await admin.close()


@pytest.fixture
def new_bucket(s3_client: Minio) -> Iterator[Callable[[str], str]]:
    """Factory: `bucket = new_bucket("records")` creates an empty bucket, removed afterwards."""
    made: list[str] = []

    def make(prefix: str = "test") -> str:
        name = unique_name(prefix).replace("_", "-")
        s3_client.make_bucket(name)
        made.append(name)
        return name

    yield make
    for name in made:
        for obj in s3_client.list_objects(name, recursive=True):
            s3_client.remove_object(name, obj.object_name)
        s3_client.remove_bucket(name)


@contextlib.contextmanager
def service_users(local_stack: stack_mod.StackInfo, bucket: str) -> Iterator[dict[str, object]]:
    """`bucket` (made if missing) and, on that bucket only, the MinIO users of the services that
    use object storage, as the platform has them (records read-write, translation read-only:
    `devstack.object_store`); yields service → its `S3Settings`. The users and their policies
    are removed afterwards (the bucket is the caller's)."""
    from devstack import object_store
    from referrals_common.settings import S3Settings

    admin = (local_stack.s3_endpoint, local_stack.s3_access_key, local_stack.s3_secret_key)
    tag = uuid.uuid4().hex[:8]
    users = object_store.provision(
        *admin, bucket=bucket, users={s: f"{s}-{tag}" for s in object_store.ACCESS}
    )
    try:
        yield {
            service: S3Settings(
                endpoint=local_stack.s3_endpoint,
                access_key=user.access_key,
                secret_key=user.secret_key,
            )
            for service, user in users.items()
        }
    finally:
        object_store.remove(*admin, users)


@pytest.fixture
def service_s3(local_stack: stack_mod.StackInfo) -> Iterator[Callable[[str], dict[str, object]]]:
    """Factory: `s3 = service_s3(bucket)` gives each service that uses object storage its own
    MinIO user on `bucket` (see `service_users`): `s3["records"]`, `s3["translation"]`."""
    with contextlib.ExitStack() as stack:
        yield lambda bucket: stack.enter_context(service_users(local_stack, bucket))


TEST_PLATFORM_ENV = {
    # A center may ask for an answer within seconds, and the patient is reminded 12 and 6
    # seconds before: the unanswered-request journey takes half a minute, not days.
    "REFERRALS_PARTNERS_INFO_MIN_DUE_SECONDS": "5",
    "REFERRALS_PARTNERS_INFO_REMINDERS_BEFORE_SECONDS": "[12, 6]",
    # A consultation meeting may start seconds after it is offered, and its reminders come 25
    # and 12 seconds before it: the meeting journey takes a minute, not a day.
    "REFERRALS_PARTNERS_MEETING_MIN_NOTICE_SECONDS": "5",
    "REFERRALS_PARTNERS_MEETING_REMINDERS_BEFORE_SECONDS": "[25, 12]",
}
"""Settings of the test platform that differ from `make up`'s."""


@pytest.fixture(scope="session")
def running_platform(
    stack_provider: teststack.StackProvider,
) -> Iterator[tuple[stack_mod.StackInfo, PlatformInfo]]:
    """The whole platform as `make up` runs it — each service one process running all its roles, the
    patient's web app (`platform.web`), the sample centers, the mail sink and the trace viewer —
    on a stack of its own from `stack_provider` (free ports, temporary directory), so its
    consumers never see other tests' events. Yields (stack, platform)."""
    from devstack import platform as platform_mod

    root = stack_root("platform")
    console = Console(stderr=True)
    info = stack_provider.start(root, console, databases=stack_mod.DATABASES)
    running: list[PlatformInfo] = []

    def stop() -> None:
        while running:
            platform_mod.stop(running.pop())
        stack_provider.stop(info)
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    try:
        running.append(
            platform_mod.start(info, console, trace_viewer=True, extra_env=TEST_PLATFORM_ENV)
        )
        yield info, running[0]
    finally:
        stop()
        atexit.unregister(stop)
