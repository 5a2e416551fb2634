"""`OpenAIBackend.stream` against the scripted server of conftest.py, which can hold each answer for a set
time and fail on demand: a bound on requests in flight, lazy pulls, the usual retries, and an early close.

Run: .venv/bin/pytest -q tests/llm/test_openai_stream.py
"""

from __future__ import annotations

from contextlib import closing

import pytest

from selfinstruct.llm import OpenAIBackend

HOLD = 0.3  # seconds the server holds each answer


def _backend(fake, **settings) -> OpenAIBackend:
    return OpenAIBackend(fake.model, base_urls=fake.url, concurrency=8, backoff_base_s=0.01, **settings)


def _in_service(times: list[float]) -> int:
    """Most requests the server held at once, each held HOLD seconds from its arrival."""
    return max(sum(1 for t in times if t <= u < t + HOLD) for u in times)


def test_stream_keeps_at_most_max_in_flight_and_answers_every_request(fake_openai, chat):
    fake = fake_openai([{"sleep": HOLD}])
    reqs = [chat(f"question {i}") for i in range(9)]
    out = list(_backend(fake).stream(reqs, max_in_flight=3))
    assert sorted(c.request_id for c in out) == sorted(r.id for r in reqs)
    assert all(c.ok and c.text == "answer 0" for c in out)
    assert _in_service(fake.times()) == 3


def test_a_lazy_iterator_is_pulled_as_answers_arrive(fake_openai, chat):
    fake = fake_openai([{"sleep": 0.05}])
    pulled: list[int] = []

    def requests():
        for i in range(6):
            pulled.append(i)
            yield chat(f"q{i}")

    at_yield = [len(pulled) for _ in _backend(fake).stream(requests(), max_in_flight=2)]
    assert len(at_yield) == 6 and at_yield[0] == 2
    assert all(n <= k + 1 for k, n in enumerate(at_yield, start=1)), at_yield


def test_failed_attempts_are_retried_as_in_generate(fake_openai, chat):
    fake = fake_openai([{"status": 500}, {"status": 429, "headers": {"Retry-After": "0"}}, {}])
    [c] = list(_backend(fake).stream([chat("flaky")]))
    assert c.ok and len(fake.calls) == 3
    fake_bad = fake_openai([{"status": 400}])
    [c] = list(_backend(fake_bad).stream([chat("bad")]))
    assert (
        not c.ok and "HTTP 400" in c.error and len(fake_bad.calls) == 1
    )  # the request's own fault: no retry


def test_closing_early_cancels_what_is_in_flight(fake_openai, chat):
    fake = fake_openai(lambda body: {"sleep": 0.0 if body["messages"][0]["content"] == "fast" else 2.0})
    backend = _backend(fake)
    reqs = [chat("fast"), *(chat(f"slow {i}") for i in range(5))]
    it = backend.stream(reqs, max_in_flight=4)
    assert next(it).request_id == "fast"
    it.close()  # returns once the three slow ones in flight are cancelled, not after their 2 s
    assert [r.in_flight for r in backend._replicas] == [0]
    assert len(fake.calls) <= 4  # the four in flight at most: nothing was pulled after the close
    with pytest.raises(RuntimeError, match="consumer failed"):
        with closing(backend.stream(reqs, max_in_flight=2)) as it:
            for _ in it:
                raise RuntimeError("consumer failed")
    assert [r.in_flight for r in backend._replicas] == [0]
    assert [c.ok for c in backend.generate([chat("fast")])] == [True]  # still usable


def test_max_in_flight_must_be_positive(fake_openai, chat):
    from selfinstruct.errors import SelfInstructError

    with pytest.raises(SelfInstructError, match="max_in_flight"):
        _backend(fake_openai([{}])).stream([chat("x")], max_in_flight=0)
