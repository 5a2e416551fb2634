"""`VLLMBackend.stream`: requests pulled as the engine has room, completions as they finish, early close aborts.

Run: .venv/bin/pytest -q tests/llm/test_vllm_stream.py
"""

from __future__ import annotations

from contextlib import closing

import pytest

from selfinstruct.llm import Request, Sampling

pytestmark = pytest.mark.vllm

TOPICS = ["rivers", "bread", "chess", "volcanoes", "owls", "tides", "copper", "jazz"]


def test_streamed_texts_equal_generated_texts_for_seeded_requests(vllm_backend, chat):
    reqs = [
        chat(f"Invent a task about {t}.", temperature=1.0, max_tokens=24, seed=i)
        for i, t in enumerate(TOPICS)
    ]
    generated = vllm_backend.generate(reqs)
    streamed = list(vllm_backend.stream(reqs, max_in_flight=3))
    assert sorted(c.request_id for c in streamed) == sorted(r.id for r in reqs)
    by_id = {c.request_id: c for c in streamed}
    assert [by_id[r.id].text for r in reqs] == [c.text for c in generated]
    assert all(
        by_id[r.id].completion_tokens == c.completion_tokens for r, c in zip(reqs, generated, strict=True)
    )
    assert (
        len({c.text for c in generated}) > 4
    )  # seeds differ, so texts differ: the comparison means something


def test_a_lazy_request_iterator_is_pulled_only_when_there_is_room(vllm_backend, chat):
    pulled: list[str] = []
    seen: list[str] = []

    def requests():
        for i in range(7):
            # the next request may depend on what came back so far: here its text names the last completion
            last = seen[-1] if seen else "none"
            req = chat(f"Name a colour ({i}, after {last}).", max_tokens=4 + i, seed=i)
            pulled.append(req.id)
            yield req

    pulled_at_yield = []
    for c in vllm_backend.stream(requests(), max_in_flight=2):
        assert c.ok
        pulled_at_yield.append(len(pulled))
        seen.append(c.request_id)
    assert len(seen) == 7 and sorted(seen) == sorted(pulled)
    # at the k-th completion (k from 1): k - 1 were refilled for, plus the 2 first
    assert all(n <= k + 1 for k, n in enumerate(pulled_at_yield, start=1)), pulled_at_yield
    assert pulled_at_yield[0] == 2
    assert any("after " + s in p for s in seen for p in pulled)  # later requests saw earlier results


def test_closing_early_aborts_what_is_in_flight_and_the_engine_serves_the_next_call(vllm_backend, chat):
    engine = vllm_backend.llm.llm_engine
    short = chat("Say hi.", max_tokens=1, seed=0)
    longer = [
        chat(f"Write a long story about {t}.", max_tokens=400, temperature=1.0, seed=1) for t in TOPICS[:4]
    ]
    it = vllm_backend.stream([short, *longer], max_in_flight=5)
    first = next(it)
    assert first.request_id == short.id and first.ok
    assert engine.get_num_unfinished_requests() == 4  # the long ones are still running
    it.close()
    assert engine.get_num_unfinished_requests() == 0 and not engine.has_unfinished_requests()
    assert [c.ok for c in vllm_backend.generate([chat("Still there?", max_tokens=4, seed=2)])] == [True]

    # the same when the consumer raises inside `with closing(...)`
    with pytest.raises(RuntimeError, match="consumer failed"):
        with closing(vllm_backend.stream([short, *longer], max_in_flight=5)) as it:
            for _ in it:
                assert engine.get_num_unfinished_requests() == 4
                raise RuntimeError("consumer failed")
    assert engine.get_num_unfinished_requests() == 0
    again = list(vllm_backend.stream([chat("And now?", max_tokens=4, seed=3)]))
    assert len(again) == 1 and again[0].ok


def test_a_bad_prompt_fails_alone_in_a_stream(vllm_backend, chat):
    reqs = [chat("Hi!", max_tokens=4), chat("word " * 3000, max_tokens=4), chat("Bye!", max_tokens=4)]
    reqs += [Request(id="empty", prompt="", sampling=Sampling(max_tokens=4))]
    out = {c.request_id: c for c in vllm_backend.stream(reqs, max_in_flight=2)}
    assert len(out) == 4
    assert out["Hi!"].ok and out["Bye!"].ok
    assert out["word " * 3000].error.startswith("prompt_too_long:")
    assert not out["empty"].ok


def test_max_in_flight_must_be_positive(vllm_backend, chat):
    from selfinstruct.errors import SelfInstructError

    with pytest.raises(SelfInstructError, match="max_in_flight"):
        vllm_backend.stream([chat("x")], max_in_flight=0)
