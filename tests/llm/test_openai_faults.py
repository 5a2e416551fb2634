"""The HTTP backend's retry, rotation and failure rules, against scripted servers on 127.0.0.1 (faults a real
server cannot produce on demand). The same backend against a real `vllm serve` is in test_openai_server.py.

Run: .venv/bin/pytest -q tests/llm/test_openai_faults.py
"""

from __future__ import annotations

import asyncio
import time

import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm import BackendDownError, OpenAIBackend, Request
from selfinstruct.llm.server import free_port

FAST = dict(backoff_base_s=0.05, backoff_max_s=0.2, timeout_s=5.0)


def backend(*fakes, **settings) -> OpenAIBackend:
    return OpenAIBackend("fake-model", base_urls=[f.url for f in fakes], **{**FAST, **settings})


def test_500_then_200_is_retried_and_succeeds(fake_openai, chat):
    fake = fake_openai([{"status": 500}, {"status": 200}])
    [c] = backend(fake).generate([chat("hi")])
    assert c.ok and c.text == "answer 0" and c.finish_reason == "stop"
    assert (c.prompt_tokens, c.completion_tokens) == (7, 3)
    assert len(fake.calls) == 2


def test_429_waits_for_retry_after(fake_openai, chat):
    fake = fake_openai([{"status": 429, "headers": {"Retry-After": "1"}}, {"status": 200}])
    [c] = backend(fake).generate([chat("hi")])
    assert c.ok
    first, second = fake.times()
    assert second - first >= 1.0  # the server asked for 1 s; our own backoff would have waited 0.05 s


def test_429_without_retry_after_backs_off_exponentially(fake_openai, chat):
    fake = fake_openai([{"status": 429}, {"status": 429}, {"status": 200}])
    [c] = backend(fake, backoff_base_s=0.2, backoff_max_s=5).generate([chat("hi")])
    assert c.ok
    t = fake.times()
    # equal jitter: retry k waits between half and all of base * 2**(k-1)
    assert 0.1 <= t[1] - t[0] and 0.2 <= t[2] - t[1]


def test_a_client_error_is_not_retried(fake_openai, chat):
    fake = fake_openai([{"status": 400, "body": {"error": "max_tokens is too large"}}])
    [c] = backend(fake).generate([chat("hi")])
    assert not c.ok and "HTTP 400" in c.error and "max_tokens is too large" in c.error
    assert len(fake.calls) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_the_run_at_once_naming_the_status(fake_openai, chat, monkeypatch, status):
    """No request can succeed with credentials the server refuses: it once came back as one `llm_error` per
    request, and the run ended `no_progress` with exit 0 and no word of the 401. The key is never shown."""
    monkeypatch.setenv("SI_TEST_KEY", "sk-secret-123")
    fake = fake_openai(lambda body: {"status": status, "body": {"error": "invalid api key sk-secret-123"}})
    with pytest.raises(SelfInstructError, match=f"HTTP {status}") as e:
        backend(fake, api_key_env="SI_TEST_KEY").generate([chat("a"), chat("b")])
    assert "api_key_env" in str(e.value) and "sk-secret-123" not in str(e.value)
    assert len(fake.calls) <= 2  # never retried


def test_a_request_failing_after_its_retries_comes_back_with_error_and_the_batch_goes_on(fake_openai, chat):
    fake = fake_openai(lambda body: {"status": 500} if body["messages"][0]["content"] == "bad" else {})
    out = backend(fake, max_retries=2, replica_max_failures=100).generate(
        [chat("a"), chat("bad"), chat("c"), chat("d")]
    )
    assert [c.request_id for c in out] == ["a", "bad", "c", "d"]
    assert [c.ok for c in out] == [True, False, True, True]
    assert out[1].error.startswith("failed after 3 attempts:") and "HTTP 500" in out[1].error


def test_a_hanging_server_times_out(fake_openai, chat):
    fake = fake_openai([{"sleep": 2.0}])
    t0 = time.monotonic()
    [c] = backend(fake, timeout_s=0.3, max_retries=1).generate([chat("hi")])
    assert not c.ok and "timed out after 0.3 s" in c.error
    assert time.monotonic() - t0 < 1.9  # two attempts of 0.3 s plus one backoff, never the server's 2 s


def test_an_unreachable_url_fails_fast_with_the_url_in_the_message(chat):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(
        BackendDownError, match=r"no replica reachable: http://127\.0\.0\.1:\d+/v1: cannot connect"
    ):
        OpenAIBackend("m", base_urls=url).generate([chat("hi")])
    assert time.monotonic() - t0 < 3


