"""`selfinstruct.llm.base.stream`: a backend with only `generate` (the loop's test doubles) still streams,
in barrier batches of `max_in_flight`, pulling requests only as each batch is due.

Run: .venv/bin/pytest -q tests/llm/test_stream_fallback.py
"""

from __future__ import annotations

from selfinstruct.llm import Completion, Request
from selfinstruct.llm.base import stream


class GenerateOnly:
    """The narrowest backend: `generate` answers each request with its own id."""

    name, model = "generate-only", "none"

    def __init__(self):
        self.batches: list[list[str]] = []

    def generate(self, requests):
        self.batches.append([r.id for r in requests])
        return [Completion(request_id=r.id, texts=[r.id]) for r in requests]

    def close(self):
        pass


def test_a_generate_only_backend_streams_in_batches_pulled_lazily():
    backend, pulled = GenerateOnly(), []

    def requests():
        for i in range(7):
            pulled.append(i)
            yield Request(id=str(i), prompt=f"p{i}")

    seen = []
    for c in stream(backend, requests(), max_in_flight=3):
        seen.append((c.request_id, len(pulled)))
    assert backend.batches == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert [s[0] for s in seen] == [str(i) for i in range(7)]
    assert seen[0][1] == 3  # the second batch was not pulled before the first was handed over


def test_a_backend_with_stream_is_used_as_it_is():
    class Streaming(GenerateOnly):
        def stream(self, requests, *, max_in_flight=None):
            self.batches.append(["stream", max_in_flight])
            return iter([Completion(request_id=r.id, texts=["streamed"]) for r in requests])

    backend = Streaming()
    out = list(stream(backend, [Request(id="a", prompt="p")], max_in_flight=5))
    assert backend.batches == [["stream", 5]] and out[0].text == "streamed"
