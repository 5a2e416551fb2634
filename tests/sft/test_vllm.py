"""The trained student (LoRA merged on save) loads in the vLLM CPU engine and generates; `selfinstruct eval`
compares it with its base; a plain-template student served by `selfinstruct serve` answers in the trained
format and stops. Each test starts its own engine or server on the tiny model and closes it.

Run: .venv/bin/pytest -q -m vllm tests/sft
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.sft.config import SFTConfig
from selfinstruct.sft.train import train

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def student(tmp_path_factory, tiny_llama, alpaca_small):
    """LoRA adapters merged on save: the merged checkpoint is what vLLM must load (full fine-tunes are
    loaded in tests/sft/test_distributed.py)."""
    from selfinstruct.sft.config import LoraSettings

    out = tmp_path_factory.mktemp("student")
    config = SFTConfig(
        model=str(tiny_llama),
        max_length=256,
        lora=LoraSettings(r=8, alpha=16),
        trainer={"learning_rate": 3e-3, "warmup_steps": 0, "gradient_accumulation_steps": 1},
    )
    train(config, alpaca_small, out, max_steps=12)
    return out


def test_student_loads_in_vllm_and_generates(student):
    from selfinstruct.llm.base import Request, Sampling
    from selfinstruct.llm.vllm_engine import VLLMBackend

    backend = VLLMBackend(str(student), enforce_eager=True, max_model_len=512, seed=0)
    try:
        s = Sampling(temperature=0.0, max_tokens=12)
        reqs = [
            Request(id="a", messages=({"role": "user", "content": "Name a colour."},), sampling=s),
            Request(id="b", messages=({"role": "user", "content": "Give a synonym for big."},), sampling=s),
        ]
        outs = backend.generate(reqs)
        # The stop token we trained is one vLLM stops at (generation_config.eos_token_id).
        gen = json.loads((student / "generation_config.json").read_text())
        assert backend._tokenizer.convert_tokens_to_ids("<|endoftext|>") in (
            gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
        )
    finally:
        backend.close()
    assert [o.request_id for o in outs] == ["a", "b"]
    for o in outs:
        assert o.ok and o.completion_tokens >= 1 and o.finish_reason in ("stop", "length")
        assert o.finish_reason == "stop" or o.completion_tokens == 12


def test_eval_cli_compares_base_and_student(tmp_path, student, tiny_llama, external):
    rows = [
        json.loads(line)
        for line in (external / "self_instruct_user_oriented_instructions.jsonl").read_text().splitlines()[:3]
    ]
    # A fourth item longer than the context: the backend refuses it alone, and eval counts it as an error.
    rows.append(
        {"id": "huge", "instruction": "Summarise.", "instances": [{"input": "word " * 2000, "output": "x"}]}
    )
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = tmp_path / "answers.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "rouge",
            "--model",
            str(student),
            "--base",
            str(tiny_llama),
            "--data",
            str(data),
            "--max-tokens",
            "16",
            "--max-model-len",
            "512",
            "--answers",
            str(answers),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    # The last line: vLLM's logger writes to whatever sys.stdout was when vllm was first imported, which is
    # CliRunner's when this test runs alone.
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["items"] == 4
    for role in ("base", "student"):
        score = report[role]
        assert score["answers"] == 3 and score["errors"] == 1 and score["template"] == "chat"
        assert score["stop_share"] + score["length_share"] == pytest.approx(1.0)
        assert 0 < score["mean_tokens"] <= 16 and 0.0 <= score["rouge_l"] <= 1.0
    written = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [(r["role"], r["id"]) for r in written] == [
        (role, r["id"]) for role in ("base", "student") for r in rows[:3]
    ]
    assert report["student"]["model"] == str(student) and report["base"]["model"] == str(tiny_llama)


MEMO = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
    {"instruction": "What is two plus two?", "input": "", "output": "Four."},
    {"instruction": "Give the opposite of hot.", "input": "", "output": "Cold."},
    {"instruction": "Say hello in French.", "input": "", "output": "Bonjour."},
]


@pytest.mark.server
def test_plain_student_served_by_selfinstruct_serve_answers_in_format_and_stops(tmp_path, tiny_llama):
    """A plain-template student learns four answers by heart; `selfinstruct serve` (the real vLLM server)
    prompts it through the chat template saved with it and stops at the trained stop token, and transformers'
    generate does the same from the same files."""
    import os
    import signal
    import subprocess
    import sys

    import httpx
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfinstruct.llm.server import free_port
    from selfinstruct.sft.render import plain_prompt

    data = tmp_path / "memo.json"
    data.write_text(json.dumps(MEMO))
    out = tmp_path / "plain-student"
    trainer = {"learning_rate": 3e-3, "warmup_steps": 0, "lr_scheduler_type": "constant", "seed": 0}
    trainer |= {"gradient_accumulation_steps": 1, "save_steps": 1000}
    config = SFTConfig(model=str(tiny_llama), max_length=256, template="plain", trainer=trainer)
    result = train(config, data, out, max_steps=60)
    assert result.template == "plain" and result.final_loss < 0.05, result.final_loss

    # transformers: the saved chat template and generation config alone give the trained format and stop.
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    turn = [{"role": "user", "content": MEMO[1]["instruction"]}]
    ids = tok.apply_chat_template(turn, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tok.decode(ids["input_ids"][0]) == plain_prompt(MEMO[1]["instruction"])
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=16, do_sample=False)[0, ids["input_ids"].shape[1] :]
    assert tok.decode(gen, skip_special_tokens=True) == "Four." and gen[-1] == tok.eos_token_id

    port = free_port()
    cmd = [sys.executable, "-m", "selfinstruct", "serve", "--model", str(out), "--port", str(port)]
    cmd += ["--max-model-len", "512", "--name", "student"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        seen = ""
        while "serving" not in seen:  # printed once /health answers
            line = proc.stdout.readline()
            assert line, f"selfinstruct serve exited: {seen[-2000:]}"
            seen += line
        url = f"http://127.0.0.1:{port}/v1"
        for memo in MEMO:
            body = {
                "model": "student",
                "messages": [{"role": "user", "content": memo["instruction"]}],
                "max_tokens": 16,
                "temperature": 0.0,
            }
            choice = httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()["choices"][0]
            assert (choice["message"]["content"], choice["finish_reason"]) == (memo["output"], "stop")
        # The completions endpoint with the exact plain prompt answers alike.
        body = {"model": "student", "prompt": plain_prompt(MEMO[2]["instruction"]), "max_tokens": 16}
        choice = httpx.post(f"{url}/completions", json=body | {"temperature": 0.0}, timeout=60).json()
        assert (choice["choices"][0]["text"], choice["choices"][0]["finish_reason"]) == ("Cold.", "stop")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
