"""A real `vllm serve` killed (SIGKILL, server and engine) in the middle of a batch: the requests already
answered keep their results, the rest fail cleanly after their retries, and nothing hangs.

Run: .venv/bin/pytest -q tests/llm/test_openai_server_kill.py   (about a minute, mostly the server start)
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from selfinstruct.llm import BackendDownError, OpenAIBackend, Request, Sampling
from selfinstruct.llm.server import start_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(embedded_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "vllm.log"
    with start_server(embedded_model, max_model_len=2048, log_path=log) as s:
        yield s


def finished_requests(server) -> float:
    """Requests the server has completed, from its Prometheus counter."""
    text = httpx.get(f"{server.root_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total")
    )


def test_server_killed_mid_batch(server):
    backend = OpenAIBackend(
        server.model_name,
        base_urls=server.base_url,
        concurrency=4,
        max_retries=2,
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        timeout_s=60,
        all_down_timeout_s=600,  # this test is about per-request failure; the run-stopping rule has its own
    )
    reqs = [
        Request(
            id=str(i),
            messages=({"role": "user", "content": f"Tell a story about {i} ants."},),
            sampling=Sampling(max_tokens=64, seed=i),
        )
        for i in range(64)  # 16 waves of 4, about 40 s here: the kill lands early on any machine
    ]
    before = finished_requests(server)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(backend.generate, reqs)
        # Kill once the server has finished 4 requests, or after 20 s should its counter not move.
        deadline = time.monotonic() + 20
        while finished_requests(server) < before + 4 and time.monotonic() < deadline and not future.done():
            time.sleep(0.1)
        if future.done():  # say why, so a failure on another machine can be read from its log alone
            out = future.result()
            errors = Counter(c.error for c in out if not c.ok).most_common(3)
            pytest.fail(
                f"the batch finished before the server could be killed: {sum(c.ok for c in out)} ok, "
                f"server counted {finished_requests(server) - before:g} finished; errors {errors}; "
                f"server log tail:\n{server.log_tail()}"
            )
        server.kill()
        killed_at = time.monotonic()
        out = future.result(timeout=120)
    elapsed = time.monotonic() - killed_at

    assert [c.request_id for c in out] == [r.id for r in reqs]
    done, failed = [c for c in out if c.ok], [c for c in out if not c.ok]
    assert done and all(c.text for c in done)
    assert len(failed) >= 8  # 4 at most in flight: most of the 64 were still waiting
    for c in failed:
        assert c.error.startswith("failed after 3 attempts:") and server.base_url in c.error, c.error
    assert "cannot connect" in failed[-1].error  # the last ones never reached a server at all
    # three attempts and two short backoffs each, four at a time: seconds, not the 60 s request timeout
    assert elapsed < 30

    # a fresh backend (a new run) is told at once that nothing is listening any more
    with pytest.raises(BackendDownError, match="no replica reachable"):
        OpenAIBackend(server.model_name, base_urls=server.base_url).generate(reqs[:1])


def test_serve_killed_outright_leaves_no_server_or_engine(embedded_model, tmp_path):
    """`selfinstruct serve` killed with SIGKILL (its pid only, no code runs in it): vLLM's server, engine core
    and worker stayed alive for good, holding the port and the engine's memory. They now stop."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    import psutil

    from selfinstruct.llm.server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "selfinstruct", "serve", "--model", str(embedded_model), "--port", str(port)]
    cmd += ["--max-model-len", "512", "--log-file", str(tmp_path / "vllm.log")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    kids: list[psutil.Process] = []
    try:
        seen = ""
        while "serving" not in seen:
            line = proc.stdout.readline()
            assert line, f"selfinstruct serve exited: {seen[-2000:]}"
            seen += line
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert len(kids) >= 2  # the server and its engine core
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gone, alive = psutil.wait_procs(kids, timeout=60)
        assert not alive, [(k.pid, k.name()) for k in alive]
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0  # the port is free again
    finally:
        for k in kids if proc.poll() is not None else [psutil.Process(proc.pid), *kids]:
            try:
                k.kill()
            except psutil.NoSuchProcess:
                pass