def test_an_unreachable_replica_among_live_ones_is_skipped(fake_openai, chat):
    live = fake_openai([{}])
    dead = f"http://127.0.0.1:{free_port()}/v1"
    out = OpenAIBackend("fake-model", base_urls=[dead, live.url], **FAST).generate(
        [chat(str(i)) for i in range(6)]
    )
    assert all(c.ok for c in out) and len(live.calls) == 6


def test_all_replicas_down_stops_the_run_with_a_clear_error(fake_openai, chat):
    a, b = fake_openai([{"status": 503}]), fake_openai([{"status": 503}])
    t0 = time.monotonic()
    with pytest.raises(
        BackendDownError, match=r"all 2 replica\(s\) failing for .* \(all_down_timeout_s=0.5\)"
    ):
        backend(a, b, max_retries=100, all_down_timeout_s=0.5).generate([chat(str(i)) for i in range(4)])
    assert time.monotonic() - t0 < 5


def test_a_failing_replica_leaves_the_rotation(fake_openai, chat):
    bad, good = fake_openai([{"status": 500}]), fake_openai([{"sleep": 0.02}])
    out = backend(bad, good, concurrency=2, replica_max_failures=2, replica_cooldown_s=60).generate(
        [chat(str(i)) for i in range(20)]
    )
    assert all(c.ok for c in out)
    # at most `replica_max_failures` attempts, plus those already in flight, reach it before it rests
    assert len(bad.calls) <= 4 and len(good.calls) == 20


def test_load_spreads_over_healthy_replicas(fake_openai, chat):
    a, b = fake_openai([{"sleep": 0.05}]), fake_openai([{"sleep": 0.05}])
    out = backend(a, b, concurrency=4).generate([chat(str(i)) for i in range(24)])
    assert all(c.ok for c in out)
    assert len(a.calls) >= 8 and len(b.calls) >= 8


def test_concurrency_is_bounded(fake_openai, chat):
    fake = fake_openai([{"sleep": 0.2}])
    t0 = time.monotonic()
    out = backend(fake, concurrency=2).generate([chat(str(i)) for i in range(6)])
    assert all(c.ok for c in out)
    assert time.monotonic() - t0 >= 0.6  # 6 requests, 2 at a time, 0.2 s each


def test_bodies_outputs_and_order(fake_openai, chat):
    fake = fake_openai([{}])
    reqs = [
        chat("a", n=3, seed=5, stop=("\n\n",), max_tokens=9, temperature=0.0),
        Request(id="raw", prompt="Once upon a time"),
    ]
    out = backend(fake, extra_body={"ignore_eos": True}).generate(reqs)
    assert out[0].texts == [
        "answer 0",
        "answer 1",
        "answer 2",
    ]  # sorted by index (the fake sends them reversed)
    assert out[1].text == "Once upon a time continued 0" and out[1].finish_reason == "length"
    (_, p1, _, b1), (_, p2, _, b2) = sorted(fake.calls, key=lambda c: c[1])
    assert p1 == "/v1/chat/completions" and p2 == "/v1/completions"
    assert b1["n"] == 3 and b1["seed"] == 5 and b1["stop"] == ["\n\n"] and b1["max_tokens"] == 9
    assert b1["model"] == "fake-model" and b1["ignore_eos"] is True and b2["prompt"] == "Once upon a time"


def test_api_key_is_sent_and_never_leaks_into_errors(fake_openai, monkeypatch, chat):
    secret = "sk-test-not-a-real-key-42"
    monkeypatch.setenv("SI_TEST_API_KEY", secret)
    echo = fake_openai(lambda body: {"status": 400, "body": {"error": f"bad request, Bearer {secret}"}})
    [c] = backend(echo, api_key_env="SI_TEST_API_KEY").generate([chat("hi")])
    assert echo.calls[0][2]["Authorization"] == f"Bearer {secret}"
    assert not c.ok and secret not in c.error and "***" in c.error


def test_a_wrong_model_name_is_a_clear_error(fake_openai, chat):
    fake = fake_openai([{}])
    with pytest.raises(SelfInstructError, match="serves fake-model, not `other`"):
        OpenAIBackend("other", base_urls=fake.url).generate([chat("hi")])
    assert fake.calls == []


def test_generate_works_inside_a_running_event_loop(fake_openai, chat):
    fake = fake_openai([{}])
    b = backend(fake)

    async def caller():
        return b.generate([chat("hi")])

    [c] = asyncio.run(caller())
    assert c.ok


