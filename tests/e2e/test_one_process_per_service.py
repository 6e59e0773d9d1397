"""`make up` runs each service as one process (`referrals-<service> all`): the platform the e2e
suite runs on is five service processes, each of them serving its API (where it has one), its
consumer's and its relay's metrics from one endpoint, and one SIGTERM stops all its roles.
(Compose, Kubernetes and the chaos suite run every role as its own process.)"""

from __future__ import annotations

import re
import signal
import time

import httpx
import psutil
import pytest

from devstack import platform as platform_mod

pytestmark = pytest.mark.e2e

SERVICES = {"intake", "records", "translation", "partners", "notifications"}


def test_the_platform_is_one_process_per_service(running_platform) -> None:
    _, plat = running_platform
    services = {name for name in plat.pids if name in SERVICES or "-" in name}
    assert services == SERVICES
    launcher = plat.pids["launcher"]
    # Started with two malloc arenas (glibc reads it once, at start): what it forks inherits
    # them (a forked process's own /proc environ is overwritten by its title).
    assert psutil.Process(launcher).environ().get("MALLOC_ARENA_MAX") == "2"
    for name in SERVICES:
        process = psutil.Process(plat.pids[name])
        # Forked from the launcher's preloaded libraries, titled with its own command.
        assert process.ppid() == launcher
        argv = " ".join(process.cmdline()).split()
        assert argv[argv.index("-m") + 1 :][:2] == [f"referrals_{name}.cli", "all"]


def test_each_service_process_serves_its_api_and_runs_its_consumer_and_relay(
    running_platform,
) -> None:
    _, plat = running_platform
    for name in SERVICES:
        pid = plat.pids[name]
        if name in plat.apis:
            port = int(plat.apis[name].rsplit(":", 1)[1])
            owners = {
                c.pid
                for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            }
            assert owners == {pid}, f"{name}'s API port is served by {owners}, not {pid}"
            assert httpx.get(f"{plat.apis[name]}/health", timeout=10).status_code == 200
        # The relay's gauge and the consumer's counter, with the service's label, in one place
        # (translation's consumer subscribes once its document readers have started).
        relay = re.compile(rf'^referrals_outbox_backlog\{{service="{name}"\}} ', re.M)
        consumer = re.compile(
            rf'^referrals_consumer_dead_letters_total\{{[^}}]*service="{name}"', re.M
        )
        deadline = time.monotonic() + 120
        while True:
            metrics = httpx.get(plat.metrics[name], timeout=10).text
            if (relay.search(metrics) and consumer.search(metrics)) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert relay.search(metrics), f"{name} serves no relay metrics"
        assert consumer.search(metrics), f"{name} serves no consumer metrics"


def test_one_sigterm_stops_every_role_of_a_service_and_it_starts_again(running_platform) -> None:
    _, plat = running_platform
    name = "partners"  # API, consumer, relay and scheduler
    process = psutil.Process(plat.pids[name])
    process.send_signal(signal.SIGTERM)
    # Exit status 0: every role ended cleanly (a role still running after the grace period, or
    # one that failed on the way out, would have made it 1), and none was left hanging.
    assert platform_mod.exit_status(plat, process.pid, timeout=90) == 0
    assert plat.health()[name] == "down"
    platform_mod.restart(plat, name)
    assert plat.health()[name] == "up"
    assert httpx.get(f"{plat.apis[name]}/health", timeout=10).status_code == 200
