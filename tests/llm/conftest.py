"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for faults a real server cannot produce on demand
(500 then 200, 429 with Retry-After, a hang). Everything else in tests/llm runs against real vLLM."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfinstruct.llm import Request, Sampling

# {"status": 500, "headers": {...}, "sleep": s, "body": {...} or b"sent as is", "trickle": s (one byte every s
# seconds)}; no body: a valid reply for 200
Action = dict


class FakeOpenAI:
    """Answers POSTs from `script`: a list of actions taken in order (the last one repeats) or a function of
    the request body. Records every POST as (monotonic time, path, headers, body)."""

    def __init__(self, script: list[Action] | Callable[[dict], Action], model: str = "fake-model"):
        self.script, self.model = script, model
        self.models_trickle = 0.0  # seconds between the bytes of the /models answer
        self.calls: list[tuple[float, str, dict, dict]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._server.daemon_threads = True
        self._server.handle_error = lambda *a: None  # a client that timed out closes the socket: expected
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def times(self) -> list[float]:
        return [c[0] for c in self.calls]

    def next_action(self, path: str, headers: dict, body: dict) -> Action:
        with self._lock:
            self.calls.append((time.monotonic(), path, headers, body))
            if callable(self.script):
                return self.script(body)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def reply(path: str, body: dict) -> dict:
    n = body.get("n", 1)
    if path.endswith("/chat/completions"):
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"}, "finish_reason": "stop"}
            for i in range(n)
        ]
    else:
        choices = [
            {"index": i, "text": f"{body['prompt']} continued {i}", "finish_reason": "length"}
            for i in range(n)
        ]
    return {"choices": choices[::-1], "usage": {"prompt_tokens": 7, "completion_tokens": 3 * n}}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, headers: dict, payload, trickle: float = 0.0) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        step = 1 if trickle else len(data) or 1
        for i in range(0, len(data), step):
            self.wfile.write(data[i : i + step])
            time.sleep(trickle)

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            answer = {"object": "list", "data": [{"id": self.server.fake.model}]}
            self._send(200, {}, answer, trickle=self.server.fake.models_trickle)
        else:
            self._send(404, {}, {"error": "no such route"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = self.server.fake.next_action(self.path, dict(self.headers), body)
        if action.get("sleep"):
            time.sleep(action["sleep"])
        status = action.get("status", 200)
        if "body" in action:
            payload = action["body"]
        else:
            payload = reply(self.path, body) if status == 200 else {"error": f"scripted {status}"}
        self._send(status, action.get("headers", {}), payload, action.get("trickle", 0.0))


@pytest.fixture
def fake_openai():
    """`fake_openai(script)` starts a scripted server; all are shut down after the test."""
    made: list[FakeOpenAI] = []

    def make(script, **kwargs) -> FakeOpenAI:
        made.append(FakeOpenAI(script, **kwargs))
        return made[-1]

    yield make
    for f in made:
        f.close()


def _chat(text: str, *, system: str | None = None, id: str | None = None, **sampling) -> Request:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return Request(id=id or text, messages=tuple(msgs), sampling=Sampling(**sampling))


@pytest.fixture
def chat():
    """`chat(text, system=None, id=None, **sampling)`: a one-turn chat Request whose id is its text unless
    given. A fixture, not an import: `from conftest import ...` picks whichever conftest pytest loaded last."""
    return _chat
