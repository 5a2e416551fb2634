"""The in-process vLLM backend on the embedded model (real engine, CPU), shared across the session.

Run: .venv/bin/pytest -q tests/llm/test_vllm_engine.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from selfinstruct.llm import Request, Sampling
from selfinstruct.llm.vllm_engine import cpu_env_defaults, native_bf16

pytestmark = pytest.mark.vllm

TOPICS = ["rivers", "bread", "chess", "volcanoes", "owls", "tides", "copper", "jazz"]


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert not native_bf16("model name\t: AMD EPYC bf16\nflags\t\t: fpu sse2 avx2 fma avx512f\n")
    assert native_bf16("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert native_bf16("Features\t: fp asimd bf16 i8mm\n")
    assert not native_bf16("Features\t: fp asimd\n")


def test_the_engine_computes_in_float32_on_a_cpu_without_native_bfloat16(vllm_backend):
    # vLLM's "auto" is bfloat16 on any x86 CPU; emulated, it generated 3x slower here (engine_dtype)
    bf16 = native_bf16(Path("/proc/cpuinfo").read_text())
    assert vllm_backend.llm.llm_engine.model_config.dtype == (torch.bfloat16 if bf16 else torch.float32)


def test_no_core_is_kept_from_the_engine_on_two_cores(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    assert cpu_env_defaults(1) == cpu_env_defaults(2) == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    assert cpu_env_defaults(3) == {}
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")  # the user's setting wins
    assert cpu_env_defaults(2) == {}


def test_the_engine_computes_on_every_core_of_a_two_core_machine(vllm_backend):
    # vLLM keeps a core for its scheduler; on two cores that idled half the compute (cpu_env_defaults). Its
    # CPU worker binds each of its threads to the cores it computes on.
    import psutil

    [worker] = [p for p in psutil.Process().children(recursive=True) if "Worker" in p.name()]
    cores = set().union(*(os.sched_getaffinity(t.id) for t in worker.threads()))
    usable = os.sched_getaffinity(0)
    assert cores == usable if len(usable) <= 2 else cores < usable


def test_sixteen_chat_requests_give_sixteen_results_in_order(vllm_backend, chat):
    reqs = [
        chat(f"Write one sentence about {t} ({i}).", max_tokens=24, seed=i) for i, t in enumerate(TOPICS * 2)
    ]
    out = vllm_backend.generate(reqs)
    assert [c.request_id for c in out] == [r.id for r in reqs]
    assert all(c.ok and c.text.strip() for c in out)
    assert all(0 < c.completion_tokens <= 24 and c.prompt_tokens > 10 for c in out)
    assert all(c.finish_reason in ("stop", "length") for c in out)


def test_same_seed_same_output_whatever_the_batch(vllm_backend, chat):
    reqs = [chat(f"Invent a task about {t}.", temperature=1.0, max_tokens=32, seed=1234) for t in TOPICS[:4]]
    alone = vllm_backend.generate(reqs)
    # the same requests again, reversed and mixed with others: per-request seeds make sampling independent
    others = [chat(f"Name a colour ({i}).", temperature=1.0, max_tokens=16) for i in range(3)]
    mixed = vllm_backend.generate(others + reqs[::-1])[3:][::-1]
    assert [c.text for c in mixed] == [c.text for c in alone]
    reseeded = vllm_backend.generate(
        [r.model_copy(update={"sampling": Sampling(temperature=1.0, max_tokens=32, seed=99)}) for r in reqs]
    )
    assert [c.text for c in reseeded] != [c.text for c in alone]


def test_max_tokens_cut_gives_finish_reason_length(vllm_backend, chat):
    [c] = vllm_backend.generate(
        [chat("Write a long essay about the history of bread.", max_tokens=5, seed=0)]
    )
    assert c.finish_reason == "length" and c.completion_tokens == 5


def test_stop_string_ends_the_text_and_is_not_included(vllm_backend, chat):
    req = chat("List three fruits, one per line.", max_tokens=64, temperature=0.0, stop=("\n",))
    [c] = vllm_backend.generate([req])
    assert "\n" not in c.text and c.finish_reason == "stop"


def test_n_greater_than_one_returns_n_texts(vllm_backend, chat):
    [c] = vllm_backend.generate(
        [chat("Suggest a name for a cat.", n=3, temperature=1.0, max_tokens=12, seed=7)]
    )
    assert len(c.texts) == 3 and len(c.finish_reasons) == 3
    assert len(set(c.texts)) > 1  # three samples, not one text copied three times
    assert c.completion_tokens <= 36


def test_raw_prompt_is_continued_as_text(vllm_backend):
    req = Request(
        id="raw", prompt="The capital of France is", sampling=Sampling(temperature=0.0, max_tokens=8)
    )
    [c] = vllm_backend.generate([req])
    assert c.ok and c.text.strip() and c.prompt_tokens == len(vllm_backend.prompt_ids(req))
    assert "<|im_start|>" not in vllm_backend.llm.get_tokenizer().decode(vllm_backend.prompt_ids(req))


def test_chat_is_rendered_like_vllms_own_chat(vllm_backend, chat):
    from vllm import SamplingParams

    req = chat("Say hello.", system="You are terse.", temperature=0.0, max_tokens=8)
    [ours] = vllm_backend.generate([req])
    [theirs] = vllm_backend.llm.chat(
        [list(req.messages)], SamplingParams(temperature=0.0, max_tokens=8), use_tqdm=False
    )
    assert vllm_backend.prompt_ids(req) == list(theirs.prompt_token_ids)
    assert ours.text == theirs.outputs[0].text


def test_seeded_prompts_longer_than_one_scheduler_step_do_not_kill_the_engine(vllm_backend, chat):
    # ~1,600 tokens each, 4,800 in all: more than one 4,096-token step, so with chunked prefill on (vLLM's
    # default) the CPU engine died here ("CPU Generator does not use offset"); see cpu_safe_engine_kwargs.
    reqs = [
        Request(id=str(i), prompt=f"item{i} " * 800, sampling=Sampling(max_tokens=4, seed=i))
        for i in range(3)
    ]
    assert all(len(vllm_backend.prompt_ids(r)) > 1400 for r in reqs)
    out = vllm_backend.generate(reqs)
    assert all(c.ok and c.texts for c in out), [c.error for c in out]
    assert vllm_backend.generate([chat("Still alive?", max_tokens=4, seed=1)])[0].ok


def test_a_prompt_too_long_fails_alone(vllm_backend, chat):
    long = chat("word " * 3000, max_tokens=4)
    out = vllm_backend.generate([chat("Hi!", max_tokens=4), long, chat("Bye!", max_tokens=4)])
    assert [c.ok for c in out] == [True, False, True]
    assert out[1].error.startswith("prompt_too_long:") and ">= max_model_len 2048" in out[1].error


CHOICE_PROMPT = "Which answer is better, A or B? Explain your reasoning in detail."


def test_choice_holds_the_completion_to_one_of_the_strings(vllm_backend, chat):
    free, held = vllm_backend.generate(
        [
            chat(CHOICE_PROMPT, temperature=0.0, max_tokens=8),
            chat(CHOICE_PROMPT, id="held", temperature=0.0, max_tokens=8, choice=("A", "B", "tie")),
        ]
    )
    assert free.text not in ("A", "B", "tie")  # left alone, the model talks
    assert held.text in ("A", "B", "tie"), held.text


def test_an_unset_choice_leaves_the_request_hash_as_it_was():
    """Journals and eval answers written before `choice` existed hash the sampling dump: it must not change."""
    assert Sampling().model_dump() == {
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 256,
        "stop": (),
        "n": 1,
        "seed": None,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
    assert Sampling(choice=("A", "B")).model_dump()["choice"] == ("A", "B")
