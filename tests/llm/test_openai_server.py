"""The HTTP backend against a real `vllm serve` of the embedded model on 127.0.0.1, started once for this
module through the real command, `selfinstruct serve`, and stopped with Ctrl-C (SIGINT) at the end.

Run: .venv/bin/pytest -q tests/llm/test_openai_server.py   (about a minute: most of it is the server start)
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm import OpenAIBackend, Request, Sampling
from selfinstruct.llm.server import free_port
from selfinstruct.llm.vllm_engine import native_bf16

pytestmark = pytest.mark.server


class Served:
    def __init__(self, proc: subprocess.Popen, lines: queue.Queue):
        self.proc, self.lines, self.output = proc, lines, []
        self.base_url = self.model_name = ""
        self.log = Path()  # the server's log file, as the command printed it

    def read_until(self, needle: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            self.output.append(line)
            if needle in line:
                return line
        raise AssertionError(
            f"`selfinstruct serve` never printed {needle!r}; it printed:\n{''.join(self.output)}"
        )


@pytest.fixture(scope="module")
def served(embedded_model):
    port = free_port()
    cmd = [sys.executable, "-c", "from selfinstruct.cli import main; main()", "serve"]
    cmd += ["--model", str(embedded_model), "--port", str(port), "--max-model-len", "2048"]
    cmd += ["--", "--max-num-seqs", "200"]  # passed through to vLLM unchanged
    env = {**os.environ, "COLUMNS": "200"}
    # Started as from a script's `cmd &`: SIGINT inherited ignored, so only our own handlers can stop it.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    s = Served(proc, lines)
    try:
        s.read_until("stops the server", timeout_s=600)  # the last line printed once healthy
        [line] = [line for line in s.output if line.startswith("serving ")]
        s.model_name, s.base_url = line.split()[1], line.split()[-1]
        [line] = [line for line in s.output if line.startswith("log: ")]
        s.log = Path(line.split()[1])
        s.children = psutil.Process(proc.pid).children(recursive=True)
        yield s
    finally:
        # SIGTERM, as a supervisor or `kill` sends it: the command stops the server and its engine, then
        # exits 143 (128 + SIGTERM) with nothing left running.
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    s.read_until("stopped", timeout_s=5)
    assert rc == 143
    assert not [p for p in s.children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(httpx.TransportError):
        httpx.get(s.base_url.removesuffix("/v1") + "/health", timeout=2)


def test_serve_prints_the_base_url_and_a_recipe_line(served):
    assert served.base_url.startswith("http://127.0.0.1:") and served.base_url.endswith("/v1")
    assert served.model_name == "smollm2-135m-instruct"
    assert any(f"base_urls: [{served.base_url}]" in line for line in served.output)


def test_arguments_after_the_double_dash_reach_vllm(served):
    assert "'max_num_seqs': 200" in served.log.read_text()


def test_the_server_computes_in_float32_on_a_cpu_without_native_bfloat16(served):
    named = "'dtype': 'float32'" in served.log.read_text()  # vLLM logs the settings it was given
    assert named == (not native_bf16(Path("/proc/cpuinfo").read_text()))


def test_the_server_keeps_no_core_from_its_engine_on_two_cores(served):
    kept_none = "reserve_cpu_num=0" in served.log.read_text()  # vLLM logs its thread binding
    assert kept_none == (len(os.sched_getaffinity(0)) <= 2)


def test_sixteen_chat_requests_through_the_server(served, chat):
    backend = OpenAIBackend(served.model_name, base_urls=served.base_url, concurrency=8)
    reqs = [chat(f"Write one sentence about the number {i}.", max_tokens=24, seed=i) for i in range(16)]
    out = backend.generate(reqs)
    assert [c.request_id for c in out] == [r.id for r in reqs]
    assert all(c.ok and c.text.strip() for c in out), [c.error for c in out if not c.ok]
    assert all(0 < c.completion_tokens <= 24 and c.prompt_tokens > 10 for c in out)


def test_sampling_settings_reach_the_server(served, chat):
    backend = OpenAIBackend(served.model_name, base_urls=served.base_url)
    seeded = chat("Invent a riddle.", temperature=1.0, max_tokens=24, seed=42)
    # Each seeded request alone: on CPU the logits of a sequence shift slightly with what it is batched with, so
    # only the same batch shape promises the same text.
    first = backend.generate([seeded])
    again = backend.generate([seeded.model_copy(update={"id": "again"})])
    out = (
        first
        + again
        + backend.generate(
            [
                chat("Suggest a name for a dog.", n=3, temperature=1.0, max_tokens=10, seed=1),
                chat("Write a long story about a lighthouse.", max_tokens=4),
                Request(
                    id="raw",
                    prompt="The capital of France is",
                    sampling=Sampling(temperature=0.0, max_tokens=6),
                ),
            ]
        )
    )
    assert all(c.ok for c in out), [c.error for c in out]
    assert out[0].text == out[1].text  # same seed, same text
    assert len(out[2].texts) == 3 and len(set(out[2].texts)) > 1
    assert out[3].finish_reason == "length" and out[3].completion_tokens == 4
    assert out[4].text.strip() and out[4].prompt_tokens < 10  # raw text, no chat template around it


def test_choice_reaches_the_server_as_structured_outputs(served, chat):
    backend = OpenAIBackend(served.model_name, base_urls=served.base_url)
    prompt = "Which answer is better, A or B? Explain at length."
    free, held = backend.generate(
        [
            chat(prompt, temperature=0.0, max_tokens=8),
            chat(prompt, id="held", temperature=0.0, max_tokens=8, choice=("A", "B", "tie")),
        ]
    )
    assert free.ok and free.text not in ("A", "B", "tie")  # left alone, the model talks
    assert held.ok and held.text in ("A", "B", "tie"), (held.error, held.text)


def test_a_wrong_model_name_is_caught_before_any_request(served, chat):
    with pytest.raises(SelfInstructError, match="serves smollm2-135m-instruct, not `gpt-4`"):
        OpenAIBackend("gpt-4", base_urls=served.base_url).generate([chat("hi")])


def test_seeded_prompts_longer_than_one_scheduler_step_keep_the_server_alive(served, chat):
    # see test_vllm_engine: with chunked prefill on, vLLM's CPU engine dies on these (`serve` turns it off)
    backend = OpenAIBackend(served.model_name, base_urls=served.base_url, max_retries=0)
    reqs = [
        Request(id=str(i), prompt=f"item{i} " * 800, sampling=Sampling(max_tokens=4, seed=i))
        for i in range(3)
    ]
    out = backend.generate(reqs)
    assert all(c.ok and c.prompt_tokens > 1400 for c in out), [c.error for c in out]
    assert backend.generate([chat("Still alive?", max_tokens=4)])[0].ok
