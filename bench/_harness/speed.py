"""How fast this machine is right now, per CPU-second, at the kinds of work the platform does.

A CPU-second is not a fixed amount of work on a shared virtual machine: on this project's
machines the same pipeline run has cost 0.041 and 0.067 CPU-s per case an hour apart, with no
change of code, and the other benchmarks' baselines moved with it. A figure in CPU-seconds is
only comparable with another measured at the same speed, so the cost run measures the speed at
its start and at its end with fixed work of the platform's two kinds:

* `python_kops_per_cpu_s`: the interpreter (thousands of JSON round trips of an event-sized
  document, with the dict and string work around them) per CPU-second of this process;
* `loopback_round_trips_per_cpu_s`: request/answer round trips of 200 bytes over a loopback TCP
  connection to an echo in another process (the kernel's side of every statement, every Kafka
  request and every HTTP call between the platform's processes), per CPU-second of both.

Higher is faster. Two runs' CPU-s per case compare after scaling by the ratio of their speeds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import psutil

_DOCUMENT = {
    "specversion": "1.0",
    "id": str(uuid.UUID(int=1)),
    "source": "/referrals/intake",
    "type": "referral.case.submitted",
    "time": "2026-12-08T00:00:00Z",
    "datacontenttype": "application/json",
    "data": {
        "case_id": str(uuid.UUID(int=2)),
        "destination_country": "DE",
        "documents": [str(uuid.UUID(int=i)) for i in range(3, 6)],
        "cancer_type": "breast",
    },
}

_ECHO = """
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(65536):
    conn.sendall(data)
"""


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def python_kops_per_cpu_s(rounds: int = 40_000) -> float:
    """Thousands of JSON round trips of an event-sized document per CPU-second."""
    began = time.process_time()
    for i in range(rounds):
        doc = json.loads(json.dumps(_DOCUMENT))
        doc["id"] = f"{i:032x}"
        if doc["type"].startswith("referral.") and len(doc["data"]["documents"]) != 3:
            raise AssertionError("unreachable")
    spent = time.process_time() - began
    return rounds / 1000 / max(spent, 1e-9)


def loopback_round_trips_per_cpu_s(rounds: int = 5_000, size: int = 200) -> float:
    """Round trips of `size` bytes to an echo process over loopback TCP per CPU-second of the
    two processes together."""
    echo = subprocess.Popen(
        [sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port))
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = b"x" * size
        try:
            for _ in range(50):  # the connection and both processes awake
                client.sendall(payload)
                _receive(client, size)
            other = psutil.Process(echo.pid)
            began = _cpu(other) + time.process_time()
            for _ in range(rounds):
                client.sendall(payload)
                _receive(client, size)
            spent = _cpu(other) + time.process_time() - began
        finally:
            client.close()
        echo.wait(timeout=10)
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait()
    return rounds / max(spent, 1e-9)


def _receive(conn: socket.socket, size: int) -> None:
    left = size
    while left:
        chunk = conn.recv(left)
        if not chunk:
            raise ConnectionError("the echo closed the connection")
        left -= len(chunk)


def machine_speed(repeats: int = 3) -> dict[str, Any]:
    """This machine's speed now: the median of `repeats` measurements of each kind of work."""
    python = sorted(python_kops_per_cpu_s() for _ in range(repeats))
    loopback = sorted(loopback_round_trips_per_cpu_s() for _ in range(repeats))
    return {
        "python_kops_per_cpu_s": round(python[len(python) // 2], 1),
        "loopback_round_trips_per_cpu_s": round(loopback[len(loopback) // 2]),
    }


if __name__ == "__main__":
    print(json.dumps(machine_speed()))