def test_half_a_surrogate_pair_in_a_reply_becomes_a_replacement_character(fake_openai, chat):
    """A server's JSON may escape half an emoji; left as is, it would crash the run where the text is
    hashed or written as UTF-8, and again at the same place on every resume."""
    content = "a smile \ud83d and a whole one \U0001f600"
    fake = fake_openai([{"body": {"choices": [{"index": 0, "message": {"content": content}}]}}])
    [c] = backend(fake).generate([chat("hi")])
    assert c.text == "a smile \ufffd and a whole one \U0001f600"
    c.text.encode("utf-8")


_USAGE = '{"choices": [{"index": 0, "message": {"content": "hi"}}], "usage": '  # + the usage
MALFORMED = {  # bodies seen from hostile servers, each with the reason it must fail with
    "message-a-string": ('{"choices": [{"index": 0, "message": "hi"}]}', "a `message` is not an object"),
    "choice-a-number": ('{"choices": [1]}', "`choices` is not a list"),
    "usage-a-list": (_USAGE + "[1]}", "`usage` is not an object"),
    "count-infinity": (_USAGE + '{"prompt_tokens": Infinity}}', "a `usage` count is not a whole number"),
    "count-1e400": (_USAGE + '{"prompt_tokens": 1e400}}', "a `usage` count is not a whole number"),
    "cut-short": ('{"choices": [ {"index": 0, ', "Expecting property name"),
}


@pytest.mark.parametrize("raw, reason", MALFORMED.values(), ids=MALFORMED)
def test_a_malformed_answer_fails_its_request_not_the_run(fake_openai, chat, raw, reason):
    """Not retried: the server did answer, and asking again costs a generation for an answer of the same shape."""
    fake = fake_openai(lambda body: {"body": raw.encode()} if body["messages"][0]["content"] == "bad" else {})
    bad, good = backend(fake).generate([chat("bad"), chat("good")])
    assert bad.error.startswith(f"failed after 1 attempt: {fake.url}: malformed answer: {reason}")
    assert good.ok and len(fake.calls) == 2


def test_an_answer_over_the_size_cap_fails_its_request(fake_openai, chat):
    """Stored, a 20 MiB answer made a journal line no reader takes (16 MiB at most); an endless one fills memory."""
    big = {"choices": [{"index": 0, "message": {"content": "x" * (2 << 20)}}]}
    fake = fake_openai([{"body": big}])
    [c] = backend(fake).generate([chat("hi")])
    assert c.error == f"failed after 1 attempt: {fake.url}: answer larger than 1 MiB"


def test_a_server_trickling_its_answer_times_out(fake_openai, chat):
    """`timeout_s` bounds the whole attempt: a byte every 0.1 s never trips a per-read timeout."""
    fake = fake_openai([{"trickle": 0.1}])  # a valid answer of ~150 bytes: 15 s in all
    t0 = time.monotonic()
    [c] = backend(fake, timeout_s=0.5, max_retries=1).generate([chat("hi")])
    assert c.error == f"failed after 2 attempts: {fake.url}: timed out after 0.5 s"
    assert time.monotonic() - t0 < 10  # the whole answer would take 15 s


def test_a_server_trickling_its_model_list_does_not_hold_the_start(fake_openai, chat):
    """The first check of the replicas (/models) had only httpx's per-read timeout too."""
    fake = fake_openai([{}])
    fake.models_trickle = 1.0  # about a minute for the whole list
    t0 = time.monotonic()
    with pytest.raises(BackendDownError, match="no replica reachable: .*timed out"):
        backend(fake, connect_timeout_s=1).generate([chat("hi")])
    assert time.monotonic() - t0 < 20  # the check's 10 s


def test_a_key_echoed_where_error_text_is_cut_does_not_leak_in_part(fake_openai, monkeypatch, chat):
    """Error text is cut at 300 characters; cut before scrubbing, the key's head would no longer match."""
    secret = "sk-test-not-a-real-key-42"
    monkeypatch.setenv("SI_TEST_API_KEY", secret)
    fake = fake_openai([{"status": 500, "body": b"E" * 278 + b"Bearer " + secret.encode()}])
    [c] = backend(fake, api_key_env="SI_TEST_API_KEY", max_retries=0).generate([chat("hi")])
    assert c.error.endswith("E" * 278 + "Bearer ***")
    assert not any(secret[:n] in c.error for n in range(6, len(secret) + 1))
