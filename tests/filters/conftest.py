"""Filter test fixtures: a real redis-server on 127.0.0.1 (its tests are marked `server`)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from selfinstruct.llm.server import free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """(host, port) of a redis-server this fixture starts with no persistence, and stops afterwards."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed: run `make system-deps` (apt-get install redis-server)"
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield "127.0.0.1", port
    proc.terminate()
    proc.wait(timeout=10)
