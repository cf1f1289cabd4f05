"""Test servers in their own process (`recsys serve`, moto's S3): a free loopback port, and a start that waits
until the server answers."""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(cmd: list[str], url: str, ready_path: str, log: Path, what: str, timeout: float = 120,
                 **popen) -> subprocess.Popen:
    """Start `cmd` (its output to `log`) and wait until `url + ready_path` answers; fail the test with the log's end
    when it exits or does not answer within `timeout` seconds."""
    with log.open("w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"{what} did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
